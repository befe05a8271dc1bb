package redis

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// openReg opens a registry on a new Store for host on srv.
func openReg(t *testing.T, url, host string, opt Options) *meter.Registry {
	t.Helper()
	opt.URL, opt.Host = url, host
	s, err := Open(opt)
	require.NoError(t, err, "Open(%s)", host)
	reg, err := engineOpen(s, meter.Options{Clock: opt.clock})
	require.NoError(t, err, "meter.Open(%s)", host)
	t.Cleanup(func() { reg.Close(); s.Close() })
	return reg
}

func TestBasicHandoffAcrossHosts(t *testing.T) {
	srv := redistest.Start(t)
	a := openReg(t, srv.URL(), "a", Options{})
	b := openReg(t, srv.URL(), "b", Options{})
	m, err := a.Create("m", meter.DefaultSpec(), meter.DefaultAttr())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b.Get("m") != nil }, 2*time.Second, 5*time.Millisecond, "b sees meter m")
	c1, err := m.Acquire(context.Background(), meter.Holder{PID: 1}, true)
	require.NoError(t, err)
	got := make(chan meter.Call, 1)
	go func() {
		c, err := b.Get("m").Acquire(context.Background(), meter.Holder{PID: 2}, false)
		if err == nil {
			got <- c
		}
	}()
	require.Eventually(t, func() bool { return b.Get("m").Status().WaitersN == 1 }, 2*time.Second, 5*time.Millisecond)
	start := time.Now()
	require.NoError(t, m.Release(c1.ID))
	select {
	case c := <-got:
		t.Logf("handoff in %v, call %d", time.Since(start), c.ID)
		require.Equal(t, c1.ID+1, c.ID)
	case <-time.After(3 * time.Second):
		t.Fatalf("b's waiter was not granted after a's release; status %s", b.Get("m").Status().Text())
	}
}
