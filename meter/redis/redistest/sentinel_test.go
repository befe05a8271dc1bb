package redistest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// StartReplicated works as the failover tests need: a write on the master
// reaches the replica, a planned failover makes the replica the master
// (and, once the sentinels reconfigure it, the old master its replica),
// and after the master is killed the sentinels promote the replica, which
// kept the write.
func TestReplicatedFailover(t *testing.T) {
	t.Parallel()
	r := StartReplicated(t, "rl", 3, 2, SentinelTiming{DownAfter: time.Second, FailoverTimeout: 3 * time.Second})
	require.Equal(t, r.Master.Addr(), r.MasterAddr())
	require.Equal(t, "master", Role(r.Master.Addr()))
	require.Equal(t, "slave", Role(r.Replica.Addr()))
	require.Equal(t, "redis://"+r.Sentinels[0].Addr()+"?master_set=rl&addr="+r.Sentinels[1].Addr()+"&addr="+r.Sentinels[2].Addr(), r.URL())
	require.Equal(t, "+OK", Command(r.Master.Addr(), "SET", "k", "v"))
	WaitSynced(t, r.Master, r.Replica, 10*time.Second)
	require.Equal(t, "v", Command(r.Replica.Addr(), "GET", "k"))

	start := time.Now()
	r.Failover(t)
	t.Logf("planned failover: the replica was master after %v", r.WaitMaster(t, r.Replica.Addr(), 60*time.Second))
	for Role(r.Master.Addr()) != "slave" {
		require.Less(t, time.Since(start), 60*time.Second, "the old master did not become a replica")
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the old master was a replica after %v", time.Since(start))
	WaitSynced(t, r.Replica, r.Master, 30*time.Second)

	r.Replica.Kill() // the master now
	t.Logf("kill -9 of the master: the old master was master again after %v", r.WaitMaster(t, r.Master.Addr(), 60*time.Second))
	require.Equal(t, "v", Command(r.Master.Addr(), "GET", "k"))
}
