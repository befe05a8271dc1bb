package metertest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

// OpenStore opens the store kept in dir, a fresh t.TempDir of the suite.
// The first call sees an empty dir and must return an empty store; a later
// call with the same dir, after the previous store was closed, must return
// a store holding everything that store committed (a daemon restart). The
// suite closes every store it opens.
type OpenStore func(t *testing.T, dir string) meter.LocalStore

// RunStoreTests is the conformance suite every meter.LocalStore must pass, run
// as subtests of t. MemStore is its reference.
func RunStoreTests(t *testing.T, open OpenStore) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"EmptyLoad", testEmptyLoad},
		{"CreateLoad", testCreateLoad},
		{"CreateDuplicateFails", testCreateDuplicate},
		{"GrantCompleteLoad", testGrantComplete},
		{"TimesKeepNanoseconds", testTimes},
		{"PruneByCompletion", testPruneByCompletion},
		{"PruneByGrant", testPruneByGrant},
		{"PruneKeepsOtherMeters", testPruneOtherMeters},
		{"RetireKeepsPast", testRetirePast},
		{"Delete", testDelete},
		{"SetSpecSetAttr", testSetSpecAttr},
		{"UnknownMeterFails", testUnknownMeter},
		{"CountersSurviveRestart", testCounters},
		{"ConcurrentMeters", testConcurrent},
		{"RestartCompletesCallsInProgress", testRestartCompletes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newHarness(t, open))
		})
	}
}

// harness holds the store under test and restarts it on the same storage.
type harness struct {
	t    *testing.T
	open OpenStore
	dir  string
	s    meter.LocalStore
}

func newHarness(t *testing.T, open OpenStore) *harness {
	h := &harness{t: t, open: open, dir: t.TempDir()}
	h.s = open(t, h.dir)
	t.Cleanup(func() {
		if h.s != nil {
			require.NoError(t, h.s.Close(), "Close at the end")
		}
	})
	return h
}

// restart closes the store and opens it again on the same storage.
func (h *harness) restart() {
	h.t.Helper()
	s := h.s
	h.s = nil
	require.NoError(h.t, s.Close(), "Close before restart")
	h.s = h.open(h.t, h.dir)
}

// load returns Load's result as comparable views.
func (h *harness) load() []storedView {
	h.t.Helper()
	got, err := h.s.Load()
	require.NoError(h.t, err, "Load()")
	out := []storedView{}
	for _, m := range got {
		out = append(out, viewOf(m))
	}
	return out
}

// loadBoth checks that Load returns want, before and after a restart.
func (h *harness) loadBoth(want ...storedView) {
	h.t.Helper()
	if want == nil {
		want = []storedView{}
	}
	require.Equal(h.t, want, h.load(), "Load()")
	h.restart()
	require.Equal(h.t, want, h.load(), "Load() after restart")
}

func (h *harness) create(name, spec string, attr meter.Attr) {
	h.t.Helper()
	require.NoError(h.t, h.s.CreateMeter(name, mustSpec(h.t, spec), attr), "CreateMeter(%q)", name)
}

func (h *harness) grant(name string, c meter.Call, tat time.Time) {
	h.t.Helper()
	require.NoError(h.t, h.s.Grant(name, c, tat, time.Time{}), "Grant(%q, %d)", name, c.ID)
}

func (h *harness) complete(name string, c meter.Call) {
	h.t.Helper()
	require.NoError(h.t, h.s.Complete(name, c), "Complete(%q, %d)", name, c.ID)
}

func mustSpec(t *testing.T, text string) meter.Spec {
	t.Helper()
	s, err := meter.ParseSpec(text)
	require.NoError(t, err, "ParseSpec(%q)", text)
	return s
}

// storedView is meter.Stored with times as Unix nanoseconds (0 for the zero
// time) and the spec as its canonical text, so that require.Equal compares
// instants rather than monotonic readings and locations.
type storedView struct {
	Name   string
	Spec   string
	Attr   meter.Attr
	TAT    int64
	NextID uint64 // 0 is shown as 1, which it means
	Grants uint64
	Calls  []callView
	Past   []pastView
}

type pastView struct {
	N                    int
	First, Granted, Done int64
}

