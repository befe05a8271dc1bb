package redis

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// On a Redis Cluster every function is given one key, and the library
// touches the meter's other keys (its hash tag's slot): meters on every
// node serve grants, queues, lists, limits writes (a rebuild) and removal.
func TestClusterMeters(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	a := bareStore(t, cl.URL(), "a", Options{Lease: 10 * time.Second})
	b := bareStore(t, cl.Nodes[2].URL(), "b", Options{Lease: 10 * time.Second})
	ctx := context.Background()
	for _, name := range []string{"alpha", "beta", "gamma", "delta", "epsilon"} {
		require.NoError(t, a.CreateMeter(ctx, name, mustSpecT(t, "5/1h,concurrency=1,max_hold=1h"), meter.DefaultAttr()), name)
		adm, err := a.Enqueue(ctx, name, meter.Request{Ticket: 1, Cost: 1})
		require.NoError(t, err, name)
		require.True(t, adm.Granted, name)
		q, err := b.Enqueue(ctx, name, meter.Request{Ticket: 1, Cost: 1})
		require.NoError(t, err, name)
		require.False(t, q.Granted, "%s: b waits for a's call", name)
		v, err := b.View(ctx, name, meter.ViewQuery{Lists: true})
		require.NoError(t, err, name)
		require.Len(t, v.Holders, 1, name)
		require.Len(t, v.Waiters, 1, name)
		require.NoError(t, a.SetSpec(ctx, name, mustSpecT(t, "5/2h,concurrency=1")), name)
		require.NoError(t, a.Release(ctx, name, adm.Call.ID), name)
		v, err = a.View(ctx, name, meter.ViewQuery{Lists: true})
		require.NoError(t, err, name)
		require.Len(t, v.Holders, 1, "%s: b's waiter granted at a's release", name)
		require.Equal(t, "b", v.Holders[0].Holder.Host, name)
		require.NoError(t, b.Release(ctx, name, v.Holders[0].ID), name)
		require.NoError(t, a.DeleteMeter(ctx, name), name)
	}
}
