package meter_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

// These tests block in Acquire on other goroutines, for the race detector.
// They wait for a condition with runtime.Gosched, never with a sleep.

// waitFor yields until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i > 10_000_000 {
			t.Fatalf("gave up waiting for %s", what)
		}
		runtime.Gosched()
	}
}

func TestAcquireBlocksUntilGranted(t *testing.T) {
	r := newRig(t, "1/1s,concurrency=1")
	r.call() // counts until 1s
	type result struct {
		c   meter.Call
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := r.m.Acquire(context.Background(), meter.Holder{PID: 5}, false)
		got <- result{c, err}
	}()
	waitFor(t, "the waiter", func() bool { return len(r.m.Snapshot().Waiters) == 1 })
	r.at(1 * s)
	res := <-got
	require.NoError(t, res.err)
	require.Equal(t, t0.Add(1*s), res.c.GrantedAt)
	require.Equal(t, 5, res.c.Holder.PID)
	r.release(res.c)
}

func TestAcquireInterruptedByContext(t *testing.T) {
	r := newRig(t, "concurrency=1")
	h := r.call2()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		_, err := r.m.Acquire(ctx, meter.Holder{}, false)
		got <- err
	}()
	waitFor(t, "the waiter", func() bool { return len(r.m.Snapshot().Waiters) == 1 })
	cancel() // a signal while waiting: EINTR
	require.ErrorIs(t, <-got, meter.ErrInterrupted)
	snap := r.m.Snapshot()
	require.Empty(t, snap.Waiters)
	require.Equal(t, uint64(1), snap.Grants, "nothing counted")
	r.release(h)
}

func TestConcurrentAcquireRelease(t *testing.T) {
	r := newRig(t, "concurrency=2")
	var inProgress, most atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				c, err := r.m.Acquire(context.Background(), meter.Holder{}, false)
				if err != nil {
					t.Error(err)
					return
				}
				n := inProgress.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				_ = r.m.Snapshot()
				inProgress.Add(-1)
				if err := r.m.Release(c.ID); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	require.LessOrEqual(t, most.Load(), int32(2), "calls in progress at once")
	snap := r.m.Snapshot()
	require.Equal(t, uint64(1600), snap.Grants)
	require.Empty(t, snap.Holders)
}

func TestOnGrant(t *testing.T) {
	clk := metertest.NewClock()
	var waits []time.Duration
	reg, err := meter.OpenLocal(metertest.NewMemStore(), meter.Options{Clock: clk, OnGrant: func(name string, waited time.Duration) {
		require.Equal(t, "m", name)
		waits = append(waits, waited)
	}})
	require.NoError(t, err)
	defer reg.Close()
	m, err := reg.Create("m", mustSpec(t, "1/1s"), meter.DefaultAttr())
	require.NoError(t, err)
	for range 2 {
		tk, err := m.Enqueue(meter.Holder{}, false)
		require.NoError(t, err)
		if !isDone(tk) {
			clk.Advance(1 * s)
		}
		c, err := tk.Result()
		require.NoError(t, err)
		require.NoError(t, m.Release(c.ID))
	}
	require.Equal(t, []time.Duration{0, 1 * s}, waits)
	require.Equal(t, 1*s, m.Snapshot().Stats.WaitTotal)
}