type callView struct {
	ID      uint64
	Granted int64
	Done    int64
	Expired bool
	Holder  meter.Holder
}

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func viewOf(m meter.Stored) storedView {
	v := storedView{
		Name: m.Name, Spec: m.Spec.String(), Attr: m.Attr,
		TAT: ns(m.State.TAT), NextID: max(m.State.NextID, 1), Grants: m.Grants,
		Calls: []callView{},
	}
	for _, c := range m.State.Calls {
		v.Calls = append(v.Calls, callOf(c))
	}
	for _, p := range m.State.Past {
		v.Past = append(v.Past, pastView{p.N, ns(p.First), ns(p.Granted), ns(p.Done)})
	}
	return v
}

func callOf(c meter.Call) callView {
	return callView{ID: c.ID, Granted: ns(c.GrantedAt), Done: ns(c.DoneAt), Expired: c.Expired, Holder: c.Holder}
}

// fresh is the view of a meter just created.
func fresh(name, spec string, attr meter.Attr) storedView {
	return storedView{Name: name, Spec: spec, Attr: attr, NextID: 1, Calls: []callView{}}
}

// at is instant i of a test: Epoch plus i seconds and a few odd nanoseconds.
func at(i int) time.Time {
	return Epoch.Add(time.Duration(i)*time.Second + 123456789)
}

func call(id uint64, granted int, h meter.Holder) meter.Call {
	return meter.Call{ID: id, GrantedAt: at(granted), Holder: h}
}

func done(c meter.Call, i int, expired bool) meter.Call {
	c.DoneAt, c.Expired = at(i), expired
	return c
}

var (
	alice = meter.Holder{PID: 4121, UID: 1000, GID: 100, Cmd: "sendmail -t -oi"}
	bob   = meter.Holder{PID: 7, UID: 0, GID: 0, Cmd: `curl "https://api.example.com/?q=a b" ünïcode`}
)

func testEmptyLoad(t *testing.T, h *harness) {
	h.loadBoth()
}

func testCreateLoad(t *testing.T, h *harness) {
	full := "1/500ms,20/10s,75/1h,2/3d,concurrency=4,rate=10/1s,burst=20,count=grant,max_wait=1m30s,max_hold=1.5s,max_waiters=100"
	canon := mustSpec(t, full).String()
	h.create("email", full, meter.Attr{Mode: 0o750, UID: 1000, GID: 100})
	h.create("api", "", meter.DefaultAttr())
	h.create("Zürich mail ☃", "1/s", meter.Attr{Mode: 0o4777, UID: 1<<32 - 2, GID: 1<<32 - 2})
	h.loadBoth(
		fresh("Zürich mail ☃", "1/1s,concurrency=1", meter.Attr{Mode: 0o4777, UID: 1<<32 - 2, GID: 1<<32 - 2}),
		fresh("api", "concurrency=1", meter.DefaultAttr()),
		fresh("email", canon, meter.Attr{Mode: 0o750, UID: 1000, GID: 100}),
	)
	got, err := h.s.Load()
	require.NoError(t, err, "Load()")
	require.True(t, got[2].Spec.Equal(mustSpec(t, full)), "Load() spec of email = %v, want %v", got[2].Spec, full)
	require.Equal(t, mustSpec(t, full), got[2].Spec, "Load() spec of email, field by field")
}

func testCreateDuplicate(t *testing.T, h *harness) {
	h.create("email", "1/s", meter.Attr{Mode: 0o700})
	require.Error(t, h.s.CreateMeter("email", mustSpec(t, "5/s"), meter.DefaultAttr()), "CreateMeter(email) twice")
	h.restart()
	require.Error(t, h.s.CreateMeter("email", mustSpec(t, "5/s"), meter.DefaultAttr()), "CreateMeter(email) after restart")
	h.loadBoth(fresh("email", "1/1s,concurrency=1", meter.Attr{Mode: 0o700}))
}

func testGrantComplete(t *testing.T, h *harness) {
	h.create("email", "rate=1/s,burst=2", meter.DefaultAttr())
	c1, c2, c3 := call(1, 0, alice), call(2, 1, bob), call(3, 2, alice)
	h.grant("email", c1, at(1))
	h.grant("email", c2, at(2))
	h.complete("email", done(c1, 3, false))
	h.grant("email", c3, at(3))
	h.complete("email", done(c2, 4, true))
	want := fresh("email", "concurrency=1,rate=1/1s,burst=2", meter.DefaultAttr())
	want.TAT, want.NextID, want.Grants = ns(at(3)), 4, 3
	want.Calls = []callView{callOf(done(c1, 3, false)), callOf(done(c2, 4, true)), callOf(c3)}
	h.loadBoth(want)

	got, err := h.s.Load()
	require.NoError(t, err, "Load()")
	require.True(t, got[0].State.Calls[2].InProgress(), "call 3 after Load: InProgress() = false, want true")
	require.True(t, got[0].State.Calls[2].DoneAt.IsZero(), "call 3 after Load: DoneAt = %v, want zero", got[0].State.Calls[2].DoneAt)
}

