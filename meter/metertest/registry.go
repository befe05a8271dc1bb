package metertest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

// OpenRegistry opens a registry named host on the storage kept in dir
// (a t.TempDir the suite made) with clock clk. Opening again with the same
// dir after close is a daemon restart; for a SharedStore, two hosts open
// registries on one dir at once (one shared store). close closes the
// registry and its store.
type OpenRegistry func(t *testing.T, dir, host string, clk *Clock) (reg *meter.Registry, close func())

// RunDeciderTests is the conformance suite of the seam: every behaviour a
// decider (meter.Local over a store, or a shared store) must give users,
// run through a registry as subtests of t. Time is the fake clk; grants of
// a shared store arrive asynchronously, so the suite waits for them (a few
// seconds at most, in real time).
func RunDeciderTests(t *testing.T, open OpenRegistry) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, h *regHarness)
	}{
		{"CreateListRemove", testRegCreateRemove},
		{"WindowSpacing", testRegWindow},
		{"FIFO", testRegFIFO},
		{"ConcurrencyCap", testRegConcurrency},
		{"MaxWait", testRegMaxWait},
		{"InterruptCountsNothing", testRegInterrupt},
		{"RevokeCountsNothing", testRegRevoke},
		{"WideningJudgesHistory", testRegWidening},
		{"RestartKeepsCounting", testRegRestart},
		{"Bucket", testRegBucket},
		{"DataFiles", testRegData},
		{"DataBounds", testRegDataBounds},
		{"DataRemoved", testRegDataRemoved},
		{"DataRoom", testRegDataRoom},
		{"UnitsAndSettlement", testSeamUnitsSettle},
		{"LoweredUnitsLimitRefusesWaiter", testSeamShrinkRefuses},
		{"MaxWaiters", testSeamMaxWaiters},
		{"MaxHold", testSeamMaxHold},
		{"CancelledHeadWakesNext", testSeamCancelHeadWakes},
		{"NarrowingAndCountMode", testSeamNarrowing},
		{"UnitsSaturate", testSeamUnitsSaturate},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newRegHarness(t, open)) })
	}
}

// RunSharedTests is the conformance suite of a SharedStore across hosts:
// two registries, hosts "a" and "b", on one store.
func RunSharedTests(t *testing.T, open OpenRegistry) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, h *regHarness)
	}{
		{"ChangesSeenByOtherHost", testSharedVisibility},
		{"FIFOAcrossHosts", testSharedFIFO},
		{"ConcurrencyAcrossHosts", testSharedConcurrency},
		{"RestartKeepsOtherHostsCalls", testSharedRestart},
		{"RemoveBusyOnOtherHost", testSharedRemoveBusy},
		{"DataSharedByHosts", testSharedData},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newRegHarness(t, open)) })
	}
}

// regHarness holds the hosts' registries on one storage and one clock.
type regHarness struct {
	t      *testing.T
	open   OpenRegistry
	dir    string
	clk    *Clock
	regs   map[string]*meter.Registry
	closes map[string]func()
}

func newRegHarness(t *testing.T, open OpenRegistry) *regHarness {
	h := &regHarness{t: t, open: open, dir: t.TempDir(), clk: NewClock(), regs: map[string]*meter.Registry{}, closes: map[string]func(){}}
	t.Cleanup(func() {
		for _, c := range h.closes {
			c()
		}
	})
	return h
}

// reg returns host's registry, opening it if needed.
func (h *regHarness) reg(host string) *meter.Registry {
	if r, ok := h.regs[host]; ok {
		return r
	}
	r, c := h.open(h.t, h.dir, host, h.clk)
	h.regs[host], h.closes[host] = r, c
	return r
}

// restart closes host's registry and store and opens them again.
func (h *regHarness) restart(host string) *meter.Registry {
	if c, ok := h.closes[host]; ok {
		c()
		delete(h.closes, host)
		delete(h.regs, host)
	}
	return h.reg(host)
}

// create makes meter name with spec on host and waits until every open
// host sees it.
func (h *regHarness) create(host, name, spec string) *meter.Meter {
	h.t.Helper()
	m, err := h.reg(host).Create(name, mustSpec(h.t, spec), meter.DefaultAttr())
	require.NoError(h.t, err, "Create(%q) on %s", name, host)
	for other, r := range h.regs {
		h.eventually(fmt.Sprintf("%s sees meter %s", other, name), func() bool { return r.Get(name) != nil })
	}
	return m
}

// eventually polls cond, letting due timers of the fake clock run, until it
// holds or a few seconds pass.
func (h *regHarness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting until %s (at +%v)", what, h.clk.Now().Sub(Epoch))
		}
		h.clk.Set(h.clk.Now())
		time.Sleep(time.Millisecond)
	}
}

// at moves the fake clock to Epoch+d.
func (h *regHarness) at(d time.Duration) { h.clk.Set(Epoch.Add(d)) }

// waiter is an Acquire running in its own goroutine.
type waiter struct {
	cancel context.CancelFunc
	done   chan struct{}
	call   meter.Call
	err    error
}

