package redis

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// Regression: a store restarted empty (Redis without persistence) made the
// hosts drop their meters (reconciling the new subscription found none
// listed, and the registries removed them and forgot their definitions
// before the epoch check put anything back), never asked again for the
// waiters queued before the loss, turned an O_NONBLOCK open under way into
// a waiter when asking again, and let the host that put its calls back
// first grant before the other one had put back its own.
func TestStoreLostDataPutBack(t *testing.T) {
	srv := redistest.Start(t)
	opt := Options{Lease: time.Second}
	a := openReg(t, srv.URL(), "a", opt)
	b := openReg(t, srv.URL(), "b", opt)
	for name, text := range map[string]string{"win": "2/1m", "conc": "concurrency=1"} {
		spec, err := meter.ParseSpec(text)
		require.NoError(t, err)
		_, err = a.Create(name, spec, meter.DefaultAttr())
		require.NoError(t, err)
		require.Eventually(t, func() bool { return b.Get(name) != nil }, 2*time.Second, 5*time.Millisecond, "b sees %s", name)
	}
	ctx := context.Background()
	for i, reg := range []*meter.Registry{a, b} {
		c, err := reg.Get("win").Acquire(ctx, meter.Holder{PID: 10 + i}, true)
		require.NoError(t, err, "call %d of win", i+1)
		require.NoError(t, reg.Get("win").Release(c.ID))
	}
	held, err := a.Get("conc").Acquire(ctx, meter.Holder{PID: 20}, true)
	require.NoError(t, err)
	got := make(chan error, 1)
	go func() {
		c, err := b.Get("conc").Acquire(ctx, meter.Holder{PID: 21}, false)
		if err == nil {
			err = b.Get("conc").Release(c.ID)
		}
		got <- err
	}()
	require.Eventually(t, func() bool { return b.Get("conc").Status().WaitersN == 1 }, 2*time.Second, 5*time.Millisecond)

	srv.Restart()
	restarted := time.Now()
	for time.Since(restarted) < opt.Lease+500*time.Millisecond {
		for i, reg := range []*meter.Registry{a, b} {
			for _, name := range []string{"win", "conc"} {
				m := reg.Get(name)
				require.NotNil(t, m, "host %d dropped meter %s at %v after the restart", i, name, time.Since(restarted))
				_, err := m.Acquire(ctx, meter.Holder{PID: 30}, true)
				require.ErrorIs(t, err, meter.ErrWouldBlock, "O_NONBLOCK on %s, host %d, %v after the restart", name, i, time.Since(restarted))
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	require.Equal(t, 1, b.Get("conc").Status().HoldersN, "a's call in progress before the loss")
	select {
	case err := <-got:
		t.Fatalf("b's waiter was answered while a held conc: %v", err)
	default:
	}
	require.NoError(t, a.Get("conc").Release(held.ID))
	select {
	case err := <-got:
		require.NoError(t, err, "b's waiter queued before the loss")
	case <-time.After(5 * time.Second):
		t.Fatalf("b's waiter queued before the loss was not granted after a's release: %s", b.Get("conc").Status().Text())
	}
}