func testTimes(t *testing.T, h *harness) {
	h.create("a", "1/s", meter.DefaultAttr())
	now := time.Now() // carries a monotonic reading, as the engine's times do
	c := meter.Call{ID: 1, GrantedAt: now, Holder: alice}
	h.grant("a", c, time.Time{})
	h.complete("a", meter.Call{ID: 1, GrantedAt: now, DoneAt: now.Add(1500 * time.Nanosecond), Holder: alice})
	h.restart()
	got, err := h.s.Load()
	require.NoError(t, err, "Load()")
	gc := got[0].State.Calls[0]
	require.True(t, gc.GrantedAt.Equal(now), "GrantedAt = %v, want %v", gc.GrantedAt, now)
	require.True(t, gc.DoneAt.Equal(now.Add(1500)), "DoneAt = %v, want %v", gc.DoneAt, now.Add(1500))
	require.True(t, got[0].State.TAT.IsZero(), "TAT = %v, want zero (no bucket)", got[0].State.TAT)
}

func testPruneByCompletion(t *testing.T, h *harness) {
	h.create("m", "2/10s", meter.DefaultAttr())
	c1, c2, c3, c4 := call(1, 0, alice), call(2, 1, alice), call(3, 2, bob), call(4, 3, bob)
	for _, c := range []meter.Call{c1, c2, c3, c4} {
		h.grant("m", c, time.Time{})
	}
	h.complete("m", done(c1, 5, false))
	h.complete("m", done(c2, 10, false))
	h.complete("m", done(c4, 11, false))
	// c3 is in progress, granted long before the cutoff: it stays.
	require.NoError(t, h.s.Retire("m", at(10), false, nil), "Retire(m, t10, byGrant=false)")
	want := fresh("m", "2/10s,concurrency=1", meter.DefaultAttr())
	want.NextID, want.Grants = 5, 4
	want.Calls = []callView{callOf(c3), callOf(done(c4, 11, false))}
	h.loadBoth(want)
}

func testPruneByGrant(t *testing.T, h *harness) {
	h.create("m", "2/10s,count=grant", meter.DefaultAttr())
	c1, c2, c3, c4 := call(1, 0, alice), call(2, 5, alice), call(3, 6, bob), call(4, 7, bob)
	for _, c := range []meter.Call{c1, c2, c3, c4} {
		h.grant("m", c, time.Time{})
	}
	h.complete("m", done(c1, 20, false)) // granted before the cutoff, done after it
	h.complete("m", done(c2, 21, false)) // granted at the cutoff
	h.complete("m", done(c4, 22, false)) // granted after the cutoff
	require.NoError(t, h.s.Retire("m", at(5), true, nil), "Retire(m, t5, byGrant=true)")
	want := fresh("m", "2/10s,concurrency=1,count=grant", meter.DefaultAttr())
	want.NextID, want.Grants = 5, 4
	want.Calls = []callView{callOf(c3), callOf(done(c4, 22, false))}
	h.loadBoth(want)
}

func testRetirePast(t *testing.T, h *harness) {
	h.create("m", "2/10s", meter.DefaultAttr())
	c1, c2, c3 := call(1, 0, alice), call(2, 1, alice), call(3, 2, bob)
	for _, c := range []meter.Call{c1, c2, c3} {
		h.grant("m", c, time.Time{})
	}
	h.complete("m", done(c1, 5, false))
	h.complete("m", done(c2, 6, false))
	past := []meter.Past{
		{N: 40, First: at(-3000), Granted: at(-2000), Done: at(-1000)},
		{N: 2, First: at(5), Granted: at(1), Done: at(6)},
	}
	require.NoError(t, h.s.Retire("m", at(6), false, past), "Retire(m, t6, past of 2 groups)")
	want := fresh("m", "2/10s,concurrency=1", meter.DefaultAttr())
	want.NextID, want.Grants = 4, 3
	want.Calls = []callView{callOf(c3)}
	want.Past = []pastView{{40, ns(at(-3000)), ns(at(-2000)), ns(at(-1000))}, {2, ns(at(5)), ns(at(1)), ns(at(6))}}
	h.loadBoth(want)
	// A later Retire replaces the history; an empty one clears it.
	require.NoError(t, h.s.Retire("m", at(7), false, past[1:]), "Retire(m, t7, past of 1 group)")
	want.Past = want.Past[1:]
	h.loadBoth(want)
	require.NoError(t, h.s.Retire("m", at(8), false, nil), "Retire(m, t8, no past)")
	want.Past = nil
	h.loadBoth(want)
}

