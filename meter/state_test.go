package meter_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

const (
	ms = time.Millisecond
	s  = time.Second
)

var t0 = metertest.Epoch

// step is one instant of a step table: what happens at t0+at, in order:
// max_hold expiry, completions, Admit, then maybe a grant.
type step struct {
	at     time.Duration
	expire bool     // run State.Expire first
	done   []uint64 // complete these calls
	want   string   // Admit's answer: "ok", "release" (At zero) or the instant as an offset from t0 ("1.5s")
	grant  bool     // then grant a call (Admit must have said "ok")
}

// describe renders a Decision the way step tables spell it.
func describe(d meter.Decision) string {
	switch {
	case d.OK:
		return "ok"
	case d.At.IsZero():
		return "release"
	}
	return d.At.Sub(t0).String()
}

func mustSpec(t testing.TB, text string) meter.Spec {
	t.Helper()
	spec, err := meter.ParseSpec(text)
	require.NoError(t, err, "ParseSpec(%q)", text)
	return spec
}

// runSteps plays steps against an empty State under spec and returns it.
func runSteps(t *testing.T, specText string, steps []step) *meter.State {
	t.Helper()
	spec := mustSpec(t, specText)
	st := &meter.State{}
	for i, sp := range steps {
		now := t0.Add(sp.at)
		if sp.expire {
			st.Expire(spec, now)
		}
		for _, id := range sp.done {
			st.Complete(id, now)
		}
		before := len(st.Calls)
		got := describe(meter.Admit(spec, st, now))
		require.Equal(t, before, len(st.Calls), "Admit at t%d changed the state", i)
		require.Equal(t, sp.want, got, "Admit at t%d (+%v) = %s, want %s", i, sp.at, got, sp.want)
		if sp.grant {
			require.Equal(t, "ok", got, "step t%d grants, so Admit at t%d must say ok", i, i)
			st.Grant(spec, now, meter.Holder{})
		}
	}
	return st
}

func TestAdmitWindowCountCompletion(t *testing.T) {
	// A call counts from its grant until PER after its completion.
	runSteps(t, "1/1s,concurrency=0", []step{
		{at: 0, want: "ok", grant: true},                 // t0: call 1 granted
		{at: 500 * ms, want: "release"},                  // t1: call 1 in progress: counts until PER after it ends
		{at: 5 * s, want: "release"},                     // t2: however long it runs
		{at: 5 * s, done: []uint64{1}, want: "6s"},       // t3: completed at 5s: counts until 6s
		{at: 5999 * ms, want: "6s"},                      // t4
		{at: 6 * s, want: "ok", grant: true},             // t5: call 2; PER after the end, not after the grant
		{at: 6 * s, done: []uint64{2}, want: "7s"},       // t6: an instant call
		{at: 7 * s, want: "ok", grant: true},             // t7: call 3
		{at: 7 * s, want: "release"},                     // t8
		{at: 7500 * ms, done: []uint64{3}, want: "8.5s"}, // t9
	})
	runSteps(t, "2/1s,concurrency=0", []step{
		{at: 0, want: "ok", grant: true},                    // t0: call 1
		{at: 100 * ms, want: "ok", grant: true},             // t1: call 2
		{at: 200 * ms, want: "release"},                     // t2: both in progress
		{at: 300 * ms, done: []uint64{2}, want: "1.3s"},     // t3: call 2 counts until 1.3s
		{at: 400 * ms, done: []uint64{1}, want: "1.3s"},     // t4: call 1 until 1.4s: the earlier end admits
		{at: 1300 * ms, want: "ok", grant: true},            // t5: call 3
		{at: 1300 * ms, want: "1.4s"},                       // t6
		{at: 1400 * ms, want: "ok", grant: true},            // t7: call 4
		{at: 1400 * ms, done: []uint64{3, 4}, want: "2.4s"}, // t8
	})
}

