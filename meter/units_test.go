package meter_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

func TestParseUnitItems(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"units:100/1s", "units:100/1s,concurrency=1"},
		{"units:90000/m,60/m,concurrency=0", "60/1m,units:90000/1m,concurrency=0"},
		{"units:100/1s,units:5000/1h,3/1s", "3/1s,units:100/1s,units:5000/1h,concurrency=1"},
		{"units:rate=1000/1s", "concurrency=1,units:rate=1000/1s,units:burst=1000"},
		{"units:rate=1000/1s,units:burst=50", "concurrency=1,units:rate=1000/1s,units:burst=50"},
		{"units:burst=50, units:rate=1000/1s", "concurrency=1,units:rate=1000/1s,units:burst=50"},
		{"1/1s,units:1/1s", "1/1s,units:1/1s,concurrency=1"},
		{"units:1125899906842624/1d", "units:1125899906842624/1d,concurrency=1"},
	} {
		s, err := meter.ParseSpec(tc.in)
		require.NoError(t, err, "ParseSpec(%q)", tc.in)
		require.Equal(t, tc.want, s.String(), "ParseSpec(%q).String()", tc.in)
		back, err := meter.ParseSpec(s.String())
		require.NoError(t, err, "ParseSpec of the canonical %q", s.String())
		require.True(t, back.Equal(s), "the canonical form %q reads back the same", s.String())
	}
}

func TestParseUnitItemErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"units:0/1s", `meter: "units:0/1s": count must be at least 1`},
		{"units:x/1s", `meter: "units:x/1s": count "x" is not a whole number`},
		{"units:1125899906842625/1s", `meter: "units:1125899906842625/1s": count 1125899906842625 is too large; it may be at most 1125899906842624 (2^50)`},
		{"units:100/1s,units:200/1s", `meter: "units:200/1s": a units window of 1s is already set; keep one`},
		{"units:100", `meter: "units:100": want units:N/PER, such as units:90000/1m`},
		{"units:burst=5", `meter: "units:burst=5": units:burst needs a units:rate=N/PER item`},
		{"units:rate=5/1s,units:rate=6/1s", `meter: "units:rate=6/1s": units:rate is given twice`},
		{"units:speed=5/1s", `meter: "units:speed=5/1s": unknown units item "speed" (want units:N/PER, units:rate=N/PER or units:burst=B)`},
		{"units:rate=5/0s", `meter: "units:rate=5/0s": PER must be longer than zero`},
		{"units:rate=5/1ns", `meter: "units:rate=5/1ns": more than one unit per nanosecond; use a longer PER`},
	} {
		_, err := meter.ParseSpec(tc.in)
		require.EqualError(t, err, tc.want, "ParseSpec(%q)", tc.in)
	}
}

func TestMaxCost(t *testing.T) {
	require.Equal(t, int64(-1), mustSpec(t, "1/s").MaxCost(), "no units item: unlimited")
	require.Equal(t, int64(100), mustSpec(t, "units:100/1s,units:500/1m").MaxCost())
	require.Equal(t, int64(40), mustSpec(t, "units:100/1s,units:rate=10/1s,units:burst=40").MaxCost())
	require.ErrorIs(t, mustSpec(t, "units:100/1s").Fits(101), meter.ErrTooBig)
	require.NoError(t, mustSpec(t, "units:100/1s").Fits(100))
	require.NoError(t, mustSpec(t, "units:100/1s").Fits(0))
}

// unitStep is one instant of a weighted step table: what happens at
// t0+at, in order: completions, settlements, then Admit of a call of cost.
type unitStep struct {
	at     time.Duration
	done   []uint64
	settle map[uint64]int64
	cost   int64
	want   string // "ok", "release", "never" or the instant as an offset from t0
	grant  bool
}

func runUnitSteps(t *testing.T, specText string, steps []unitStep) {
	t.Helper()
	spec := mustSpec(t, specText)
	st := &meter.State{}
	for i, sp := range steps {
		now := t0.Add(sp.at)
		for _, id := range sp.done {
			st.Complete(id, now)
		}
		for id, actual := range sp.settle {
			_, ok := st.Settle(spec, id, actual, now)
			require.True(t, ok, "Settle(%d) at t%d", id, i)
		}
		got := describe(meter.AdmitCost(spec, st, now, sp.cost))
		if sp.want == "never" {
			require.Equal(t, "release", got, "AdmitCost(%d) at t%d (+%v): never admissible", sp.cost, i, sp.at)
			require.Error(t, spec.Fits(sp.cost), "Fits(%d)", sp.cost)
		} else {
			require.Equal(t, sp.want, got, "AdmitCost(%d) at t%d (+%v) = %s, want %s", sp.cost, i, sp.at, got, sp.want)
		}
		if sp.grant {
			require.Equal(t, "ok", got, "step t%d grants", i)
			st.GrantCost(spec, now, meter.Holder{}, sp.cost)
		}
	}
}

