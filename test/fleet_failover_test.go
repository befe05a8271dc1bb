package test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// The fleet's failover must-show (issue 16): the store is a Redis master
// with one replica, watched by three Sentinels (quorum 2), and two hosts
// mount it through the sentinels (--store 'redis://S1?master_set=rl&addr=S2
// &addr=S3'). The meter q (concurrency=1,7/1m) is held on h1 and four
// waiters are queued behind it, alternately on h2 and h1. Then the replica
// takes over, and the holder releases. What users rely on, asserted by
// each case (helpers in fleet_failover_helpers_test.go):
//
//   - no open fails: every waiter's process exits 0 (an open that failed,
//     with EIO or anything else, makes the client exit 1 with the error);
//     max_wait is not set, so a waiter may wait longer, never fail;
//   - each waiter is granted exactly once (one logged call each; call ids
//     all different, the holder's too, where the store lost nothing);
//   - never two calls in progress at once, and never more than 7 a minute,
//     from the clients' own logs of grant and release times (checkCalls),
//     the holder's call included;
//   - the hosts follow the sentinels: both are connected to the new master
//     (CLIENT LIST there names rlfs:h1 and rlfs:h2), none to the old one,
//     and both show, through it, the holder in progress and the four
//     waiters before the release;
//   - afterwards status on both hosts says store: ok and shows the same
//     meter, a new open on each host is granted, and the store counted
//     every call: the minute's 7 are used, an eighth open gets EAGAIN.
//
// The figures (how long the sentinels took, when the hosts followed, the
// first handoff after the release) are logged as FIGURE lines.

// TestFleetSentinelFailoverPlanned: SENTINEL FAILOVER (an operator's
// planned failover) while h1 holds q and four waiters wait. The replica
// was in sync: nothing is lost, so the waiters keep their places across
// hosts (strict FIFO).
func TestFleetSentinelFailoverPlanned(t *testing.T) {
	t.Parallel()
	s := newFailoverScene(t)
	s.holdAndQueue(t)
	redistest.WaitSynced(t, s.set.Master, s.set.Replica, pollTimeout)
	fault := time.Now()
	s.set.Failover(t)
	promoted := s.set.WaitMaster(t, s.set.Replica.Addr(), failoverBound)
	followed := s.waitFollowed(t, s.set.Replica.Addr(), s.set.Master.Addr())
	settled := s.waitSettled(t)
	s.released = s.holder.release(t)
	calls := s.checkWaiters(t, nothingLost)
	s.requireSameMeter(t)
	t.Logf("FIGURE fleet sentinel failover (planned): the replica was master %s after SENTINEL FAILOVER; both hosts on it after %s, "+
		"showing the holder and 4 waiters after %s; first waiter granted %s after the holder's release\ncalls:\n%s",
		fmtMS(promoted), fmtMS(followed.Sub(fault)), fmtMS(settled.Sub(fault)), fmtMS(handoff(calls, s.released)), formatCalls(calls))
}

// TestFleetSentinelFailoverInFlight: SENTINEL FAILOVER, and h1's holder
// releases the moment the replica says it is the master, before the
// sentinels have told the clients (about 0.7 s later, measured): the
// handoffs to the four waiters run while the hosts switch masters. The old
// master stays a writable master until the sentinels reconfigure it as a
// replica (about 10 s later, measured), and whatever the hosts write there
// meanwhile (the release, the waiters' grants and releases) the new master
// never gets: that loss is Sentinel's (asynchronous replication, no
// fencing of the old master) and rlfs must make up for it from the hosts'
// journals, as after a lagging replica. Asserted as in every case: each
// waiter granted once, one at a time, in arrival order, and afterwards the
// same meter on both hosts with every call counted.
func TestFleetSentinelFailoverInFlight(t *testing.T) {
	t.Parallel()
	s := newFailoverScene(t)
	s.holdAndQueue(t)
	redistest.WaitSynced(t, s.set.Master, s.set.Replica, pollTimeout)
	fault := time.Now()
	s.set.Failover(t)
	waitFor(t, "the replica says it is the master", func() bool { return redistest.Role(s.set.Replica.Addr()) == "master" }, nil)
	promotedAt := time.Since(fault)
	told := s.set.MasterAddr() == s.set.Replica.Addr()
	s.released = s.holder.release(t)
	announced := s.set.WaitMaster(t, s.set.Replica.Addr(), failoverBound)
	followed := s.waitFollowed(t, s.set.Replica.Addr(), s.set.Master.Addr())
	calls := s.checkWaiters(t, writesLost)
	s.requireSameMeter(t)
	t.Logf("FIGURE fleet sentinel failover (planned, calls in flight): the replica said it was master %s after SENTINEL FAILOVER "+
		"(the sentinels named it by then: %v); the holder released %s after SENTINEL FAILOVER; the sentinels named the new master after %s; "+
		"both hosts on it after %s\ncalls:\n%s", fmtMS(promotedAt), told, fmtMS(s.released.Sub(fault)), fmtMS(announced),
		fmtMS(followed.Sub(fault)), formatCalls(calls))
}