func TestAdmitWindowCountGrant(t *testing.T) {
	// The classic sliding log: a call counts from grant to grant+PER,
	// whether it completed or not.
	runSteps(t, "2/1s,count=grant,concurrency=0", []step{
		{at: 0, want: "ok", grant: true},                        // t0: call 1
		{at: 300 * ms, want: "ok", grant: true},                 // t1: call 2
		{at: 500 * ms, want: "1s"},                              // t2: call 1 counts until 1s, in progress or not
		{at: 999 * ms, want: "1s"},                              // t3
		{at: 1 * s, want: "ok", grant: true},                    // t4: call 3
		{at: 1200 * ms, want: "1.3s"},                           // t5: call 2 counts until 1.3s
		{at: 1300 * ms, want: "ok", grant: true},                // t6: call 4
		{at: 1300 * ms, done: []uint64{1, 2, 3, 4}, want: "2s"}, // t7: completing changes nothing
		{at: 2 * s, want: "ok", grant: true},                    // t8
		{at: 2300 * ms, want: "ok"},                             // t9
	})
	// No span of PER holds more than N: a fixed window would allow 2N here.
	runSteps(t, "3/1s,count=grant,concurrency=0", []step{
		{at: 900 * ms, want: "ok", grant: true},
		{at: 950 * ms, want: "ok", grant: true},
		{at: 999 * ms, want: "ok", grant: true},
		{at: 1000 * ms, want: "1.9s"}, // a fixed window would start afresh here
		{at: 1899 * ms, want: "1.9s"},
		{at: 1900 * ms, want: "ok"},
	})
}

func TestAdmitConcurrency(t *testing.T) {
	runSteps(t, "concurrency=2", []step{
		{at: 0, want: "ok", grant: true},                            // t0: call 1
		{at: 0, want: "ok", grant: true},                            // t1: call 2 at the same instant
		{at: 0, want: "release"},                                    // t2: two in progress
		{at: time.Hour, want: "release"},                            // t3: time alone does not help
		{at: time.Hour, done: []uint64{2}, want: "ok", grant: true}, // t4: call 3
		{at: time.Hour, want: "release"},                            // t5
		{at: 2 * time.Hour, done: []uint64{1, 3}, want: "ok"},       // t6: and nothing else counts
	})
	runSteps(t, "concurrency=1", []step{
		{at: 0, want: "ok", grant: true},
		{at: 0, want: "release"},
		{at: 0, done: []uint64{1}, want: "ok"}, // the same instant: no spacing without a window
	})
}

func TestAdmitConcurrencyZeroIsUnlimited(t *testing.T) {
	var steps []step
	for i := range 100 {
		steps = append(steps, step{at: time.Duration(i) * ms, want: "ok", grant: true})
	}
	st := runSteps(t, "concurrency=0", steps)
	require.Len(t, st.InProgress(), 100)
}

func TestAdmitTokenBucket(t *testing.T) {
	// rate=2/1s: one call every 500ms sustained; burst=3 at once after idling.
	runSteps(t, "rate=2/1s,burst=3,concurrency=0", []step{
		{at: 0, want: "ok", grant: true},        // t0: TAT 0.5s
		{at: 0, want: "ok", grant: true},        // t1: TAT 1s
		{at: 0, want: "ok", grant: true},        // t2: TAT 1.5s: the burst is spent
		{at: 0, want: "500ms"},                  // t3: TAT-2×500ms
		{at: 499 * ms, want: "500ms"},           // t4
		{at: 500 * ms, want: "ok", grant: true}, // t5: TAT 2s
		{at: 700 * ms, want: "1s"},              // t6
		{at: 1 * s, want: "ok", grant: true},    // t7: TAT 2.5s
		{at: 10 * s, want: "ok", grant: true},   // t8: idle refills the burst: TAT 10.5s
		{at: 10 * s, want: "ok", grant: true},   // t9: TAT 11s
		{at: 10 * s, want: "ok", grant: true},   // t10: TAT 11.5s
		{at: 10 * s, want: "10.5s"},             // t11
	})
	runSteps(t, "rate=1/s,concurrency=0", []step{ // burst 1: even spacing
		{at: 0, want: "ok", grant: true},
		{at: 0, want: "1s"},
		{at: 1 * s, want: "ok", grant: true},
		{at: 1500 * ms, want: "2s"},
	})
}

