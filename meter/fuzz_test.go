package meter_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

// FuzzInvariants drives a meter on the fake clock through a random spec and
// random events, and checks after every step, against a log of grants and
// completions kept here:
//   - no span of PER holds more than N counted calls (per the count mode);
//   - never more than K calls in progress;
//   - grants in arrival order, and nobody waiting behind a granted ticket;
//   - no waiter while the rule, replayed on the log, admits a call (the
//     engine grants as soon as it may: no lost wake-up, no late timer).
//
// All durations are multiples of 10ms and the clock moves in 10ms steps, so
// every instant that matters is checked.
func FuzzInvariants(f *testing.F) {
	f.Add([]byte("\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x02\x09\x03\x00\x02\x20\x00\x00"))
	f.Add([]byte("\x02\x03\x04\x05\x01\x02\x00\x01\x00\x00\x00\x00\x00\x00\x04\x01\x02\x05\x03\x01\x05\x01\x06\x00\x02\x13"))
	f.Add([]byte("\x01\x00\x01\x00\x00\x02\x01\x00\x00\x00\x00\x00\x00\x00\x03\x00\x03\x00\x02\x30\x05\x01\x05\x01"))
	f.Add([]byte("\x00\x03\x02\x01\x00\x03\x00\x00\x00\x00\x05\x00\x05\x00\x05\x00\x02\x07\x03\x01\x03\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newFuzzHarness(t, data)
		h.run()
	})
}

type fuzzRec struct {
	call    meter.Call
	seq     uint64
	release time.Time // zero until released
}

type fuzzHarness struct {
	*rig
	in      []byte
	spec    meter.Spec
	log     []*fuzzRec
	held    []*fuzzRec      // granted, not released
	waiters []*meter.Ticket // arrival order
	lastSeq uint64
	tat     time.Time // the token bucket's theoretical arrival time, replayed
	steps   int       // 10ms steps taken: the clock runs at most a minute per input
}

func (h *fuzzHarness) byte() byte {
	if len(h.in) == 0 {
		return 0
	}
	b := h.in[0]
	h.in = h.in[1:]
	return b
}

func newFuzzHarness(t *testing.T, data []byte) *fuzzHarness {
	h := &fuzzHarness{in: data}
	pers := []time.Duration{100 * ms, 250 * ms, 500 * ms, 1 * s, 2 * s, 3 * s}
	var items []string
	used := map[int]bool{}
	for range 1 + int(h.byte())%3 {
		i := int(h.byte()) % len(pers)
		for used[i] {
			i = (i + 1) % len(pers)
		}
		used[i] = true
		items = append(items, fmt.Sprintf("%d/%s", 1+h.byte()%4, pers[i]))
	}
	items = append(items, fmt.Sprintf("concurrency=%d", h.byte()%4))
	if h.byte()%2 == 1 {
		items = append(items, "count=grant")
	}
	if hold := []time.Duration{0, 0, 200 * ms, 700 * ms}[h.byte()%4]; hold > 0 {
		items = append(items, "max_hold="+hold.String())
	}
	if wait := []time.Duration{0, 0, 300 * ms, 1 * s}[h.byte()%4]; wait > 0 {
		items = append(items, "max_wait="+wait.String())
	}
	// Token buckets whose interval stays on the 10ms grid.
	if b := h.byte() % 10; b < 6 {
		rate := []string{"1/100ms", "1/250ms", "2/500ms", "1/1s", "2/1s", "4/1s"}[b]
		items = append(items, "rate="+rate, fmt.Sprintf("burst=%d", 1+h.byte()%3))
	}
	text := strings.Join(items, ",")
	h.rig = newRig(t, text)
	h.spec = h.m.Spec()
	return h
}

