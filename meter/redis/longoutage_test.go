package redis

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// Regression: Redis restarted from its AOF after an outage longer than the
// lease lapsed every host's lease at the first call after the restart,
// counting the store's own downtime against the hosts: a call still in
// progress on a live host counted as completed (so another open would be
// granted beside it), and the waiters queued before the outage left the
// store's queue while their hosts kept waiting for them, forever.
func TestOutageLongerThanLeaseKeepsCallsAndWaiters(t *testing.T) {
	const lease = time.Second
	srv := redistest.Start(t, "--appendonly", "yes")
	a := openReg(t, srv.URL(), "a", Options{Lease: lease})
	b := openReg(t, srv.URL(), "b", Options{Lease: lease})
	ma, err := a.Create("m", meter.DefaultSpec(), meter.DefaultAttr())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b.Get("m") != nil }, 5*time.Second, 5*time.Millisecond, "b sees meter m")
	held, err := ma.Acquire(context.Background(), meter.Holder{PID: 1}, true)
	require.NoError(t, err)
	got := make(chan meter.Call, 1)
	go func() {
		if c, err := b.Get("m").Acquire(context.Background(), meter.Holder{PID: 2}, false); err == nil {
			got <- c
		}
	}()
	require.Eventually(t, func() bool { return ma.Status().WaitersN == 1 }, 5*time.Second, 5*time.Millisecond, "b's open is queued")

	srv.Kill()
	time.Sleep(3 * lease) // the outage: longer than any lease
	srv.Restart()
	for _, r := range []*meter.Registry{a, b} {
		var st meter.Snapshot
		require.Eventually(t, func() bool { st = r.Get("m").Status(); return st.StoreDown.IsZero() }, 10*time.Second, 5*time.Millisecond,
			"%s finds the store again", r.Host())
		require.Equal(t, 1, st.HoldersN, "on %s after the outage: a's call is still in progress\n%s", r.Host(), st.Text())
		require.Equal(t, 1, st.WaitersN, "on %s after the outage: b's open still waits\n%s", r.Host(), st.Text())
	}
	select {
	case c := <-got:
		t.Fatalf("b granted call %d while a's call %d is in progress", c.ID, held.ID)
	default:
	}
	require.NoError(t, ma.Release(held.ID))
	select {
	case c := <-got:
		require.Greater(t, c.ID, held.ID)
	case <-time.After(5 * time.Second):
		t.Fatalf("b's waiter was not granted after a's release; status on b:\n%s", b.Get("m").Status().Text())
	}
}

// The library reads the server's run id with INFO (see resume in
// rlfs.lua); an ACL user without INFO still gets grants and releases, only
// without that protection.
func TestWithoutInfoPermission(t *testing.T) {
	srv := redistest.Start(t)
	r := redistest.Command(srv.Addr(), "ACL", "SETUSER", "rl", "on", ">pw", "~*", "&*", "+@all", "-info")
	require.Equal(t, "+OK", r)
	url := "redis://rl:pw@" + srv.Addr()
	a := openReg(t, url, "a", Options{})
	m, err := a.Create("m", meter.DefaultSpec(), meter.DefaultAttr())
	require.NoError(t, err)
	for range 2 {
		c, err := m.Acquire(context.Background(), meter.Holder{PID: 1}, true)
		require.NoError(t, err)
		require.NoError(t, m.Release(c.ID))
	}
	require.Equal(t, 0, m.Status().HoldersN)
}
