package meter_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

// originalSpec is the original library's own test: three limits, serialized.
const originalSpec = "1/500ms,20/10s,50/30s,concurrency=1"

// originalBounds are its expectations: the end of call n comes no sooner
// than the bound, and (here) within 1% of it.
var originalBounds = []struct {
	call  int
	bound time.Duration
}{{8, 3500 * ms}, {24, 11500 * ms}, {56, 32500 * ms}}

func checkOriginalBounds(t *testing.T, ends []time.Duration) {
	t.Helper()
	for _, b := range originalBounds {
		got := ends[b.call-1]
		require.GreaterOrEqual(t, got, b.bound, "end of call %d", b.call)
		require.LessOrEqual(t, got, b.bound+b.bound/100, "end of call %d", b.call)
	}
}

func TestOriginalScenarioOneClient(t *testing.T) {
	r := newRig(t, originalSpec)
	var ends []time.Duration
	for range 56 {
		tk := r.enqueue()
		for !isDone(tk) {
			r.next()
		}
		c := r.granted(tk, r.now())
		r.release(c) // an instant call
		ends = append(ends, r.now())
	}
	checkOriginalBounds(t, ends)
	// Spacing: 500ms apart, except that call 51 waits for call 1 to leave 50/30s.
	for i := 1; i < len(ends); i++ {
		want := 500 * ms
		if i == 50 {
			want = 30*s - ends[49]
		}
		require.Equal(t, want, ends[i]-ends[i-1], "gap before call %d", i+1)
	}
}

func TestOriginalScenarioFourteenClients(t *testing.T) {
	r := newRig(t, originalSpec)
	const clients = 14
	tickets := make([]*meter.Ticket, clients)
	for i := range tickets {
		tickets[i] = r.enqueue()
	}
	var ends []time.Duration
	var order []int // which client made each call
	for len(ends) < 56 {
		progressed := false
		for i, tk := range tickets {
			if !isDone(tk) {
				continue
			}
			c, err := tk.Result()
			require.NoError(t, err, "client %d: Result()", i)
			r.release(c)
			ends = append(ends, r.now())
			order = append(order, i)
			tickets[i] = r.enqueue() // back to the end of the queue
			progressed = true
		}
		if !progressed {
			r.next()
		}
	}
	checkOriginalBounds(t, ends)
	for n, client := range order {
		require.Equal(t, n%clients, client, "call %d: FIFO serves the clients in turn", n+1)
	}
}

func TestStrictFIFO(t *testing.T) {
	// concurrency=2, holders release in a random order: whoever is granted
	// next is always the longest waiter.
	rng := rand.New(rand.NewPCG(1, 2))
	r := newRig(t, "concurrency=2")
	var queue []*meter.Ticket // not granted yet, arrival order
	var held []meter.Call
	var grantedSeq []uint64
	collect := func() {
		for len(queue) > 0 && isDone(queue[0]) {
			c, err := queue[0].Result()
			require.NoError(t, err)
			grantedSeq = append(grantedSeq, queue[0].Seq)
			held = append(held, c)
			queue = queue[1:]
		}
		for _, tk := range queue {
			r.waiting(tk) // nobody behind a waiter is granted
		}
	}
	for range 300 {
		if rng.IntN(2) == 0 || len(held) == 0 {
			queue = append(queue, r.enqueue())
		} else {
			i := rng.IntN(len(held))
			r.release(held[i])
			held = slices.Delete(held, i, i+1)
		}
		collect()
		require.LessOrEqual(t, len(held), 2, "calls in progress")
	}
	require.True(t, slices.IsSorted(grantedSeq), "grants in arrival order: %v", grantedSeq)
	require.Greater(t, len(grantedSeq), 100)
}