func TestAdmitMaxHold(t *testing.T) {
	// An in-progress call counts completed at grant+max_hold.
	runSteps(t, "concurrency=1,max_hold=1s", []step{
		{at: 0, want: "ok", grant: true},               // t0: call 1, never released
		{at: 0, want: "1s"},                            // t1: not "release": max_hold ends it
		{at: 999 * ms, want: "1s"},                     // t2
		{at: 1 * s, want: "ok", grant: true},           // t3: call 2, without State.Expire
		{at: 1 * s, want: "2s"},                        // t4
		{at: 1500 * ms, done: []uint64{2}, want: "ok"}, // t5
	})
	runSteps(t, "1/2s,concurrency=0,max_hold=1s", []step{
		{at: 0, want: "ok", grant: true},                             // t0: call 1
		{at: 0, want: "3s"},                                          // t1: counts until max_hold+PER
		{at: 1 * s, want: "3s"},                                      // t2
		{at: 1500 * ms, expire: true, done: []uint64{1}, want: "3s"}, // t3: released after expiry: too late to count longer
		{at: 3 * s, want: "ok", grant: true},                         // t4: call 2
		{at: 3500 * ms, done: []uint64{2}, want: "5.5s"},             // t5: released before max_hold: PER after the release
	})
	runSteps(t, "2/10s,count=grant,concurrency=0,max_hold=1s", []step{
		{at: 0, want: "ok", grant: true},
		{at: 0, want: "ok", grant: true},
		{at: 5 * s, want: "10s"}, // count=grant ignores max_hold
	})
}

func TestAdmitEarliestIsTheMaxOfEachLimit(t *testing.T) {
	// Instant calls under 1/1s, 2/5s and concurrency=1: each limit binds in turn.
	runSteps(t, "1/1s,2/5s,concurrency=1", []step{
		{at: 0, want: "ok", grant: true},                 // t0: call 1
		{at: 0, done: []uint64{1}, want: "1s"},           // t1: 1/1s binds
		{at: 1 * s, want: "ok", grant: true},             // t2: call 2
		{at: 1 * s, done: []uint64{2}, want: "5s"},       // t3: 1/1s says 2s, 2/5s says 5s
		{at: 5 * s, want: "ok", grant: true},             // t4: call 3
		{at: 5500 * ms, want: "release"},                 // t5: concurrency (and the windows) wait for a release
		{at: 5500 * ms, done: []uint64{3}, want: "6.5s"}, // t6: 2/5s says 6s, 1/1s says 6.5s
		{at: 6500 * ms, want: "ok"},                      // t7
	})
	runSteps(t, "2/10s,count=grant,rate=1/3s,concurrency=0", []step{
		{at: 0, want: "ok", grant: true},     // t0
		{at: 0, want: "3s"},                  // t1: the bucket binds, the window has room
		{at: 3 * s, want: "ok", grant: true}, // t2
		{at: 3 * s, want: "10s"},             // t3: the bucket says 6s, the window 10s
		{at: 10 * s, want: "ok"},             // t4
	})
}

func TestAdmitAtZeroMeansAfterARelease(t *testing.T) {
	// A finite limit does not hide one that only a release can lift.
	runSteps(t, "1/1s,count=grant,rate=1/10s,concurrency=1", []step{
		{at: 0, want: "ok", grant: true},
		{at: 0, want: "release"}, // window: 1s, bucket: 10s, concurrency: a release
		{at: 20 * s, want: "release"},
		{at: 20 * s, done: []uint64{1}, want: "ok"},
	})
	runSteps(t, "1/1s,concurrency=0", []step{
		{at: 0, want: "ok", grant: true},
		{at: 0, want: "release"}, // count=completion: the window waits for the completion
	})
	// Concurrency frees at max_hold, but the window still waits for a release.
	runSteps(t, "1/1s,concurrency=1,max_hold=1h", []step{
		{at: 0, want: "ok", grant: true},
		{at: 0, want: "1h0m1s"},
	})
}

func TestAdmitUnknownEndsOrderLast(t *testing.T) {
	// Two of three calls in progress; the completed one frees the window.
	runSteps(t, "2/1s,concurrency=0", []step{
		{at: 0, want: "ok", grant: true},
		{at: 0, want: "ok", grant: true},
		{at: 0, done: []uint64{2}, want: "1s"},
		{at: 1 * s, want: "ok", grant: true},
		{at: 1 * s, want: "release"},
	})
}