func testPruneOtherMeters(t *testing.T, h *harness) {
	h.create("a", "1/s", meter.DefaultAttr())
	h.create("b", "1/s", meter.DefaultAttr())
	ca, cb := call(1, 0, alice), call(1, 0, bob)
	h.grant("a", ca, time.Time{})
	h.grant("b", cb, time.Time{})
	h.complete("a", done(ca, 1, false))
	h.complete("b", done(cb, 1, false))
	require.NoError(t, h.s.Retire("a", at(100), false, nil), "Retire(a, t100)")
	wa, wb := fresh("a", "1/1s,concurrency=1", meter.DefaultAttr()), fresh("b", "1/1s,concurrency=1", meter.DefaultAttr())
	wa.NextID, wa.Grants = 2, 1
	wb.NextID, wb.Grants = 2, 1
	wb.Calls = []callView{callOf(done(cb, 1, false))}
	h.loadBoth(wa, wb)
}

func testDelete(t *testing.T, h *harness) {
	h.create("a", "1/s", meter.DefaultAttr())
	h.create("b", "", meter.DefaultAttr())
	h.grant("a", call(1, 0, alice), time.Time{})
	h.grant("a", call(2, 1, alice), time.Time{})
	require.NoError(t, h.s.DeleteMeter("a"), "DeleteMeter(a)")
	require.Error(t, h.s.DeleteMeter("a"), "DeleteMeter(a) twice")
	require.Error(t, h.s.DeleteMeter("nope"), "DeleteMeter(nope)")
	h.loadBoth(fresh("b", "concurrency=1", meter.DefaultAttr()))
	// A meter created again under the old name starts with no history.
	h.create("a", "3/s", meter.DefaultAttr())
	h.loadBoth(fresh("a", "3/1s,concurrency=1", meter.DefaultAttr()), fresh("b", "concurrency=1", meter.DefaultAttr()))
}

func testSetSpecAttr(t *testing.T, h *harness) {
	h.create("a", "1/s", meter.DefaultAttr())
	h.grant("a", call(1, 0, alice), time.Time{})
	require.NoError(t, h.s.SetSpec("a", mustSpec(t, "75/h,concurrency=0,max_hold=30s")), "SetSpec(a)")
	require.NoError(t, h.s.SetAttr("a", meter.Attr{Mode: 0o640, UID: 33, GID: 44}), "SetAttr(a)")
	want := fresh("a", "75/1h,concurrency=0,max_hold=30s", meter.Attr{Mode: 0o640, UID: 33, GID: 44})
	want.NextID, want.Grants = 2, 1
	want.Calls = []callView{callOf(call(1, 0, alice))}
	h.loadBoth(want)
}

func testUnknownMeter(t *testing.T, h *harness) {
	h.create("a", "1/s", meter.DefaultAttr())
	h.grant("a", call(1, 0, alice), time.Time{})
	s := h.s
	require.Error(t, s.SetSpec("nope", meter.DefaultSpec()), "SetSpec(nope)")
	require.Error(t, s.SetAttr("nope", meter.DefaultAttr()), "SetAttr(nope)")
	require.Error(t, s.Grant("nope", call(1, 0, alice), time.Time{}, time.Time{}), "Grant(nope)")
	require.Error(t, s.Complete("nope", done(call(1, 0, alice), 1, false)), "Complete(nope, 1)")
	// Complete of an unknown call of a known meter may fail or be ignored:
	// a store that batches completions cannot tell at once.
	_ = s.Complete("a", done(call(9, 0, alice), 1, false))
	want := fresh("a", "1/1s,concurrency=1", meter.DefaultAttr())
	want.NextID, want.Grants = 2, 1
	want.Calls = []callView{callOf(call(1, 0, alice))}
	h.loadBoth(want)
}