func (h *fuzzHarness) run() {
	for ops := 0; len(h.in) > 0 && ops < 200 && h.steps < 6000; ops++ {
		op, arg := h.byte()%7, int(h.byte())
		switch op {
		case 0, 1:
			h.waiters = append(h.waiters, h.enqueue())
		case 2:
			h.step(time.Duration(arg%30+1) * 10 * ms)
		case 3:
			if len(h.held) > 0 {
				i := arg % len(h.held)
				h.held[i].release = h.clk.Now()
				h.release(h.held[i].call)
				h.held = slices.Delete(h.held, i, i+1)
			}
		case 4:
			if len(h.waiters) > 0 {
				i := arg % len(h.waiters)
				_, err := h.m.Cancel(h.waiters[i])
				require.ErrorIs(h.t, err, meter.ErrInterrupted, "Cancel(waiter %d) at +%v", h.waiters[i].Seq, h.now())
				h.waiters = slices.Delete(h.waiters, i, i+1)
			}
		case 5:
			h.nonblock()
		case 6:
			if at := h.nextTimer(); arg%2 == 0 && at >= 0 && at-h.now() <= 5*s {
				h.step(at - h.now())
			} else {
				h.checkSnapshot()
			}
		}
		h.check()
	}
	h.drain()
}

// step moves the clock by d in 10ms steps, checking after each.
func (h *fuzzHarness) step(d time.Duration) {
	for end := h.clk.Now().Add(d); h.clk.Now().Before(end); {
		h.clk.Advance(10 * ms)
		h.steps++
		h.check()
	}
}

func (h *fuzzHarness) nonblock() {
	want := len(h.waiters) == 0 && h.admits(h.clk.Now())
	tk, err := h.m.Enqueue(meter.Holder{}, true)
	if !want {
		require.ErrorIs(h.t, err, meter.ErrWouldBlock, "Enqueue(nonblock) at +%v", h.now())
		return
	}
	require.NoError(h.t, err, "Enqueue(nonblock) at +%v, when the rule admits a call", h.now())
	h.granted(tk)
}

// check collects new grants and checks every invariant at now.
func (h *fuzzHarness) check() {
	h.t.Helper()
	var done []*meter.Ticket
	h.waiters = slices.DeleteFunc(h.waiters, func(tk *meter.Ticket) bool {
		if isDone(tk) {
			done = append(done, tk)
			return true
		}
		return false
	})
	slices.SortFunc(done, func(a, b *meter.Ticket) int {
		ca, _ := a.Result()
		cb, _ := b.Result()
		return int(ca.ID) - int(cb.ID)
	})
	for _, tk := range done {
		if _, err := tk.Result(); err != nil {
			require.ErrorIs(h.t, err, meter.ErrTimeout, "ticket %d", tk.Seq)
			require.Equal(h.t, h.spec.MaxWait, h.clk.Now().Sub(tk.Since), "ticket %d timed out after", tk.Seq)
			continue
		}
		h.granted(tk)
	}
	// Plain ifs, not require: this runs at every 10ms step.
	if len(h.waiters) == 0 {
		return
	}
	if head := h.waiters[0]; head.Seq <= h.lastSeq { // waiters are in arrival order
		h.t.Fatalf("ticket %d waits behind granted ticket %d", head.Seq, h.lastSeq)
	}
	if h.admits(h.clk.Now()) {
		h.t.Fatalf("%s: %d waiting at +%v while the rule admits a call; log %s", h.spec, len(h.waiters), h.now(), h.dump())
	}
}

// granted records a grant and checks the limits at its instant.
func (h *fuzzHarness) granted(tk *meter.Ticket) {
	h.t.Helper()
	c, _ := tk.Result()
	require.Greater(h.t, tk.Seq, h.lastSeq, "ticket %d granted after ticket %d: not in arrival order", tk.Seq, h.lastSeq)
	h.lastSeq = tk.Seq
	if h.spec.MaxWait > 0 {
		require.LessOrEqual(h.t, c.GrantedAt.Sub(tk.Since), h.spec.MaxWait, "ticket %d waited", tk.Seq)
	}
	if b := h.spec.Bucket; b != nil {
		require.False(h.t, c.GrantedAt.Before(h.bucketAt()), "%s: call %d at +%v, before the bucket allows (+%v)", h.spec, c.ID, c.GrantedAt.Sub(t0), h.bucketAt().Sub(t0))
		h.tat = later(h.tat, c.GrantedAt).Add(b.Interval())
	}
	rec := &fuzzRec{call: c, seq: tk.Seq}
	h.log = append(h.log, rec)
	h.held = append(h.held, rec)
	x := c.GrantedAt
	if k := h.spec.Concurrency; k > 0 {
		require.LessOrEqual(h.t, h.inProgress(x), k, "%s: calls in progress at +%v; log %s", h.spec, x.Sub(t0), h.dump())
	}
	for _, w := range h.spec.Windows {
		require.LessOrEqual(h.t, h.counted(w, x), w.N, "%s: calls counted against %d/%v at +%v; log %s", h.spec, w.N, w.Per, x.Sub(t0), h.dump())
	}
}

