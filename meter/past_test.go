package meter_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

// Regression (issue 8): 6 calls on 2/1s, then a widening to 10/1m granted 8
// more at once, because the calls older than the old longest window (1s)
// had been pruned. The history keeps them: exactly 4 more are granted in
// that minute.
func TestWideningJudgesTheCallsAlreadyMade(t *testing.T) {
	r := newRig(t, "2/1s,concurrency=0")
	var calls []meter.Call
	for i := range 3 {
		r.at(time.Duration(i) * s)
		calls = append(calls, r.call(), r.call())
	}
	r.at(3500 * ms)
	require.NoError(t, r.m.SetSpec(mustSpec(t, "10/1m,concurrency=0")), "SetSpec(10/1m) at +3.5s")
	snap := r.m.Status()
	require.Equal(t, 6, snap.Usage[0].Used, "status after the widening: calls that count against 10/1m")
	for range 4 {
		r.call()
	}
	tk, err := r.m.Enqueue(meter.Holder{}, true)
	require.ErrorIs(t, err, meter.ErrWouldBlock, "the 11th call in the minute (nonblock) at +3.5s")
	require.Nil(t, tk)
	// The first call completed at +0: it counts until +1m.
	w := r.enqueue()
	r.at(59999 * ms)
	r.waiting(w)
	r.at(time.Minute)
	r.granted(w, time.Minute)
	require.Equal(t, t0, calls[0].GrantedAt, "the first call, instant, was granted at +0")
}

// The history survives a restart: a widening after it judges the calls
// made before it.
func TestHistorySurvivesRestart(t *testing.T) {
	r := newRig(t, "1/1s,concurrency=0")
	for i := range 5 {
		r.at(time.Duration(i) * s)
		r.call()
	}
	r.at(10 * s)
	r.call() // retires the five older calls into the history
	require.Equal(t, 5, r.m.Status().Retired, "calls in the history before the restart")
	r.reg.Close()
	r.open()
	require.Equal(t, 5, r.m.Status().Retired, "calls in the history after the restart")
	require.NoError(t, r.m.SetSpec(mustSpec(t, "7/1m,concurrency=0")))
	require.Equal(t, 6, r.m.Status().Usage[0].Used, "calls counting against 7/1m after the restart")
	r.call()
	_, err := r.m.Enqueue(meter.Holder{}, true)
	require.ErrorIs(t, err, meter.ErrWouldBlock, "an 8th call in the minute")
}

// Calls older than the horizon are forgotten; a window longer than the
// horizon keeps its calls as long as it needs them.
func TestHistoryHorizon(t *testing.T) {
	r := newRig(t, "1/1s,concurrency=0")
	r.call()
	r.at(2 * s)
	r.call()
	require.Equal(t, 1, r.m.Status().Retired)
	r.at(meter.DefaultHistory + 1*s)
	r.call()
	require.Equal(t, 1, r.m.Status().Retired, "only the call at +2s; the call at +0 is older than the horizon")
	require.NoError(t, r.m.SetSpec(mustSpec(t, "2/2d,concurrency=0")))
	require.Equal(t, 2, r.m.Status().Usage[0].Used, "a 2d window after a 1d horizon sees the calls the horizon kept")
	r.at(meter.DefaultHistory + 3*s)
	_, err := r.m.Enqueue(meter.Holder{}, true)
	require.ErrorIs(t, err, meter.ErrWouldBlock)
	r.at(2*meter.DefaultHistory + 2*s - 1)
	_, err = r.m.Enqueue(meter.Holder{}, true)
	require.ErrorIs(t, err, meter.ErrWouldBlock, "the call at +2s counts until +2d2s")
	r.at(2*meter.DefaultHistory + 2*s)
	r.call() // the call at +2s stopped counting at +2d2s: the 2d window kept it
}

// At a high call rate the history stays within MaxPast groups, and keeps
// counting every call it holds.
func TestHistoryBoundedAtHighRates(t *testing.T) {
	spec := mustSpec(t, "1000/1s,concurrency=0")
	var st meter.State
	now := t0
	total := 0
	for i := range 200_000 {
		now = t0.Add(time.Duration(i) * 5 * ms) // 200 calls a second for 1000 s
		c := st.Grant(spec, now, meter.Holder{})
		st.Complete(c.ID, now)
		st.Retire(spec, now, time.Hour)
		total++
		require.LessOrEqual(t, len(st.Past), meter.MaxPast, "groups at call %d", i)
	}
	require.Equal(t, total, st.PastCalls()+len(st.Calls), "every call is in the history or still counts")
}

// The history never under-counts: for random calls and any window a user
// may widen to (up to the horizon), the calls counting against it are at
// least the true count from the full log, and not many more.
func TestHistoryNeverUndercounts(t *testing.T) {
	const horizon = time.Hour
	for seed := range 20 {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		spec := mustSpec(t, "3/1s,concurrency=0")
		if seed%2 == 1 {
			spec = mustSpec(t, "3/1s,concurrency=0,count=grant")
		}
		var st meter.State
		var log []meter.Call
		now := t0
		for range 3000 {
			now = now.Add(time.Duration(rng.Int64N(int64(2 * s))))
			c := st.Grant(spec, now, meter.Holder{})
			done := now.Add(time.Duration(rng.Int64N(int64(500 * ms))))
			st.Complete(c.ID, done)
			c.DoneAt = done
			log = append(log, c)
			st.Retire(spec, now, horizon)
		}
		for _, per := range []time.Duration{2 * s, 10 * s, time.Minute, 7 * time.Minute, horizon} {
			wide := spec
			wide.Windows = []meter.Window{{N: 1 << 30, Per: per}}
			got := meter.Usage(wide, wide.Windows[0], &st, now)
			want := trueUsage(wide, log, per, now)
			require.GreaterOrEqual(t, got, want, "seed %d: Usage over %v = %d, the log says %d", seed, per, got, want)
			looser := trueUsage(wide, log, per+per/8+2*s, now)
			require.LessOrEqual(t, got, looser, "seed %d: Usage over %v = %d, more than the log's %d over %v", seed, per, got, looser, per+per/8+2*s)
		}
	}
}

// trueUsage counts the calls of log that count against a window of per at now.
func trueUsage(spec meter.Spec, log []meter.Call, per time.Duration, now time.Time) int {
	n := 0
	for _, c := range log {
		end := c.DoneAt.Add(per)
		if spec.Count == meter.CountGrant {
			end = c.GrantedAt.Add(per)
		}
		if end.After(now) {
			n++
		}
	}
	return n
}
