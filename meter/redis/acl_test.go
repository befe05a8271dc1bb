package redis

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// aclRule is the ACL user docs/fleet.md tells operators to make for rlfs:
// only the commands it sends, only its keys and channels.
const aclRule = "on >s3cret ~{rlfs* &rlfs:* -@all +fcall +fcall_ro +function|load " +
	"+hget +hgetall +hset +hdel +hmget +hkeys +hscan +hincrby +zadd +zrem +zrange +zcard +zrank +zcount " +
	"+zremrangebyrank +zremrangebyscore +exists +del +unlink +rename +type +time " +
	"+smembers +sadd +srem +get +set +append +getrange +setrange +publish +subscribe +ping +hello +client|setname +cluster|slots +cluster|shards +info"

// The ACL user of docs/fleet.md is enough for everything rlfs does, and
// the password can come from RLFS_STORE_PASSWORD (Options.Password).
func TestACLUserIsEnough(t *testing.T) {
	srv := redistest.Start(t)
	args := append([]string{"ACL", "SETUSER", "rlfs"}, strings.Fields(aclRule)...)
	require.Equal(t, "+OK", redistest.Command(srv.Addr(), args...))
	s, err := Open(Options{URL: "redis://rlfs@" + srv.Addr(), Password: "s3cret", Host: "a"})
	require.NoError(t, err, "Open as the ACL user")
	reg, err := engineOpen(s, meter.Options{})
	require.NoError(t, err)
	defer s.Close()
	defer reg.Close()
	m, err := reg.Create("m", mustSpecT(t, "1/1h,concurrency=1"), meter.DefaultAttr())
	require.NoError(t, err)
	c, err := m.Acquire(context.Background(), meter.Holder{PID: 1}, true)
	require.NoError(t, err)
	require.Equal(t, 1, m.Status().HoldersN, "status through the view function")
	require.NoError(t, m.Release(c.ID))
	require.NoError(t, m.WriteData("f", []byte("x")))
	got, _, err := m.ReadData("f")
	require.NoError(t, err)
	require.Equal(t, "x", string(got))
	list, err := m.ListData()
	require.NoError(t, err)
	require.Len(t, list, 1)
	// A meter without windows retires each release into its history
	// (APPEND; a late one among the newest groups: GETRANGE, SETRANGE;
	// past MAXPAST groups a compaction: GET, SET).
	free, err := reg.Create("free", mustSpecT(t, "concurrency=4"), meter.DefaultAttr())
	require.NoError(t, err)
	for range 300 {
		var cs []meter.Call
		for range 3 {
			c, err := free.Acquire(context.Background(), meter.Holder{PID: 1}, true)
			require.NoError(t, err)
			cs = append(cs, c)
		}
		for _, i := range []int{2, 0, 1} {
			require.NoError(t, free.Release(cs[i].ID))
		}
	}
	// a waiter queues (the first of an empty queue is told to the meter's
	// other hosts: HKEYS, PUBLISH) and a release grants it (PUBLISH)
	one, err := reg.Create("one", mustSpecT(t, "concurrency=1"), meter.DefaultAttr())
	require.NoError(t, err)
	held, err := one.Acquire(context.Background(), meter.Holder{PID: 1}, true)
	require.NoError(t, err)
	waited := make(chan error, 1)
	go func() {
		w, err := one.Acquire(context.Background(), meter.Holder{PID: 2}, false)
		if err == nil {
			err = one.Release(w.ID)
		}
		waited <- err
	}()
	require.Eventually(t, func() bool { return one.Status().WaitersN == 1 }, 10*time.Second, time.Millisecond, "the waiter queues")
	require.NoError(t, one.Release(held.ID))
	select {
	case err := <-waited:
		require.NoError(t, err, "the waiter is granted and releases")
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter was not granted")
	}
	require.NoError(t, m.SetSpec(mustSpecT(t, "2/1h")))
	require.NoError(t, reg.Remove("m"))
	require.Zero(t, s.Health().Failures, "no call was refused")
}
