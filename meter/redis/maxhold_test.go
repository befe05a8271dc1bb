package redis

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// Calls that max_hold ended, as the library must treat them: like the Go
// engine, they count as completed at grant+max_hold. Each test is a
// regression found by the differential test (see difftrace_gen_test.go's
// scripts, which run the same steps through both engines).

// holdRig is one meter "m" on a fresh server, on a fake clock.
type holdRig struct {
	t   *testing.T
	clk *metertest.Clock
	reg *meter.Registry
	m   *meter.Meter
}

func newHoldRig(t *testing.T, spec string, history time.Duration) *holdRig {
	clk := metertest.NewClock()
	reg := openReg(t, redistest.Start(t).URL(), "a", Options{Lease: 1000 * time.Hour, History: history, clock: clk})
	m, err := reg.Create("m", mustParse(t, spec), meter.DefaultAttr())
	require.NoError(t, err, "Create(%q)", spec)
	return &holdRig{t: t, clk: clk, reg: reg, m: m}
}

func (r *holdRig) now() time.Duration { return r.clk.Now().Sub(metertest.Epoch) }

func (r *holdRig) call() meter.Call {
	r.t.Helper()
	c, err := r.m.Acquire(context.Background(), meter.Holder{PID: 1}, true)
	require.NoError(r.t, err, "nonblocking Acquire at +%v", r.now())
	return c
}

func (r *holdRig) refused() {
	r.t.Helper()
	_, err := r.m.Acquire(context.Background(), meter.Holder{PID: 1}, true)
	require.ErrorIs(r.t, err, meter.ErrWouldBlock, "nonblocking Acquire at +%v", r.now())
}

func (r *holdRig) release(c meter.Call) {
	r.t.Helper()
	require.NoError(r.t, r.m.Release(c.ID), "Release(%d) at +%v", c.ID, r.now())
}

// Regression: rlfs1_revoke took back a call that max_hold had ended; it
// then counted nothing. It counts as completed at grant+max_hold.
func TestRevokeAfterMaxHoldKeepsCounting(t *testing.T) {
	r := newHoldRig(t, "1/1s,concurrency=0,max_hold=10ms", 0)
	c := r.call()
	r.clk.Advance(15 * time.Millisecond)
	_ = r.m.Revoke(c.ID) // the store refuses; the engine is not told
	st := r.m.Status()
	require.Equal(t, 1, st.Usage[0].Used, "Status at +15ms: the call max_hold ended still counts")
	require.Equal(t, 1, st.ExpiredN, "Status at +15ms: expired holds")
	r.refused()
	r.release(c)
	r.clk.Advance(995 * time.Millisecond)
	r.call() // it counted until +1.01s
}

// Regression: a limits write that lifted or lengthened max_hold made the
// library hold again a call that max_hold had ended.
func TestMaxHoldLiftedKeepsEndedHolds(t *testing.T) {
	for _, next := range []string{"concurrency=1", "concurrency=1,max_hold=1h"} {
		r := newHoldRig(t, "concurrency=1,max_hold=10ms", 0)
		a := r.call()
		r.clk.Advance(15 * time.Millisecond)
		require.NoError(t, r.m.SetSpec(mustParse(t, next)), "SetSpec(%q)", next)
		st := r.m.Status()
		require.Equal(t, 0, st.HoldersN, "Status after SetSpec(%q): holders", next)
		require.Equal(t, 1, st.ExpiredN, "Status after SetSpec(%q): expired holds", next)
		b := r.call() // a counts as completed at +10ms: the slot is free
		r.release(b)
		r.release(a)
		require.Equal(t, 0, r.m.Status().ExpiredN, "Status after a's release: expired holds")
	}
}

// Regression: the library kept a call that max_hold ended among its calls
// until its release, where the Go engine retires it like any completed
// call, and drops it with the history: the history differed, and a
// widening counted the call on one side only.
func TestMaxHoldEndedCallRetires(t *testing.T) {
	r := newHoldRig(t, "1/1ms,concurrency=0,max_hold=2ms", 5*time.Millisecond)
	c1 := r.call()
	r.clk.Advance(4 * time.Millisecond)
	r.release(r.call())
	st := r.m.Status()
	require.Equal(t, 1, st.Retired, "Status at +4ms: call 1, ended at +2ms, in the history")
	require.Equal(t, 1, st.ExpiredN, "Status at +4ms: call 1 still open")
	r.clk.Advance(6 * time.Millisecond)
	r.release(r.call()) // the history horizon (5ms) drops calls 1 and 2
	require.Equal(t, 0, r.m.Status().Retired, "Status at +10ms: the history")
	require.NoError(t, r.m.SetSpec(mustParse(t, "2/1s,concurrency=0,max_hold=2ms")))
	r.call()
	r.refused()
	r.release(c1)
	require.Equal(t, 0, r.m.Status().ExpiredN, "Status after call 1's release: expired holds")
}

func mustParse(t *testing.T, spec string) meter.Spec {
	t.Helper()
	s, err := meter.ParseSpec(spec)
	require.NoError(t, err, "ParseSpec(%q)", spec)
	return s
}

// Regression: rlfs1_delete removed a meter whose only holder max_hold had
// ended, where meter.Registry.Remove refuses (docs/semantics.md: rmdir with
// "expired holds still open" is EBUSY).
func TestRemoveBusyWithExpiredHold(t *testing.T) {
	r := newHoldRig(t, "concurrency=1,max_hold=10ms", 0)
	c := r.call()
	r.clk.Advance(15 * time.Millisecond)
	require.Equal(t, 1, r.m.Status().ExpiredN, "Status at +15ms: expired holds")
	require.ErrorIs(t, r.reg.Remove("m"), meter.ErrBusy, "Remove with an expired hold open")
	r.release(c)
	require.NoError(t, r.reg.Remove("m"), "Remove after its release")
}