func TestStateGrantCompleteExpireRetire(t *testing.T) {
	spec := mustSpec(t, "1/1s,5/10s,concurrency=0,max_hold=2s")
	var st meter.State
	h := meter.Holder{PID: 42, UID: 1000, Cmd: "sendmail x"}
	c1 := st.Grant(spec, t0, h)
	c2 := st.Grant(spec, t0.Add(s), meter.Holder{})
	c3 := st.Grant(spec, t0.Add(2*s), meter.Holder{})
	require.Equal(t, []uint64{1, 2, 3}, []uint64{c1.ID, c2.ID, c3.ID}, "Grant IDs")
	require.Equal(t, h, c1.Holder)
	require.True(t, c1.InProgress())
	require.Equal(t, uint64(4), st.NextID)

	got, ok := st.Complete(2, t0.Add(1500*ms))
	require.True(t, ok, "Complete(2) at +1.5s")
	require.Equal(t, t0.Add(1500*ms), got.DoneAt)
	_, ok = st.Complete(2, t0.Add(1600*ms))
	require.False(t, ok, "Complete(2) again")
	_, ok = st.Complete(99, t0)
	require.False(t, ok, "Complete(99), an unknown call")
	require.Equal(t, []uint64{1, 3}, ids(st.InProgress()), "InProgress()")

	expired := st.Expire(spec, t0.Add(3*s))
	require.Equal(t, []uint64{1}, ids(expired), "Expire at +3s")
	require.Equal(t, t0.Add(2*s), expired[0].DoneAt, "call 1 ends at grant+max_hold, not at the expiry")
	require.True(t, expired[0].Expired)
	_, ok = st.Complete(1, t0.Add(3*s))
	require.False(t, ok, "Complete(1) after its max_hold expired")
	require.Empty(t, st.Expire(spec, t0.Add(3*s)), "Expire again")
	require.Empty(t, st.Expire(mustSpec(t, "concurrency=0"), t0.Add(time.Hour)), "Expire without max_hold")

	// Usage at +3s: call 1 until 3s (gone), call 2 until 2.5s, call 3 in progress.
	require.Equal(t, 1, meter.Usage(spec, spec.Windows[0], &st, t0.Add(3*s)), "Usage of 1/1s at +3s")
	require.Equal(t, 3, meter.Usage(spec, spec.Windows[1], &st, t0.Add(3*s)), "Usage of 5/10s at +3s")

	// Retire keeps whatever still counts against the longest window.
	before := meter.Admit(spec, &st, t0.Add(11500*ms))
	cutoff, changed := st.Retire(spec, t0.Add(11500*ms), time.Hour)
	require.Equal(t, t0.Add(1500*ms), cutoff, "Retire at +11.5s")
	require.True(t, changed, "Retire at +11.5s retires call 2")
	require.Equal(t, []uint64{1, 3}, ids(st.Calls), "calls after Retire at +11.5s")
	require.Equal(t, before, meter.Admit(spec, &st, t0.Add(11500*ms)), "Admit at +11.5s after Retire")
	st.Retire(spec, t0.Add(12*s), time.Hour)
	require.Equal(t, []uint64{3}, ids(st.Calls), "calls after Retire at +12s; in progress stays")
	require.Equal(t, 2, st.PastCalls(), "calls in the history after Retire at +12s")
	st.Retire(spec, t0.Add(time.Hour+3*s), time.Hour)
	require.Equal(t, []uint64{3}, ids(st.Calls), "calls after Retire at +1h3s")
	require.Equal(t, 0, st.PastCalls(), "history after the horizon of 1h")

	// count=grant retires by grant time.
	gspec := mustSpec(t, "2/1s,count=grant,concurrency=0")
	var gs meter.State
	gs.Grant(gspec, t0, meter.Holder{})
	gs.Grant(gspec, t0.Add(500*ms), meter.Holder{})
	gs.Complete(1, t0.Add(5*s))
	gs.Complete(2, t0.Add(5*s))
	gs.Retire(gspec, t0.Add(1200*ms), time.Hour)
	require.Equal(t, []uint64{2}, ids(gs.Calls), "count=grant calls after Retire at +1.2s")
}

func TestStateGrantAdvancesTAT(t *testing.T) {
	spec := mustSpec(t, "rate=4/1s,burst=2")
	var st meter.State
	st.Grant(spec, t0, meter.Holder{})
	require.Equal(t, t0.Add(250*ms), st.TAT)
	st.Grant(spec, t0, meter.Holder{})
	require.Equal(t, t0.Add(500*ms), st.TAT)
	st.Grant(spec, t0.Add(10*s), meter.Holder{})
	require.Equal(t, t0.Add(10*s+250*ms), st.TAT, "TAT after idling starts from now")
}

func ids(calls []meter.Call) []uint64 {
	var out []uint64
	for _, c := range calls {
		out = append(out, c.ID)
	}
	return out
}