func TestNobodyOvertakesTheHead(t *testing.T) {
	r := newRig(t, "1/1s,count=grant,concurrency=0")
	r.call() // counts until 1s
	a := r.enqueue()
	b := r.enqueue()
	r.at(999 * ms)
	r.waiting(a, b)
	// A non-blocking newcomer may not jump the queue, nor may one that
	// arrives at the very instant the head becomes admissible.
	_, err := r.m.Enqueue(meter.Holder{}, true)
	require.ErrorIs(t, err, meter.ErrWouldBlock, "Enqueue(nonblock) behind waiters")
	r.at(1 * s)
	r.granted(a, 1*s)
	c := r.enqueue()
	_, err = r.m.Enqueue(meter.Holder{}, true)
	require.ErrorIs(t, err, meter.ErrWouldBlock, "Enqueue(nonblock) behind waiters")
	r.at(2 * s)
	r.granted(b, 2*s)
	r.waiting(c)
	r.at(3 * s)
	r.granted(c, 3*s)
}

func TestNoPolling(t *testing.T) {
	clk := newCountingClock()
	reg, err := meter.OpenLocal(metertest.NewMemStore(), meter.Options{Clock: clk})
	require.NoError(t, err)
	defer reg.Close()
	m, err := reg.Create("m", mustSpec(t, "1/10s,concurrency=1"), meter.DefaultAttr())
	require.NoError(t, err)

	tk, err := m.Enqueue(meter.Holder{}, false)
	require.NoError(t, err)
	c, _ := tk.Result()
	clk.Advance(2 * s)
	require.NoError(t, m.Release(c.ID)) // counts until 12s

	clk.Advance(1 * s)
	var waiters []*meter.Ticket
	for range 3 {
		tk, err := m.Enqueue(meter.Holder{}, false)
		require.NoError(t, err)
		waiters = append(waiters, tk)
	}
	check := func(when string, wantArmed int, wantAt time.Duration) {
		t.Helper()
		armed, pending := clk.counts()
		require.Equal(t, 1, pending, "pending timers %s", when)
		require.Equal(t, wantArmed, armed, "timers armed so far %s", when)
		at, ok := clk.NextTimer()
		require.True(t, ok)
		require.Equal(t, wantAt, at.Sub(t0), "NextTimer() %s", when)
	}
	check("while three wait", 1, 12*s)
	clk.Set(t0.Add(12*s - time.Nanosecond))
	require.False(t, isDone(waiters[0]), "head done before 12s")
	check("just before the head's instant", 1, 12*s) // the same timer: no re-arming
	clk.Set(t0.Add(12 * s))
	require.True(t, isDone(waiters[0]), "head done at 12s")
	c, _ = waiters[0].Result()
	require.NoError(t, m.Release(c.ID)) // an instant call: the next head goes at 22s
	check("after the head's instant call", 2, 22*s)

	// Waiting for a release needs no timer at all.
	clk.Set(t0.Add(22 * s))
	c, _ = waiters[1].Result()
	armed, pending := clk.counts()
	require.Equal(t, 0, pending, "pending timers while the head waits for a release")
	clk.Advance(time.Hour)
	armedAfter, _ := clk.counts()
	require.Equal(t, armed, armedAfter, "timers armed while waiting for a release")
	require.False(t, isDone(waiters[2]))
	require.NoError(t, m.Release(c.ID))
	check("after a release", armed+1, time.Hour+32*s)
}

func TestNonblock(t *testing.T) {
	r := newRig(t, "1/1s,concurrency=1")
	c := r.call()
	_, err := r.m.Enqueue(meter.Holder{}, true)
	require.ErrorIs(t, err, meter.ErrWouldBlock, "Enqueue(nonblock) at +0, within 1/1s")
	r.at(1 * s)
	tk, err := r.m.Enqueue(meter.Holder{}, true)
	require.NoError(t, err, "Enqueue(nonblock) at +1s")
	c = r.granted(tk, 1*s)
	r.at(3 * s)
	_, err = r.m.Enqueue(meter.Holder{}, true)
	require.ErrorIs(t, err, meter.ErrWouldBlock, "Enqueue(nonblock) while a call is in progress")
	require.Equal(t, uint64(2), r.m.Snapshot().Stats.Rejected)
	r.release(c)
	r.at(4 * s)
	r.call()
}

