package redistest

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var fastSentinels = SentinelTiming{DownAfter: time.Second, FailoverTimeout: 3 * time.Second}

// The helper works as the failover tests need: a write on the master
// reaches the replica, a planned failover makes the replica the master
// (and the old master its replica), and after the master is killed the
// sentinels promote the replica.
func TestReplicatedFailover(t *testing.T) {
	t0 := time.Now()
	r := StartReplicated(t, "rl", 3, 2, fastSentinels)
	t.Logf("started in %v", time.Since(t0))
	require.Equal(t, r.Master.Addr(), r.MasterAddr())
	require.Equal(t, "master", Role(r.Master.Addr()))
	require.Equal(t, "slave", Role(r.Replica.Addr()))
	require.Contains(t, r.URL(), "?master_set=rl&addr=")
	require.Equal(t, "+OK", Command(r.Master.Addr(), "SET", "k", "v"))
	WaitSynced(t, r.Master, r.Replica, 10*time.Second)
	require.Equal(t, "v", Command(r.Replica.Addr(), "GET", "k"))

	start := time.Now()
	r.Failover(t)
	took := r.WaitMaster(t, r.Replica.Addr(), 60*time.Second)
	t.Logf("planned failover: %v", took)
	for Role(r.Master.Addr()) != "slave" {
		require.Less(t, time.Since(start), 60*time.Second, "the old master did not become a replica")
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("old master a replica after %v", time.Since(start))
	WaitSynced(t, r.Replica, r.Master, 30*time.Second)
	t.Logf("in sync after %v", time.Since(start))

	killed := time.Now()
	r.Replica.Kill() // the master now
	took = r.WaitMaster(t, r.Master.Addr(), 60*time.Second)
	t.Logf("failover after kill -9: %v (%v from the kill)", took, time.Since(killed))
	require.Equal(t, "v", Command(r.Master.Addr(), "GET", "k"))
	_ = syscall.SIGSTOP
}