func (h *regHarness) acquire(m *meter.Meter, pid int) *waiter { return h.acquireCost(m, pid, 1) }

func (w *waiter) finished() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// queued waits until m's status (on the given meter object) counts n waiters.
func (h *regHarness) queued(m *meter.Meter, n int) {
	h.t.Helper()
	h.eventually(fmt.Sprintf("%s has %d waiters", m.Name(), n), func() bool { return m.Status().WaitersN == n })
}

// granted waits until w is granted, at the fake clock's now.
func (h *regHarness) granted(w *waiter, what string) meter.Call {
	h.t.Helper()
	h.eventually(what+" is granted", w.finished)
	require.NoError(h.t, w.err, "%s", what)
	return w.call
}

// stillWaiting checks that no w is decided after the store had time to.
func (h *regHarness) stillWaiting(what string, ws ...*waiter) {
	h.t.Helper()
	time.Sleep(50 * time.Millisecond)
	h.clk.Set(h.clk.Now())
	for _, w := range ws {
		require.False(h.t, w.finished(), "%s: decided too early (err %v)", what, w.err)
	}
}

func (h *regHarness) now(m *meter.Meter) meter.Call {
	h.t.Helper()
	c, err := m.Acquire(context.Background(), meter.Holder{PID: 1}, true)
	require.NoError(h.t, err, "nonblocking Acquire of %s at +%v", m.Name(), h.clk.Now().Sub(Epoch))
	return c
}

func (h *regHarness) refused(m *meter.Meter) {
	h.t.Helper()
	_, err := m.Acquire(context.Background(), meter.Holder{PID: 1}, true)
	require.ErrorIs(h.t, err, meter.ErrWouldBlock, "nonblocking Acquire of %s at +%v", m.Name(), h.clk.Now().Sub(Epoch))
}

func (h *regHarness) release(m *meter.Meter, c meter.Call) {
	h.t.Helper()
	require.NoError(h.t, m.Release(c.ID), "Release(%d) of %s", c.ID, m.Name())
}

func testRegCreateRemove(t *testing.T, h *regHarness) {
	r := h.reg("a")
	h.create("a", "m", "1/s")
	_, err := r.Create("m", meter.DefaultSpec(), meter.DefaultAttr())
	require.ErrorIs(t, err, meter.ErrExist, "Create of an existing name")
	require.Equal(t, []string{"m"}, r.Names())
	m := r.Get("m")
	c := h.now(m)
	require.ErrorIs(t, r.Remove("m"), meter.ErrBusy, "Remove with a holder")
	h.release(m, c)
	require.NoError(t, r.Remove("m"), "Remove when idle")
	require.Nil(t, r.Get("m"))
	require.ErrorIs(t, r.Remove("m"), meter.ErrNotExist)
	h.create("a", "m", "")
	require.Equal(t, "concurrency=1", r.Get("m").Spec().String(), "a meter made again starts anew")
}

func testRegWindow(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "1/1s,concurrency=0")
	c := h.now(m)
	h.refused(m)
	w := h.acquire(m, 2)
	h.queued(m, 1)
	h.at(300 * time.Millisecond)
	h.release(m, c) // counts until +1.3s
	h.at(1299 * time.Millisecond)
	h.stillWaiting("the second call before +1.3s", w)
	h.at(1300 * time.Millisecond)
	got := h.granted(w, "the second call at +1.3s")
	require.Equal(t, Epoch.Add(1300*time.Millisecond).UnixMicro(), got.GrantedAt.UnixMicro(), "granted at")
}

func testRegFIFO(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "concurrency=1")
	c := h.now(m)
	var ws []*waiter
	for i := range 5 {
		ws = append(ws, h.acquire(m, 10+i))
		h.queued(m, i+1)
	}
	for i, w := range ws {
		h.release(m, c)
		c = h.granted(w, fmt.Sprintf("waiter %d", i))
		h.stillWaiting(fmt.Sprintf("the waiters behind %d", i), ws[i+1:]...)
	}
}

func testRegConcurrency(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "concurrency=2")
	c1, c2 := h.now(m), h.now(m)
	h.refused(m)
	w := h.acquire(m, 3)
	h.queued(m, 1)
	require.Equal(t, 2, m.Status().HoldersN)
	h.release(m, c2)
	h.granted(w, "the third call after a release")
	h.release(m, c1)
}

func testRegMaxWait(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "concurrency=1,max_wait=2s")
	c := h.now(m)
	w := h.acquire(m, 2)
	h.queued(m, 1)
	h.at(1999 * time.Millisecond)
	h.stillWaiting("before max_wait", w)
	h.at(2 * time.Second)
	h.eventually("max_wait ends the wait", w.finished)
	require.ErrorIs(t, w.err, meter.ErrTimeout)
	h.queued(m, 0)
	h.release(m, c)
	h.now(m) // the timed-out open counted nothing
}