func TestMaxWait(t *testing.T) {
	r := newRig(t, "1/5s,count=grant,concurrency=1,max_wait=3s")
	r.call() // counts until 5s
	a := r.enqueue()
	r.at(2500 * ms)
	b := r.enqueue()
	r.at(3*s - time.Nanosecond)
	r.waiting(a, b)
	r.at(3 * s)
	r.failed(a, meter.ErrTimeout) // exactly at max_wait
	r.waiting(b)
	r.at(5 * s)
	r.granted(b, 5*s) // the next waiter proceeds as soon as it may

	// A holder blocks: the head times out, the next one gets the release.
	r = newRig(t, "concurrency=1,max_wait=2s")
	h := r.call2()
	a = r.enqueue()
	r.at(1 * s)
	b = r.enqueue()
	r.at(2 * s)
	r.failed(a, meter.ErrTimeout)
	r.at(2500 * ms)
	r.release(h)
	r.granted(b, 2500*ms)
	require.Equal(t, uint64(1), r.m.Snapshot().Stats.Timeouts)
	_, ok := r.clk.NextTimer()
	require.False(t, ok, "a granted ticket's max_wait timer must be stopped")
}

func TestCancel(t *testing.T) {
	r := newRig(t, "2/10s,count=grant,concurrency=0")
	r.call()
	r.call() // the window is full until 10s
	a, b, c := r.enqueue(), r.enqueue(), r.enqueue()
	before := r.m.Snapshot()
	r.at(1 * s)
	call, err := r.m.Cancel(b)
	require.ErrorIs(t, err, meter.ErrInterrupted, "Cancel(b)")
	require.Zero(t, call.ID)
	r.failed(b, meter.ErrInterrupted)
	call, err = r.m.Cancel(a) // the head
	require.ErrorIs(t, err, meter.ErrInterrupted, "Cancel(a)")
	require.Zero(t, call.ID)
	after := r.m.Snapshot()
	require.Equal(t, before.Usage, after.Usage, "usage after two cancels")
	require.Equal(t, before.Grants, after.Grants, "grants after two cancels")
	require.Equal(t, []uint64{c.Seq}, seqs(after.Waiters))
	require.Equal(t, uint64(2), after.Stats.Interrupts)
	require.Equal(t, 10*s, r.nextTimer())
	r.at(10 * s)
	r.granted(c, 10*s) // and at 10s exactly two more could go: only c wants one
	r.call()
}

func TestCancelRacingAGrantReturnsTheGrant(t *testing.T) {
	r := newRig(t, "concurrency=1")
	h := r.call2()
	tk := r.enqueue()
	r.release(h) // tk is granted ...
	call, err := r.m.Cancel(tk)
	require.NoError(t, err, "Cancel after the grant") // ... and Cancel hands it back
	require.Equal(t, r.granted(tk, 0).ID, call.ID)
	require.Len(t, r.m.Snapshot().Holders, 1, "the caller must still release it")
	r.release(call)

	// Acquire with a context that is already over, on a free meter: both
	// select cases are ready; either way the grant is returned.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 20 {
		call, err := r.m.Acquire(ctx, meter.Holder{}, false)
		require.NoError(t, err, "Acquire(cancelled ctx) on a free meter")
		require.NotZero(t, call.ID)
		r.release(call)
	}
	// And on a busy meter it is interrupted.
	h = r.call2()
	_, err = r.m.Acquire(ctx, meter.Holder{}, false)
	require.ErrorIs(t, err, meter.ErrInterrupted)
	require.Empty(t, r.m.Snapshot().Waiters)
	r.release(h)
}

func TestMaxWaiters(t *testing.T) {
	r := newRig(t, "concurrency=1,max_waiters=2")
	h := r.call2()
	a, b := r.enqueue(), r.enqueue()
	_, err := r.m.Enqueue(meter.Holder{}, false)
	require.ErrorIs(t, err, meter.ErrTooManyWaiters, "Enqueue with 2 waiting")
	r.release(h)
	ca := r.granted(a, 0)
	c := r.enqueue() // room again
	r.release(ca)
	r.release(r.granted(b, 0))
	r.granted(c, 0)
}

