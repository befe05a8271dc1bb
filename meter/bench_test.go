package meter_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

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
