package metertest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

// The behaviours of the seam that issue 16 lists beside those of
// registry.go: weighted calls and settlement, a lowered units limit,
// max_waiters, max_hold, wake-ups after a cancelled head, narrowing and
// count-mode changes, and the bounds. Every decider runs them (see
// RunDeciderTests).

// acquireCost is acquire for a call of cost units.
func (h *regHarness) acquireCost(m *meter.Meter, pid int, cost int64) *waiter {
	ctx, cancel := context.WithCancel(context.Background())
	w := &waiter{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.call, w.err = m.AcquireCost(ctx, meter.Holder{PID: pid}, cost, false)
	}()
	h.t.Cleanup(cancel)
	return w
}

// nowCost is a granted nonblocking call of cost units.
func (h *regHarness) nowCost(m *meter.Meter, cost int64) meter.Call {
	h.t.Helper()
	c, err := m.AcquireCost(context.Background(), meter.Holder{PID: 1}, cost, true)
	require.NoError(h.t, err, "nonblocking AcquireCost(%d) of %s at +%v", cost, m.Name(), h.clk.Now().Sub(Epoch))
	return c
}

// used waits until m's window i shows used.
func (h *regHarness) used(m *meter.Meter, i, used int) {
	h.t.Helper()
	h.eventually("window usage", func() bool { return m.Status().Usage[i].Used == used })
}

func testSeamUnitsSettle(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "units:100/1s,concurrency=0")
	a := h.nowCost(m, 60)
	w := h.acquireCost(m, 2, 50)
	h.queued(m, 1)
	require.NoError(t, m.Settle(a.ID, 10), "Settle(60 → 10)")
	b := h.granted(w, "acquire@50 after the refund of 50")
	h.used(m, 0, 60)
	require.NoError(t, m.Settle(b.ID, 95), "Settle(50 → 95): debt")
	h.used(m, 0, 105)
	_, err := m.AcquireCost(context.Background(), meter.Holder{PID: 3}, 0, true)
	require.ErrorIs(t, err, meter.ErrWouldBlock, "acquire@0 while the window is over its limit")
	h.release(m, a)
	h.release(m, b)
	_, err = m.AcquireCost(context.Background(), meter.Holder{PID: 3}, 101, true)
	require.ErrorIs(t, err, meter.ErrTooBig, "a cost past every units item")
	h.at(time.Second)
	h.used(m, 0, 0)
	h.release(m, h.nowCost(m, 100))
}

func testSeamShrinkRefuses(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "units:10/1s,concurrency=0")
	a := h.nowCost(m, 5)
	big := h.acquireCost(m, 2, 8)
	h.queued(m, 1)
	small := h.acquireCost(m, 3, 1)
	h.queued(m, 2)
	require.NoError(t, m.SetSpec(mustSpec(t, "units:6/1s,concurrency=0")))
	h.eventually("the waiter of 8 is refused", big.finished)
	require.ErrorIs(t, big.err, meter.ErrTooBig, "acquire@8 after the limit became units:6/1s")
	h.granted(small, "the waiter behind it")
	h.release(m, a)
}

func testSeamMaxWaiters(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "concurrency=1,max_waiters=2")
	c := h.now(m)
	w1 := h.acquire(m, 2)
	h.queued(m, 1)
	w2 := h.acquire(m, 3)
	h.queued(m, 2)
	_, err := m.Acquire(context.Background(), meter.Holder{PID: 4}, false)
	require.ErrorIs(t, err, meter.ErrTooManyWaiters, "a third waiter")
	h.release(m, c)
	h.release(m, h.granted(w1, "the first waiter"))
	h.release(m, h.granted(w2, "the second waiter"))
}

func testSeamMaxHold(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "concurrency=1,max_hold=1s,3/1h")
	a := h.now(m)
	w := h.acquire(m, 2)
	h.queued(m, 1)
	h.at(999 * time.Millisecond)
	h.stillWaiting("before the hold ends", w)
	h.at(time.Second)
	b := h.granted(w, "the waiter when max_hold ends the first call")
	st := m.Status()
	require.Equal(t, 1, st.ExpiredN, "expired holds")
	require.Equal(t, 1, st.HoldersN, "in progress")
	require.Equal(t, 2, st.Usage[0].Used, "both count against 3/1h")
	h.release(m, a) // counts nothing more
	h.release(m, b)
	require.Equal(t, 0, m.Status().ExpiredN)
}

func testSeamCancelHeadWakes(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "1/1s,concurrency=0")
	h.release(m, h.now(m))
	w1 := h.acquire(m, 2)
	h.queued(m, 1)
	w2 := h.acquire(m, 3)
	h.queued(m, 2)
	w1.cancel()
	h.eventually("the interrupted head returns", w1.finished)
	h.at(999 * time.Millisecond)
	h.stillWaiting("before the window admits", w2)
	h.at(time.Second)
	h.granted(w2, "the waiter behind a cancelled head, at its instant")
}

func testSeamNarrowing(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "10/1m,concurrency=0")
	for i := range 5 {
		h.at(time.Duration(i) * time.Second)
		h.release(m, h.now(m))
	}
	h.at(4500 * time.Millisecond)
	require.NoError(t, m.SetSpec(mustSpec(t, "2/1s,concurrency=0")))
	h.used(m, 0, 1) // only the call at +4s is within the last second
	h.release(m, h.now(m))
	h.refused(m)
	require.NoError(t, m.SetSpec(mustSpec(t, "3/1s,count=grant,concurrency=0")))
	h.used(m, 0, 2)
	c := h.now(m) // in progress: counts from its grant with count=grant
	h.refused(m)
	require.NoError(t, m.SetSpec(mustSpec(t, "3/1s,concurrency=0")))
	h.used(m, 0, 3) // completion: the call in progress counts until PER after it ends
	h.at(time.Hour)
	h.used(m, 0, 1)
	h.release(m, c)
}

func testSeamUnitsSaturate(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "units:1125899906842624/1h,concurrency=0")
	var calls []meter.Call
	for range 10 {
		calls = append(calls, h.nowCost(m, 0))
	}
	for _, c := range calls {
		require.NoError(t, m.Settle(c.ID, meter.MaxUnits))
	}
	h.used(m, 0, meter.MaxUsage) // 10·2^50 saturates at 2^53
	_, err := m.AcquireCost(context.Background(), meter.Holder{PID: 3}, 0, true)
	require.ErrorIs(t, err, meter.ErrWouldBlock, "acquire@0 on a saturated window")
	for _, c := range calls {
		h.release(m, c)
	}
}
