package meter_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

// rig is one meter named "m" on a fake clock (at t0) and a MemStore.
type rig struct {
	t     testing.TB
	clk   *metertest.Clock
	store *metertest.MemStore
	reg   *meter.Registry
	m     *meter.Meter
}

func newRig(t testing.TB, specText string) *rig {
	t.Helper()
	r := &rig{t: t, clk: metertest.NewClock(), store: metertest.NewMemStore()}
	r.open()
	m, err := r.reg.Create("m", mustSpec(t, specText), meter.DefaultAttr())
	require.NoError(t, err, "Create(%q)", "m")
	r.m = m
	return r
}

// open (re)opens the registry on the rig's store and clock.
func (r *rig) open() {
	r.t.Helper()
	reg, err := meter.OpenLocal(r.store, meter.Options{Clock: r.clk})
	require.NoError(r.t, err, "Open")
	r.t.Cleanup(reg.Close)
	r.reg = reg
	r.m = reg.Get("m")
}

// now is the clock's time as an offset from t0.
func (r *rig) now() time.Duration { return r.clk.Now().Sub(t0) }

// at moves the clock to t0+d, running the timers due on the way.
func (r *rig) at(d time.Duration) {
	r.t.Helper()
	require.False(r.t, t0.Add(d).Before(r.clk.Now()), "at(%v): the clock is at +%v already", d, r.now())
	r.clk.Set(t0.Add(d))
}

// next moves the clock to the next pending timer, which must exist.
func (r *rig) next() {
	r.t.Helper()
	at, ok := r.clk.NextTimer()
	require.True(r.t, ok, "NextTimer() at +%v: none pending", r.now())
	r.clk.Set(at)
}

// nextTimer returns the next pending timer as an offset from t0, or -1.
func (r *rig) nextTimer() time.Duration {
	at, ok := r.clk.NextTimer()
	if !ok {
		return -1
	}
	return at.Sub(t0)
}

func (r *rig) enqueue() *meter.Ticket {
	r.t.Helper()
	tk, err := r.m.Enqueue(meter.Holder{PID: 100}, false)
	require.NoError(r.t, err, "Enqueue at +%v", r.now())
	return tk
}

// granted returns tk's call, which must have been granted at t0+want.
func (r *rig) granted(tk *meter.Ticket, want time.Duration) meter.Call {
	r.t.Helper()
	require.True(r.t, isDone(tk), "ticket %d at +%v: still waiting, want granted at +%v", tk.Seq, r.now(), want)
	c, err := tk.Result()
	require.NoError(r.t, err, "ticket %d: Result()", tk.Seq)
	require.Equal(r.t, want, c.GrantedAt.Sub(t0), "ticket %d: granted at", tk.Seq)
	return c
}

// failed checks that tk failed with an error that is want.
func (r *rig) failed(tk *meter.Ticket, want error) {
	r.t.Helper()
	require.True(r.t, isDone(tk), "ticket %d at +%v: still waiting, want %v", tk.Seq, r.now(), want)
	_, err := tk.Result()
	require.ErrorIs(r.t, err, want, "ticket %d: Result()", tk.Seq)
}

// waiting checks that no ticket is decided yet.
func (r *rig) waiting(tks ...*meter.Ticket) {
	r.t.Helper()
	for _, tk := range tks {
		if isDone(tk) {
			c, err := tk.Result()
			r.t.Fatalf("ticket %d at +%v: done (call %d at +%v, err %v), want waiting", tk.Seq, r.now(), c.ID, c.GrantedAt.Sub(t0), err)
		}
	}
}

func (r *rig) release(c meter.Call) {
	r.t.Helper()
	require.NoError(r.t, r.m.Release(c.ID), "Release(%d) at +%v", c.ID, r.now())
}

// call grants and releases an instant call at once; the meter must be free.
func (r *rig) call() meter.Call {
	r.t.Helper()
	tk, err := r.m.Enqueue(meter.Holder{}, true)
	require.NoError(r.t, err, "Enqueue(nonblock) at +%v", r.now())
	c := r.granted(tk, r.now())
	r.release(c)
	return c
}

// call2 grants a call and keeps it in progress.
func (r *rig) call2() meter.Call {
	r.t.Helper()
	tk, err := r.m.Enqueue(meter.Holder{PID: 7}, true)
	require.NoError(r.t, err, "Enqueue(nonblock) at +%v", r.now())
	return r.granted(tk, r.now())
}

func isDone(tk *meter.Ticket) bool {
	select {
	case <-tk.Done():
		return true
	default:
		return false
	}
}

// countingClock counts the timers a meter arms, to prove it does not poll.
type countingClock struct {
	*metertest.Clock
	mu      sync.Mutex
	armed   int
	pending map[*countingTimer]bool
}

type countingTimer struct {
	meter.Timer
	c *countingClock
}

func newCountingClock() *countingClock {
	return &countingClock{Clock: metertest.NewClock(), pending: map[*countingTimer]bool{}}
}

func (c *countingClock) AfterFunc(d time.Duration, f func()) meter.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed++
	t := &countingTimer{c: c}
	c.pending[t] = true
	t.Timer = c.Clock.AfterFunc(d, func() {
		c.mu.Lock()
		delete(c.pending, t)
		c.mu.Unlock()
		f()
	})
	return t
}

func (t *countingTimer) Stop() bool {
	t.c.mu.Lock()
	delete(t.c.pending, t)
	t.c.mu.Unlock()
	return t.Timer.Stop()
}

// counts returns how many timers were ever armed and how many are pending.
func (c *countingClock) counts() (armed, pending int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.armed, len(c.pending)
}
