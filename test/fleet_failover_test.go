package test

import (
	"fmt"
	"os/exec"
	"strconv"
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
// &addr=S3'). A concurrency=1 meter is held on h1 and four waiters are
// queued behind it, alternately on h2 and h1. Then the replica takes over,
// and the holder releases. What users rely on, asserted by each case:
//
//   - no open fails: every waiter's process exits 0 (an open that failed,
//     with EIO or anything else, makes the client exit 1 with the error);
//   - each waiter is granted exactly once (one logged call each, call ids
//     all different, the holder's too);
//   - never two calls in progress at once, from the clients' own logs of
//     grant and release times (checkCalls) with the holder's call included;
//   - the hosts follow the sentinels: both are connected to the new master
//     (CLIENT LIST there names rlfs:h1 and rlfs:h2) and both show, through
//     it, the holder in progress and the four waiters before the release;
//   - afterwards status on both hosts says store: ok and shows the same
//     meter, and a new open on each host is granted.
//
// The figures (how long the sentinels took, when the hosts followed, the
// first handoff after the release) are logged as FIGURE lines.

// failoverLease is the hosts' lease: short enough that a meter put back
// after a loss is quiet for a few seconds only, long enough that a busy
// machine does not lapse a host between its renewals (every lease/3).
const failoverLease = 6 * time.Second

// failoverTiming makes the sentinels act within seconds: a master that does
// not answer for 1 s is down; a failover that did not finish in 3 s is
// tried again (after twice that).
var failoverTiming = redistest.SentinelTiming{DownAfter: time.Second, FailoverTimeout: 3 * time.Second}

// failoverBound is how long the sentinels may take to promote the replica,
// on a loaded machine: measured 0.3-2 s on an idle one; a failed election
// is retried after 2×failover-timeout, and a sentinel whose timer was
// delayed by 2 s stops acting for 30 s (TILT).
const failoverBound = 90 * time.Second

// failoverScene is a fleet of two hosts on a master set, with the meter
// q=concurrency=1: its holder on h1, its waiters, their logs.
type failoverScene struct {
	set      *redistest.Replicated
	h1, h2   *daemon
	holder   *proc
	held     time.Time // the holder's grant, as the daemon printed it
	logs     string
	arrival  []string // the waiters' ids, in the order they were queued
	hosts    []string // each waiter's host, in the same order
	waiters  []*proc
	released time.Time
}

// newFailoverScene starts the master set and the two hosts; the meter
// exists and the replica has it.
func newFailoverScene(t *testing.T) *failoverScene {
	t.Helper()
	requireFUSE(t)
	s := &failoverScene{set: redistest.StartReplicated(t, "rl", 3, 2, failoverTiming), logs: t.TempDir()}
	flags := []string{"--lease", failoverLease.String()}
	s.h1 = startFleetDaemon(t, s.set.URL(), "h1", flags, "q=concurrency=1")
	s.h2 = startFleetDaemon(t, s.set.URL(), "h2", flags, "q=concurrency=1")
	redistest.WaitSynced(t, s.set.Master, s.set.Replica, pollTimeout)
	s.dumpOnFailure(t)
	return s
}

// holdAndQueue has h1's holder take q and four waiters queue behind it,
// alternately on h2 and h1, each one queued (the store says so) before the
// next asks.
func (s *failoverScene) holdAndQueue(t *testing.T) {
	t.Helper()
	s.holder = pyHold(t, s.h1.path("q", "acquire"))
	s.held = holdGrant(t, s.holder)
	for i := range 4 {
		d := []*daemon{s.h2, s.h1}[i%2]
		kind := []string{"go", "python"}[i/2]
		id := fmt.Sprintf("w%d-%s-%s", i+1, d.host(), kind)
		s.waiters = append(s.waiters, startClient(t, d.path("q", "acquire"), s.logs,
			client{kind: kind, id: id, calls: 1, hold: 50 * time.Millisecond}))
		if kind == "python" {
			id += "-t0"
		}
		s.arrival = append(s.arrival, id)
		s.hosts = append(s.hosts, d.host())
		s.h1.waitStatus(t, "q", "waiting", strconv.Itoa(i+1))
	}
}

// waitFollowed waits until both hosts are connected to the master at addr
// (their connections carry the client name rlfs:HOST) and returns when.
func (s *failoverScene) waitFollowed(t *testing.T, addr string) time.Time {
	t.Helper()
	var list string
	waitFor(t, "both hosts are connected to the new master "+addr, func() bool {
		list = redistest.Command(addr, "CLIENT", "LIST")
		return strings.Contains(list, " name=rlfs:h1 ") && strings.Contains(list, " name=rlfs:h2 ")
	}, func() string { return "CLIENT LIST:\n" + list })
	return time.Now()
}

// waitSettled waits until both hosts show, through the new master, the
// holder in progress and all four waiters queued, and returns when. A
// waiter that ends meanwhile was granted while the holder held (or its
// open failed): that fails the test at once, with what the hosts show.
func (s *failoverScene) waitSettled(t *testing.T) time.Time {
	t.Helper()
	var seen []string
	waitFor(t, "both hosts show 1 call in progress and 4 waiting", func() bool {
		for i, w := range s.waiters {
			if w.exited() {
				t.Fatalf("DOUBLE GRANT or failed open: waiter %s ended while h1's holder still held q (exit: %v)\n"+
					"stdout:\n%sstderr:\n%sh1 shows: %v\nh2 shows: %v\ncalls:\n%s", s.arrival[i], w.err, w.stdout.String(), w.stderr.String(),
					s.h1.status(t, "q"), s.h2.status(t, "q"), formatCalls(readCalls(t, s.logs)))
			}
		}
		seen = seen[:0]
		ok := true
		for _, d := range []*daemon{s.h1, s.h2} {
			st := d.status(t, "q")
			seen = append(seen, fmt.Sprintf("%s: store %q, in_progress %q, waiting %q", d.host(), st["store"], st["in_progress"], st["waiting"]))
			ok = ok && st["store"] == "ok" && st["in_progress"] == "1 of 1" && st["waiting"] == "4"
		}
		return ok
	}, func() string { return strings.Join(seen, "; ") })
	return time.Now()
}

// releaseAndCheck releases the holder, waits for every waiter and checks
// their calls: no failed open, each granted once, never two at once, and
// the waiters in arrival order (fifo), or else each host's in its own
// order. It returns the calls, the holder's first.
func (s *failoverScene) releaseAndCheck(t *testing.T, fifo bool) []call {
	t.Helper()
	s.released = s.holder.release(t)
	for i, w := range s.waiters {
		err := w.wait(t, pollTimeout)
		require.NoError(t, err, "waiter %s: its open or its call failed (EIO?)\nstdout:\n%sstderr:\n%s",
			s.arrival[i], w.stdout.String(), w.stderr.String())
	}
	calls := readCalls(t, s.logs)
	holder := call{client: "holder-h1", grant: s.held, release: s.released, closed: s.released,
		id: int64(callOf(t, s.holder.stdout.String()))}
	all := append([]call{holder}, calls...)
	require.Len(t, calls, len(s.waiters), "one call per waiter\ncalls:\n%s", formatCalls(all))
	ids := map[int64]string{}
	for _, c := range all {
		require.NotContains(t, ids, c.id, "call id %d given to %s and %s\ncalls:\n%s", c.id, ids[c.id], c.client, formatCalls(all))
		ids[c.id] = c.client
	}
	checkCalls(t, all, parseLimits(t, "concurrency=1"))
	if fifo {
		require.Empty(t, fifoViolation(calls, s.arrival), "arrival order %q\ncalls:\n%s", s.arrival, formatCalls(all))
	} else {
		for _, h := range []string{"h1", "h2"} {
			var mine []string
			for i, id := range s.arrival {
				if s.hosts[i] == h {
					mine = append(mine, id)
				}
			}
			require.Empty(t, fifoViolation(calls, mine), "%s's waiters in their arrival order %q\ncalls:\n%s", h, mine, formatCalls(all))
		}
	}
	return all
}

// requireSameMeter requires that status on both hosts says the store is
// reachable and shows the same meter, idle, and that a new open on each
// host is granted.
func (s *failoverScene) requireSameMeter(t *testing.T) {
	t.Helper()
	for _, d := range []*daemon{s.h1, s.h2} {
		d.waitStatus(t, "q", "in_progress", "0 of 1")
		d.waitStatus(t, "q", "waiting", "0")
	}
	st1, st2 := fleetStatus(s.h1.status(t, "q")), fleetStatus(s.h2.status(t, "q"))
	require.Equal(t, "ok", st1["store"], "status of q on h1: %v", st1)
	require.Equal(t, st1, st2, "status of q on h1 and on h2")
	for _, d := range []*daemon{s.h1, s.h2} {
		waitGrant(t, d.path("q", "acquire"))
	}
}

// fleetStatus is what a meter's status says of the fleet: its lines but
// host: and the *_since_start counters (this host's own), with history's
// count of calls but not its start (the store's instant, which each host
// shows on its own clock).
func fleetStatus(st map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range st {
		switch {
		case k == "host", strings.HasSuffix(k, "_since_start"):
		case k == "history":
			out[k], _, _ = strings.Cut(v, " since ")
		default:
			out[k] = v
		}
	}
	return out
}

// handoff is how long after the holder's release the first waiter was
// granted.
func handoff(calls []call, released time.Time) time.Duration {
	return calls[1].grant.Sub(released)
}

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
	followed := s.waitFollowed(t, s.set.Replica.Addr())
	settled := s.waitSettled(t)
	calls := s.releaseAndCheck(t, true)
	s.requireSameMeter(t)
	t.Logf("FIGURE fleet sentinel failover (planned): the replica was master %s after SENTINEL FAILOVER; both hosts on it after %s, "+
		"showing the holder and 4 waiters after %s; first waiter granted %s after the holder's release\ncalls:\n%s",
		fmtMS(promoted), fmtMS(followed.Sub(fault)), fmtMS(settled.Sub(fault)), fmtMS(handoff(calls, s.released)), formatCalls(calls))
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
	followed := s.waitFollowed(t, s.set.Replica.Addr())
	settled := s.waitSettled(t)
	calls := s.releaseAndCheck(t, true)
	s.requireSameMeter(t)
	t.Logf("FIGURE fleet sentinel failover (master stopped, then killed): the replica was master %s after SIGSTOP; "+
		"both hosts on it after %s, showing the holder and 4 waiters after %s; first waiter granted %s after the holder's release\ncalls:\n%s",
		fmtMS(promoted), fmtMS(followed.Sub(fault)), fmtMS(settled.Sub(fault)), fmtMS(handoff(calls, s.released)), formatCalls(calls))
}

// dumpOnFailure logs, if the test failed, what each server of the set
// holds of q and who is connected to it.
func (s *failoverScene) dumpOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, srv := range []*redistest.Server{s.set.Master, s.set.Replica} {
			var b strings.Builder
			for _, args := range [][]string{{"INFO", "replication"}, {"CLIENT", "LIST"}, {"HGETALL", "{rlfs:q}:c"},
				{"ZRANGE", "{rlfs:q}:q", "0", "-1", "WITHSCORES"}, {"HGETALL", "{rlfs:q}:w"}, {"HGETALL", "{rlfs:q}:h"}} {
				out, _ := exec.Command("redis-cli", append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(srv.Port)}, args...)...).CombinedOutput()
				fmt.Fprintf(&b, "> %s\n%s", strings.Join(args, " "), out)
			}
			t.Logf("server %s:\n%s", srv.Addr(), b.String())
		}
	})
}