// TestFleetSentinelMasterKilled: the master hangs (SIGSTOP: the hosts'
// calls time out rather than being refused) while h1 holds q and four
// waiters wait; the sentinels find it down and promote the replica; then
// the old master is killed (SIGKILL), never to return. The replica was in
// sync before the fault, so nothing is lost: strict FIFO across hosts.
func TestFleetSentinelMasterKilled(t *testing.T) {
	t.Parallel()
	s := newFailoverScene(t)
	s.holdAndQueue(t)
	redistest.WaitSynced(t, s.set.Master, s.set.Replica, pollTimeout)
	pid := redisPID(t, s.set.Master)
	fault := time.Now()
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	promoted := s.set.WaitMaster(t, s.set.Replica.Addr(), failoverBound)
	s.set.Master.Kill()
	followed := s.waitFollowed(t, s.set.Replica.Addr(), s.set.Master.Addr())
	settled := s.waitSettled(t)
	s.released = s.holder.release(t)
	calls := s.checkWaiters(t, nothingLost)
	s.requireSameMeter(t)
	t.Logf("FIGURE fleet sentinel failover (master stopped, then killed): the replica was master %s after SIGSTOP; "+
		"both hosts on it after %s, showing the holder and 4 waiters after %s; first waiter granted %s after the holder's release\ncalls:\n%s",
		fmtMS(promoted), fmtMS(followed.Sub(fault)), fmtMS(settled.Sub(fault)), fmtMS(handoff(calls, s.released)), formatCalls(calls))
}

// junkBytes is the size of the value written to the master while the
// replica is stopped: more than the kernel's socket buffers between them
// hold (up to 4 MiB sent, 32 MiB received, on this machine), so that what
// the master writes after it stays in the master's memory and dies with
// it. It is less than the 64 MiB after which a master drops a replica
// that does not read (client-output-buffer-limit replica).
const junkBytes = 48 << 20

// TestFleetSentinelLaggingReplica: the replica lags (stopped with SIGSTOP,
// behind a write larger than the socket buffers) while h1's holder is
// granted and the four waiters queue; then the master is killed (SIGKILL)
// and the replica resumed (SIGCONT): the sentinels promote it, and it has
// lost every write since it stopped: the holder's grant, the waiters'
// places. The test proves the loss (the promoted replica's replication
// offset is short of the master's before the holder asked).
//
// What counts is then only in the hosts' journals, and rlfs must put it
// back (docs/fleet.md, "Sentinel and replicas"; design §9, "failover to a
// lagging replica"). Asserted:
//   - h1's holder is in progress again in the store: both hosts show
//     in_progress 1 of 1 and nobody is granted while it holds (h1 journaled
//     the call when it was granted; a put-back re-asserts calls in progress);
//   - the four waiters are queued again (each host presents its waiters
//     again when the store is back) and each is granted exactly once, after
//     the holder's release, one at a time;
//   - each host's waiters in their own arrival order: the store lost the
//     queue, and each host presents its own again in order, so the order
//     across hosts is not asserted;
//   - no open fails, and afterwards both hosts show the same meter, grant
//     a new open, and count every call of the minute (the holder is put
//     back, the waiters are granted again by the new master).
func TestFleetSentinelLaggingReplica(t *testing.T) {
	t.Parallel()
	s := newFailoverScene(t)
	replicaPID := redisPID(t, s.set.Replica)
	require.NoError(t, syscall.Kill(replicaPID, syscall.SIGSTOP))
	t.Cleanup(func() { _ = syscall.Kill(replicaPID, syscall.SIGCONT) })
	junk := strings.Repeat("x", junkBytes/8)
	for i := range 8 {
		require.Equal(t, "+OK", storeCommand(t, s.set.Master, "SET", fmt.Sprintf("failover:junk%d", i), junk))
	}
	before, _, ok := redistest.Replication(s.set.Master.Addr())
	require.True(t, ok, "INFO replication of the master")
	s.holdAndQueue(t)

	fault := time.Now()
	s.set.Master.Kill()
	require.NoError(t, syscall.Kill(replicaPID, syscall.SIGCONT))
	var applied int64
	waitFor(t, "the replica sees its master gone", func() bool {
		var link string
		applied, link, ok = redistest.Replication(s.set.Replica.Addr())
		return ok && link == "down"
	}, nil)
	require.Less(t, applied, before, "the replica applied the master's stream up to %d, past %d (before the holder asked): "+
		"it lost nothing, so this test proves nothing; make junkBytes larger", applied, before)
	promoted := s.set.WaitMaster(t, s.set.Replica.Addr(), failoverBound)
	followed := s.waitFollowed(t, s.set.Replica.Addr(), s.set.Master.Addr())
	settled := s.waitSettled(t) // DOUBLE GRANT here: the holder's call was not put back
	s.released = s.holder.release(t)
	calls := s.checkWaiters(t, queueLost)
	s.requireSameMeter(t)
	t.Logf("FIGURE fleet sentinel failover (lagging replica, master killed): the replica, %d bytes short, was master %s after the kill; "+
		"both hosts on it after %s, showing the holder and 4 waiters again after %s; first waiter granted %s after the holder's release\ncalls:\n%s",
		before-applied, fmtMS(promoted), fmtMS(followed.Sub(fault)), fmtMS(settled.Sub(fault)), fmtMS(handoff(calls, s.released)), formatCalls(calls))
}