// done is when rec completed, or counts completed by max_hold; zero: not yet.
func (h *fuzzHarness) done(rec *fuzzRec) time.Time {
	d := rec.release
	if hold := h.spec.MaxHold; hold > 0 {
		if end := rec.call.GrantedAt.Add(hold); d.IsZero() || end.Before(d) {
			d = end
		}
	}
	return d
}

func (h *fuzzHarness) inProgress(x time.Time) int {
	n := 0
	for _, rec := range h.log {
		if d := h.done(rec); !rec.call.GrantedAt.After(x) && (d.IsZero() || d.After(x)) {
			n++
		}
	}
	return n
}

// counted is how many calls count against w at x: from the grant until PER
// after the grant (count=grant) or after the completion (count=completion).
func (h *fuzzHarness) counted(w meter.Window, x time.Time) int {
	n := 0
	for _, rec := range h.log {
		if rec.call.GrantedAt.After(x) {
			continue
		}
		end := rec.call.GrantedAt
		if h.spec.Count == meter.CountCompletion {
			end = h.done(rec)
		}
		if end.IsZero() || end.Add(w.Per).After(x) {
			n++
		}
	}
	return n
}

// bucketAt is the earliest instant the token bucket allows the next call.
func (h *fuzzHarness) bucketAt() time.Time {
	b := h.spec.Bucket
	return h.tat.Add(-b.Interval() * time.Duration(b.Burst-1))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// admits replays the rule on the log: would one more call be granted at x?
func (h *fuzzHarness) admits(x time.Time) bool {
	if h.spec.Bucket != nil && x.Before(h.bucketAt()) {
		return false
	}
	if k := h.spec.Concurrency; k > 0 && h.inProgress(x) >= k {
		return false
	}
	for _, w := range h.spec.Windows {
		if h.counted(w, x) >= w.N {
			return false
		}
	}
	return true
}

func (h *fuzzHarness) checkSnapshot() {
	snap := h.m.Snapshot()
	var want []uint64
	for _, tk := range h.waiters {
		want = append(want, tk.Seq)
	}
	require.Equal(h.t, want, seqs(snap.Waiters), "Snapshot().Waiters at +%v", h.now())
	require.Equal(h.t, h.inProgress(h.clk.Now()), len(snap.Holders), "Snapshot().Holders at +%v", h.now())
	for i, u := range snap.Usage {
		require.Equal(h.t, h.counted(h.spec.Windows[i], h.clk.Now()), u.Used, "Snapshot().Usage[%d] at +%v", i, h.now())
	}
}

// drain releases every holder until every waiter has been granted.
func (h *fuzzHarness) drain() {
	for range 10000 {
		for len(h.held) > 0 {
			h.held[0].release = h.clk.Now()
			h.release(h.held[0].call)
			h.held = h.held[1:]
			h.check()
		}
		if len(h.waiters) == 0 {
			return
		}
		at, ok := h.clk.NextTimer()
		require.True(h.t, ok, "%s: %d waiting at +%v, no holder, no timer", h.spec, len(h.waiters), h.now())
		h.clk.Set(at)
		h.check()
	}
	h.t.Fatal(errors.New("drain did not finish"))
}

func (h *fuzzHarness) dump() string {
	var b strings.Builder
	for _, rec := range h.log {
		fmt.Fprintf(&b, "[#%d seq %d +%v", rec.call.ID, rec.seq, rec.call.GrantedAt.Sub(t0))
		if !rec.release.IsZero() {
			fmt.Fprintf(&b, "..+%v", rec.release.Sub(t0))
		}
		b.WriteString("] ")
	}
	return b.String()
}