func TestRegistryCloseFailsWaiters(t *testing.T) {
	r := newRig(t, "concurrency=1,max_wait=1h")
	h := r.call2()
	a, b := r.enqueue(), r.enqueue()
	r.reg.Close()
	r.failed(a, meter.ErrClosed)
	r.failed(b, meter.ErrClosed)
	_, ok := r.clk.NextTimer()
	require.False(t, ok, "timers left after Close")
	_, err := r.m.Enqueue(meter.Holder{}, false)
	require.ErrorIs(t, err, meter.ErrClosed, "Enqueue after Close")
	_, err = r.reg.Create("other", meter.DefaultSpec(), meter.DefaultAttr())
	require.ErrorIs(t, err, meter.ErrClosed, "Create after Close")
	r.release(h) // holders may still release
	require.Empty(t, r.m.Snapshot().Holders)
}

func TestRemove(t *testing.T) {
	r := newRig(t, "concurrency=1,max_hold=1s")
	h := r.call2()
	require.ErrorIs(t, r.reg.Remove("m"), meter.ErrBusy, "Remove with a holder")
	r.at(2 * s) // h's hold expired, but its file is still open
	require.Empty(t, r.m.Snapshot().Holders)
	require.ErrorIs(t, r.reg.Remove("m"), meter.ErrBusy, "Remove with an expired hold still open")
	r.release(h)

	r = newRig(t, "1/1h,count=grant,concurrency=0")
	r.call()
	w := r.enqueue() // waits an hour, with nobody holding the meter
	require.ErrorIs(t, r.reg.Remove("m"), meter.ErrBusy, "Remove with a waiter")
	r.m.Cancel(w)

	require.NoError(t, r.reg.Remove("m"), "Remove when idle")
	require.Nil(t, r.reg.Get("m"))
	require.Empty(t, r.reg.Names())
	require.ErrorIs(t, r.reg.Remove("m"), meter.ErrNotExist)
	stored, err := r.store.Load()
	require.NoError(t, err)
	require.Empty(t, stored, "the store after Remove")
	_, err = r.m.Enqueue(meter.Holder{}, false)
	require.ErrorIs(t, err, meter.ErrClosed, "Enqueue on a removed meter")
	_, ok := r.clk.NextTimer()
	require.False(t, ok, "timers left after Remove")
}

func TestSetSpecReevaluatesWaiters(t *testing.T) {
	r := newRig(t, "concurrency=1")
	h := r.call2()
	a := r.enqueue()
	require.NoError(t, r.m.SetSpec(mustSpec(t, "concurrency=2")))
	r.granted(a, 0) // without advancing time
	r.release(h)

	r = newRig(t, "1/10s,count=grant,concurrency=0")
	r.call()
	a, b := r.enqueue(), r.enqueue()
	require.Equal(t, 10*s, r.nextTimer())
	require.NoError(t, r.m.SetSpec(mustSpec(t, "1/4s,count=grant,concurrency=0")))
	require.Equal(t, 4*s, r.nextTimer(), "the head's timer follows the new limit")
	require.NoError(t, r.m.SetSpec(mustSpec(t, "2/10s,count=grant,concurrency=0")))
	r.granted(a, 0) // loosened: granted at once
	r.waiting(b)
	require.Equal(t, 10*s, r.nextTimer())
	stored, err := r.store.Load()
	require.NoError(t, err)
	require.Equal(t, "2/10s,concurrency=0,count=grant", stored[0].Spec.String(), "the stored spec")

	r.store.Fail = errors.New("disk full")
	require.ErrorIs(t, r.m.SetSpec(mustSpec(t, "5/10s")), meter.ErrStore)
	r.store.Fail = nil
	require.Equal(t, "2/10s,concurrency=0,count=grant", r.m.Spec().String(), "a failed SetSpec changes nothing")
	r.waiting(b)
}

func TestMaxHoldExpiry(t *testing.T) {
	r := newRig(t, "2/10s,concurrency=1,max_hold=2s")
	a := r.call2() // never released in time
	b := r.enqueue()
	r.at(500 * ms)
	r.waiting(b)
	require.Equal(t, 2*s, r.nextTimer())
	r.at(2 * s)
	cb := r.granted(b, 2*s) // a counts completed at 2s
	snap := r.m.Snapshot()
	require.Equal(t, []uint64{a.ID}, ids(snap.Expired), "Snapshot().Expired")
	require.Equal(t, []uint64{cb.ID}, ids(snap.Holders), "Snapshot().Holders")
	r.at(2500 * ms)
	r.release(cb) // counts until 12.5s
	r.at(3 * s)
	c := r.enqueue()
	require.Equal(t, 12*s, r.nextTimer(), "a counts until 2s+10s")
	r.at(5 * s)
	r.release(a) // too late: counts nothing more
	require.Equal(t, 12*s, r.nextTimer(), "after the expired call's release")
	snap = r.m.Snapshot()
	require.Empty(t, snap.Expired)
	require.Equal(t, uint64(1), snap.Stats.Expired)
	r.at(12 * s)
	r.granted(c, 12*s)
}