func TestAdmitUnitsWindow(t *testing.T) {
	// Must show (issue 10): on units:100/1s,concurrency=0, three calls of
	// 40: two at once, the third a second after the first completes.
	runUnitSteps(t, "units:100/1s,concurrency=0", []unitStep{
		{at: 0, cost: 40, want: "ok", grant: true},                   // t0: call 1
		{at: 0, cost: 40, want: "ok", grant: true},                   // t1: call 2, 80 units
		{at: 0, cost: 40, want: "release"},                           // t2: 120 > 100
		{at: 200 * ms, done: []uint64{1}, cost: 40, want: "1.2s"},    // t3: call 1 counts until 1.2s
		{at: 300 * ms, done: []uint64{2}, cost: 40, want: "1.2s"},    // t4
		{at: 1200 * ms, cost: 40, want: "ok", grant: true},           // t5: call 3
		{at: 1200 * ms, cost: 60, want: "1.3s"},                      // t6: 40+40 > 100 until call 2 stops
		{at: 1200 * ms, cost: 20, want: "ok"},                        // t7: 80+20 fits
		{at: 1200 * ms, cost: 101, want: "never"},                    // t8: more than the window
		{at: 1200 * ms, cost: 0, want: "ok"},                         // t9: a free call
		{at: 1250 * ms, done: []uint64{3}, cost: 100, want: "2.25s"}, // t10: all of it once both stop
	})
}

func TestAdmitUnitsSettlement(t *testing.T) {
	// acquire@90 then acquire@80 waits; settling the first at 10 admits it.
	runUnitSteps(t, "units:100/1s,concurrency=0", []unitStep{
		{at: 0, cost: 90, want: "ok", grant: true},
		{at: 0, cost: 80, want: "release"},
		{at: 10 * ms, settle: map[uint64]int64{1: 10}, cost: 80, want: "ok", grant: true}, // refund: 10+80
		{at: 20 * ms, cost: 20, want: "release"},
		// Debt: call 2 really cost 150; once done it counts 150 for a second.
		{at: 30 * ms, settle: map[uint64]int64{2: 150}, done: []uint64{1, 2}, cost: 1, want: "1.03s"},
		{at: 1030 * ms, cost: 100, want: "ok"},
	})
}

func TestAdmitUnitsBucket(t *testing.T) {
	// units:rate=100/1s,units:burst=100: a full burst, then 100 units a second.
	runUnitSteps(t, "units:rate=100/1s,units:burst=100,concurrency=0", []unitStep{
		{at: 0, cost: 60, want: "ok", grant: true},                               // TAT = +600ms
		{at: 0, cost: 40, want: "ok", grant: true},                               // TAT = +1s
		{at: 0, cost: 10, want: "100ms"},                                         // room for 10 units at +100ms
		{at: 100 * ms, cost: 50, want: "500ms"},                                  // 50 units at +500ms
		{at: 100 * ms, cost: 101, want: "never"},                                 // more than the burst
		{at: 100 * ms, settle: map[uint64]int64{2: 0}, cost: 50, want: "ok"},     // refund of 40: TAT = +600ms
		{at: 100 * ms, cost: 50, want: "ok", grant: true},                        // TAT = +1.1s
		{at: 100 * ms, settle: map[uint64]int64{1: 160}, cost: 1, want: "1.11s"}, // debt of 100: TAT = +2.1s
		{at: 1110 * ms, cost: 1, want: "ok", grant: true},                        // TAT = +2.11s
		{at: 1110 * ms, cost: 0, want: "ok"},                                     // free: the bucket does not care
		{at: 2 * s, cost: 90, want: "2.01s"},                                     // 90 of the burst of 100: TAT − 10 units
		{at: 2110 * ms, cost: 100, want: "ok"},                                   // all of it
		{at: 2110 * ms, settle: map[uint64]int64{4: 1}, cost: 100, want: "ok"},   // settling at the estimate changes nothing
	})
}

func TestAdmitCallsAndUnitsTogether(t *testing.T) {
	// Must show: on 3/1s,units:100/1s a fourth call of 10 waits for the call limit.
	runUnitSteps(t, "3/1s,units:100/1s,concurrency=0", []unitStep{
		{at: 0, cost: 10, want: "ok", grant: true},
		{at: 0, cost: 10, want: "ok", grant: true},
		{at: 0, cost: 10, want: "ok", grant: true},
		{at: 0, done: []uint64{1, 2, 3}, cost: 10, want: "1s"},
	})
}

// A limits write that shrinks a units item below a waiter's cost fails it
// (E2BIG) rather than leaving it to wait forever; the queue goes on.
func TestShrinkingUnitsFailsWaiterThatCanNeverFit(t *testing.T) {
	r := newRig(t, "units:100/1s,concurrency=0")
	c, err := r.m.AcquireCost(context.Background(), meter.Holder{PID: 1}, 100, true)
	require.NoError(t, err)
	big, err := r.m.EnqueueCost(meter.Holder{PID: 2}, 80, false)
	require.NoError(t, err)
	small, err := r.m.EnqueueCost(meter.Holder{PID: 3}, 10, false)
	require.NoError(t, err)
	r.waiting(big, small)
	require.NoError(t, r.m.SetSpec(mustSpec(t, "units:50/1s,concurrency=0")))
	r.failed(big, meter.ErrTooBig)
	r.release(c)
	r.at(1 * s)
	r.granted(small, time.Second)
}

func TestSettleOnlyWhileHeld(t *testing.T) {
	r := newRig(t, "units:100/1s,concurrency=0")
	c, err := r.m.AcquireCost(context.Background(), meter.Holder{PID: 1}, 40, true)
	require.NoError(t, err)
	require.NoError(t, r.m.Settle(c.ID, 70))
	require.Equal(t, 70, r.m.Status().Usage[0].Used, "units after the settlement")
	r.release(c)
	require.ErrorIs(t, r.m.Settle(c.ID, 5), meter.ErrNotExist, "Settle after the release")
	require.Equal(t, uint64(1), r.m.Status().Stats.Settled)
	require.Equal(t, int64(70), r.m.Status().Stats.UnitsSettled)
	require.Equal(t, int64(40), r.m.Status().Stats.Units, "units granted: the estimate")
}