func testRegInterrupt(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "1/1h,concurrency=0")
	c := h.now(m)
	w := h.acquire(m, 2)
	h.queued(m, 1)
	w.cancel()
	h.eventually("the interrupted open returns", w.finished)
	require.ErrorIs(t, w.err, meter.ErrInterrupted)
	h.queued(m, 0)
	h.release(m, c)
	st := m.Status()
	require.Equal(t, 1, st.Usage[0].Used, "only the first call counts")
}

func testRegRevoke(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "1/1h")
	c := h.now(m)
	require.NoError(t, m.Revoke(c.ID))
	h.eventually("the revoked call counts nothing", func() bool { return m.Status().Usage[0].Used == 0 })
	h.now(m)
}

func testRegWidening(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "2/1s,concurrency=0")
	for i := range 3 {
		h.at(time.Duration(i) * time.Second)
		h.release(m, h.now(m))
		h.release(m, h.now(m))
	}
	h.at(3500 * time.Millisecond)
	require.NoError(t, m.SetSpec(mustSpec(t, "10/1m,concurrency=0")))
	h.eventually("6 calls count against 10/1m", func() bool { return m.Status().Usage[0].Used == 6 })
	for range 4 {
		h.release(m, h.now(m))
	}
	h.refused(m)
}

func testRegRestart(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "1/10s")
	h.release(m, h.now(m))
	h.at(2 * time.Second)
	m = h.restart("a").Get("m")
	require.NotNil(t, m, "the meter after a restart")
	h.refused(m)
	require.Equal(t, 1, m.Status().Usage[0].Used)
	w := h.acquire(m, 2)
	h.queued(m, 1)
	h.at(10 * time.Second)
	h.granted(w, "the call after the restart, when the first stops counting")
}

func testRegBucket(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "rate=2/1s,burst=2,concurrency=0")
	h.now(m)
	h.now(m)
	h.refused(m)
	h.at(499 * time.Millisecond)
	h.refused(m)
	h.at(500 * time.Millisecond)
	h.now(m)
	h.refused(m)
}

func testSharedVisibility(t *testing.T, h *regHarness) {
	a, b := h.reg("a"), h.reg("b")
	h.create("a", "m", "1/s")
	require.NoError(t, b.Get("m").SetSpec(mustSpec(t, "5/1m")))
	h.eventually("a sees b's limits", func() bool { return a.Get("m").Spec().String() == "5/1m,concurrency=1" })
	require.NoError(t, a.Get("m").SetAttr(meter.Attr{Mode: 0o700, UID: 7, GID: 8}))
	h.eventually("b sees a's owner and mode", func() bool { return b.Get("m").Attr() == meter.Attr{Mode: 0o700, UID: 7, GID: 8} })
	require.NoError(t, b.Remove("m"))
	h.eventually("a sees the meter removed", func() bool { return a.Get("m") == nil })
}

func testSharedFIFO(t *testing.T, h *regHarness) {
	h.reg("a")
	h.reg("b")
	h.create("a", "m", "concurrency=1")
	hosts := []*meter.Meter{h.regs["a"].Get("m"), h.regs["b"].Get("m")}
	c, owner := h.now(hosts[0]), hosts[0]
	var ws []*waiter
	for i := range 6 {
		ws = append(ws, h.acquire(hosts[i%2], 10+i))
		h.queued(hosts[0], i+1)
	}
	for i, w := range ws {
		h.release(owner, c)
		c, owner = h.granted(w, fmt.Sprintf("waiter %d (host %s)", i, []string{"a", "b"}[i%2])), hosts[i%2]
		h.stillWaiting(fmt.Sprintf("the waiters behind %d", i), ws[i+1:]...)
	}
	h.release(owner, c)
}

func testSharedConcurrency(t *testing.T, h *regHarness) {
	h.reg("a")
	h.reg("b")
	h.create("a", "m", "concurrency=1")
	c := h.now(h.regs["a"].Get("m"))
	h.refused(h.regs["b"].Get("m"))
	w := h.acquire(h.regs["b"].Get("m"), 2)
	h.queued(h.regs["a"].Get("m"), 1)
	h.release(h.regs["a"].Get("m"), c)
	h.granted(w, "b's waiter after a's release")
}

func testSharedRestart(t *testing.T, h *regHarness) {
	h.reg("a")
	h.reg("b")
	h.create("a", "m", "concurrency=1")
	c := h.now(h.regs["a"].Get("m"))
	b := h.restart("b")
	require.Equal(t, 1, b.Get("m").Status().HoldersN, "a's call after b restarted")
	h.refused(b.Get("m"))
	h.release(h.regs["a"].Get("m"), c)
	h.now(b.Get("m"))
}

func testSharedRemoveBusy(t *testing.T, h *regHarness) {
	h.reg("a")
	h.reg("b")
	h.create("a", "m", "concurrency=1")
	c := h.now(h.regs["a"].Get("m"))
	err := h.regs["b"].Remove("m")
	require.True(t, errors.Is(err, meter.ErrBusy), "Remove on b while a holds: %v", err)
	h.release(h.regs["a"].Get("m"), c)
	require.NoError(t, h.regs["b"].Remove("m"))
}