// Regression: Release of a call whose max_hold ran out while nobody was
// waiting (so nothing had expired it) completed it at the release instead
// of at grant+max_hold, and it then counted PER after the release.
func TestReleaseAfterUnobservedMaxHold(t *testing.T) {
	r := newRig(t, "1/10s,concurrency=1,max_hold=1s")
	a := r.call2()
	r.at(5 * s) // nobody waits, nothing looks at the meter
	r.release(a)
	b := r.enqueue()
	require.Equal(t, 11*s, r.nextTimer(), "a counts completed at 1s, until 11s")
	r.at(11 * s)
	r.granted(b, 11*s)
	require.Equal(t, uint64(1), r.m.Snapshot().Stats.Expired)
	stored, err := r.store.Load()
	require.NoError(t, err)
	require.Equal(t, t0.Add(1*s), stored[0].State.Calls[0].DoneAt, "stored completion of call 1")
}

// Regression (found by meter/redis's differential test): a limits write
// that lifted max_hold made a call that max_hold had ended in progress
// again, unless something had looked at the meter since max_hold ran out
// (and the library always did). A call held longer than max_hold counts as
// completed then, whatever the limits say later.
func TestSetSpecAfterUnobservedMaxHold(t *testing.T) {
	for _, next := range []string{"concurrency=1", "concurrency=1,max_hold=1h"} {
		r := newRig(t, "1/10s,concurrency=1,max_hold=1s")
		a := r.call2()
		r.at(5 * s) // nobody waits, nothing looks at the meter
		require.NoError(t, r.m.SetSpec(mustSpec(t, next)), "SetSpec(%q)", next)
		snap := r.m.Status()
		require.Equal(t, 0, snap.HoldersN, "after SetSpec(%q): holders", next)
		require.Equal(t, 1, snap.ExpiredN, "after SetSpec(%q): expired holds", next)
		b := r.call2() // the slot is free: a counts as completed at +1s
		r.release(b)
		r.release(a)
	}
}

func TestStoreFailureOnGrant(t *testing.T) {
	r := newRig(t, "1/1s,count=grant,concurrency=1,rate=1/s")
	r.call()
	w := r.enqueue()
	before := r.m.Snapshot()
	r.store.Fail = errors.New("disk full")
	r.at(1 * s)
	r.failed(w, meter.ErrStore)
	_, err := w.Result()
	require.ErrorContains(t, err, "disk full")
	tk, err := r.m.Enqueue(meter.Holder{}, true)
	require.ErrorIs(t, err, meter.ErrStore, "Enqueue(nonblock) with a failing store")
	require.Nil(t, tk, "Enqueue(nonblock) with a failing store: no ticket")
	r.store.Fail = nil

	after := r.m.Snapshot()
	require.Equal(t, before.Grants, after.Grants, "grants")
	require.Empty(t, after.Holders)
	require.Equal(t, uint64(2), after.Stats.StoreErrs)
	require.True(t, after.Next.OK, "the failed grants took no room: Next at +1s")
	c := r.call()
	require.Equal(t, uint64(2), c.ID, "the failed grants used no ID")
	stored, err := r.store.Load()
	require.NoError(t, err)
	// Call 1 (granted at t0, count=grant, 1/1s) no longer counts at t1: the
	// release of call 2 pruned it from the store too.
	require.Equal(t, []uint64{2}, ids(stored[0].State.Calls))
	require.Equal(t, t0.Add(2*s), stored[0].State.TAT, "the bucket's TAT ignores the failed grants")
}

func seqs(ws []meter.Waiter) []uint64 {
	var out []uint64
	for _, w := range ws {
		out = append(out, w.Seq)
	}
	return out
}
