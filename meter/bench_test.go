package meter_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

func BenchmarkAdmit(b *testing.B) {
	spec := mustSpec(b, "1/s,75/h,concurrency=1")
	b.Run("idle", func(b *testing.B) {
		var st meter.State
		b.ReportAllocs()
		for b.Loop() {
			if !meter.Admit(spec, &st, t0).OK {
				b.Fatal("Admit on an idle meter: not OK")
			}
		}
	})
	b.Run("75-calls-in-1h", func(b *testing.B) {
		// The email quota at its limit: 75 instant calls, 40s apart.
		var st meter.State
		for i := range 75 {
			at := t0.Add(time.Duration(i) * 40 * s)
			c := st.Grant(spec, at, meter.Holder{})
			st.Complete(c.ID, at)
		}
		now := t0.Add(50 * time.Minute)
		b.ReportAllocs()
		for b.Loop() {
			if meter.Admit(spec, &st, now).OK {
				b.Fatal("Admit with 75 calls in the last hour: OK")
			}
		}
	})
}

func BenchmarkEnqueueRelease(b *testing.B) {
	for _, bm := range []struct {
		name, spec string
		step       time.Duration // clock advance per cycle
	}{
		// 10s: the store prunes at every cycle, so MemStore's linear Complete stays cheap.
		{"mutex", "concurrency=1", 10 * s},
		{"50-calls-in-1s-window", "100/1s,concurrency=1", 20 * ms},
	} {
		b.Run(bm.name, func(b *testing.B) {
			r := newRig(b, bm.spec)
			h := meter.Holder{PID: 1, Cmd: "bench"}
			b.ReportAllocs()
			for b.Loop() {
				tk, err := r.m.Enqueue(h, false)
				if err != nil || !isDone(tk) {
					b.Fatalf("Enqueue at +%v: %v, done %v", r.now(), err, isDone(tk))
				}
				c, _ := tk.Result()
				if err := r.m.Release(c.ID); err != nil {
					b.Fatal(err)
				}
				r.clk.Advance(bm.step)
			}
		})
	}
}

func BenchmarkQueue(b *testing.B) {
	// 1,000 waiters behind one holder; each release grants the next.
	const waiters = 1000
	r := newRig(b, "concurrency=1")
	tickets := make([]*meter.Ticket, waiters)
	b.ReportAllocs()
	for b.Loop() {
		head, err := r.m.Enqueue(meter.Holder{}, false)
		require.NoError(b, err)
		for i := range tickets {
			if tickets[i], err = r.m.Enqueue(meter.Holder{}, false); err != nil {
				b.Fatal(err)
			}
		}
		c, _ := head.Result()
		for _, tk := range tickets {
			if err := r.m.Release(c.ID); err != nil {
				b.Fatal(err)
			}
			if !isDone(tk) {
				b.Fatalf("ticket %d not granted by the release before it", tk.Seq)
			}
			c, _ = tk.Result()
		}
		require.NoError(b, r.m.Release(c.ID))
		r.clk.Advance(11 * s) // let the store prune
	}
}