func testCounters(t *testing.T, h *harness) {
	h.create("a", "1/s", meter.DefaultAttr())
	for i := range 5 {
		c := call(uint64(i+1), i, alice)
		h.grant("a", c, time.Time{})
		h.complete("a", done(c, i, false))
	}
	require.NoError(t, h.s.Retire("a", at(100), false, nil), "Retire(a, t100)")
	want := fresh("a", "1/1s,concurrency=1", meter.DefaultAttr())
	want.NextID, want.Grants = 6, 5
	h.loadBoth(want)
	h.grant("a", call(6, 200, bob), time.Time{})
	want.NextID, want.Grants = 7, 6
	want.Calls = []callView{callOf(call(6, 200, bob))}
	h.loadBoth(want)
}

func testConcurrent(t *testing.T, h *harness) {
	const meters, calls = 4, 40
	var want []storedView
	for i := range meters {
		name := fmt.Sprintf("m%d", i)
		h.create(name, "concurrency=0", meter.DefaultAttr())
		w := fresh(name, "concurrency=0", meter.DefaultAttr())
		w.NextID, w.Grants = calls+1, calls
		for j := range calls {
			w.Calls = append(w.Calls, callOf(done(call(uint64(j+1), j, alice), j+1, false)))
		}
		want = append(want, w)
	}
	var wg sync.WaitGroup
	errs := make(chan error, meters*calls*2)
	for i := range meters {
		wg.Go(func() {
			name := fmt.Sprintf("m%d", i)
			for j := range calls {
				c := call(uint64(j+1), j, alice)
				errs <- h.s.Grant(name, c, time.Time{}, time.Time{})
				errs <- h.s.Complete(name, done(c, j+1, false))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err, "Grant or Complete from concurrent goroutines")
	}
	h.loadBoth(want...)
}

// testRestartCompletesCallsInProgress: a call in progress when the daemon
// stopped counts as completed at the restart, and the registry's counters
// go on where they were.
func testRestartCompletes(t *testing.T, h *harness) {
	ctx := context.Background()
	clk := NewClock()
	r, err := meter.OpenLocal(h.s, meter.Options{Clock: clk})
	require.NoError(t, err, "meter.OpenLocal(empty store)")
	m, err := r.Create("email", mustSpec(t, "1/10s"), meter.DefaultAttr())
	require.NoError(t, err, "Create(email)")
	c, err := m.Acquire(ctx, alice, true)
	require.NoError(t, err, "Acquire at t0")
	require.Equal(t, uint64(1), c.ID, "Acquire at t0: call ID")
	clk.Advance(3 * time.Second)
	r.Close()
	h.restart() // the daemon died with call 1 in progress

	restartAt := clk.Now()
	r, err = meter.OpenLocal(h.s, meter.Options{Clock: clk})
	require.NoError(t, err, "meter.Open after restart")
	defer r.Close()
	m = r.Get("email")
	require.NotNil(t, m, "Get(email) after restart")
	snap := m.Snapshot()
	require.Empty(t, snap.Holders, "Snapshot().Holders after restart")
	require.Equal(t, []meter.WindowUsage{{Window: meter.Window{N: 1, Per: 10 * time.Second}, Used: 1}}, snap.Usage, "Snapshot().Usage after restart")
	require.Equal(t, uint64(1), snap.Grants, "Snapshot().Grants after restart")
	require.False(t, snap.Next.OK, "Snapshot().Next.OK after restart")
	require.True(t, snap.Next.At.Equal(restartAt.Add(10*time.Second)), "Snapshot().Next.At = %v, want restart+10s = %v", snap.Next.At, restartAt.Add(10*time.Second))

	got := h.load()
	require.Len(t, got, 1, "Load() after restart")
	require.Equal(t, []callView{{ID: 1, Granted: ns(Epoch), Done: ns(restartAt), Holder: alice}}, got[0].Calls, "stored calls after restart")

	_, err = m.Acquire(ctx, bob, true)
	require.ErrorIs(t, err, meter.ErrWouldBlock, "Acquire at restart+0s")
	clk.Advance(10*time.Second - 1)
	_, err = m.Acquire(ctx, bob, true)
	require.ErrorIs(t, err, meter.ErrWouldBlock, "Acquire at restart+10s-1ns")
	clk.Advance(1)
	c, err = m.Acquire(ctx, bob, true)
	require.NoError(t, err, "Acquire at restart+10s")
	require.Equal(t, uint64(2), c.ID, "Acquire at restart+10s: call ID")
	require.NoError(t, m.Release(c.ID), "Release(2)")
	require.Equal(t, uint64(2), m.Snapshot().Grants, "Snapshot().Grants after the second grant")
}
