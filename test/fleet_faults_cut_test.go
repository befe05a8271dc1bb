package test

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// heldLineRE is a whole "held GRANT-LINE" line of a pyHold process (it
// may be written in pieces: the suite's Python runs unbuffered).
var heldLineRE = regexp.MustCompile(`held granted \S+ .*\n`)

// holdGrant waits for a pyHold process to be granted and returns the grant
// time the daemon printed.
func holdGrant(t *testing.T, p *proc) time.Time {
	t.Helper()
	waitWithin(t, startTimeout, p.name+" prints its grant line", func() bool {
		return heldLineRE.MatchString(p.stdout.String()) || p.exited()
	}, nil)
	line := heldLineRE.FindString(p.stdout.String())
	require.NotEmpty(t, line, "%s %s\nstdout:\n%sstderr:\n%s", p.name, p.state(), p.stdout.String(), p.stderr.String())
	return daemonGrantTime(t, line)
}

// cutScene is TestFleetFaultHostCutOff's fleet: host h1 ("cut") runs in a
// network namespace of its own and reaches Redis through a veth link the
// test cuts; h2 ("other") reaches it over loopback.
type cutScene struct {
	link       *netLink
	srv        *redistest.Server
	cut, other *daemon
	lease      time.Duration
}

func newCutScene(t *testing.T, lease time.Duration, meters ...string) *cutScene {
	t.Helper()
	requireFUSE(t)
	s := &cutScene{link: newNetLink(t), lease: lease}
	s.srv = startRedis(t, "--bind", "127.0.0.1", s.link.rootAddr)
	flags := []string{"--lease", lease.String()}
	url := "redis://" + net.JoinHostPort(s.link.rootAddr, strconv.Itoa(s.srv.Port))
	dir := t.TempDir()
	s.cut = &daemon{mnt: filepath.Join(dir, "mnt-h1"), meters: meters, wrap: s.link.wrap(),
		extra: append([]string{"--store", url, "--host", "h1", "--journal", filepath.Join(dir, "h1.journal")}, flags...)}
	t.Cleanup(func() { s.cut.cleanup(t) })
	s.cut.start(t)
	s.other = startFleetDaemon(t, s.srv.URL(), "h2", flags, meters...)
	return s
}

// storeDown reports whether the host's status of meterName says the store
// is unreachable.
func storeDown(t *testing.T, d *daemon, meterName string) bool {
	t.Helper()
	return strings.HasPrefix(d.status(t, meterName)["store"], "unreachable since ")
}

// TestFleetFaultHostCutOff: host h1 is cut off from Redis (its veth link
// taken down) for longer than its lease (3 s), while clients keep calling
// on both hosts, then the link comes back.
//
//   - h1 stops granting: nothing is granted on it from the cut until the
//     link is back (O_NONBLOCK gets EAGAIN, even on an unlimited meter;
//     blocking opens wait; status says since when the store is
//     unreachable), while h2 goes on granting.
//   - h2's waiter behind h1's holder on c=concurrency=1 is granted once
//     h1's lease lapsed in the store, not before, and within seconds.
//   - When the link is back, h1 rejoins: its waiter queued before the cut
//     (dropped at the lapse) queues again and is granted, its blocked
//     opens go, its clients are served again, and the releases it made
//     while cut are delivered.
//   - The checker finds 0 window or concurrency violations on the load
//     meter across both hosts, and on c once h1's holder is counted as
//     the store counts it (completed at the lapse).
//
// What a partition longer than the lease breaks is measured, not asserted
// away: h1's holder ran on after the lapse, while h2's call was granted
// (concurrency=1 saw two calls in progress).
func TestFleetFaultHostCutOff(t *testing.T) {
	t.Parallel()
	const lease = 3 * time.Second
	s := newCutScene(t, lease, "c=concurrency=1", "load=3/1s,concurrency=2", "idle=concurrency=0")
	load := newLoadGroup(t)
	load.add(t, s.cut.path("load", "acquire"), "h1", 2, "0.100")
	load.add(t, s.other.path("load", "acquire"), "h2", 2, "0.100")
	begin := time.Now()
	load.waitCalls(t, "h1-", 3, begin)
	load.waitCalls(t, "h2-", 3, begin)

	holdA := pyHold(t, s.cut.path("c", "acquire")) // h1's holder across the cut
	grantA := holdGrant(t, holdA)
	holdB := pyHold(t, s.other.path("c", "acquire")) // h2's waiter behind it
	s.other.waitEntries(t, "c", "waiters", 1)
	holdC := pyHold(t, s.cut.path("c", "acquire")) // h1's waiter behind that
	s.other.waitEntries(t, "c", "waiters", 2)

	cutAt := time.Now()
	s.link.down(t)
	// h1 can renew no more: its lease's expiry is final. Read it now, as
	// the store drops the entry once it lapsed (measuring the cut can take
	// longer than the lease on a loaded machine).
	expiry := leaseExpiry(t, s.srv, "c", "h1")
	m := s.measureCut(t, cutAt)

	grantB := holdGrant(t, holdB)
	require.False(t, grantB.Before(expiry.Add(-tolerance(0))),
		"h2's waiter was granted %s before h1's lease on c lapsed in the store", fmtMS(expiry.Sub(grantB)))
	require.Less(t, grantB.Sub(expiry), loaded(0), "h2's waiter was granted long after h1's lease lapsed")
	// h1's holder goes on for a while after the lapse (a scenario duration:
	// the call a cut-off host cannot know is counted completed), then
	// releases while cut off: the completion waits in h1's outbox.
	time.Sleep(300 * time.Millisecond)
	releaseA := holdA.release(t)
	releaseB := holdB.release(t)
	require.False(t, holdC.exited() || strings.Contains(holdC.stdout.String(), "held"), "h1's waiter was answered while cut off")
	probe := pyOpen(t, s.cut.path("idle", "acquire"), 1, false)
	require.True(t, storeDown(t, s.cut, "idle"), "h1's status while cut off")

	upAt := time.Now()
	s.link.up(t)
	waitFor(t, "h1's status says the store is reachable", func() bool { return !storeDown(t, s.cut, "c") }, nil)
	rejoined := time.Since(upAt)
	grantC := holdGrant(t, holdC)
	require.True(t, grantC.After(upAt), "h1's waiter was granted while cut off")
	releaseC := holdC.release(t)
	probe.requireSuccess(t, pollTimeout)
	require.Regexp(t, `^ok \S+ granted `, probe.stdout.String(), "h1's blocking open made while cut off")
	load.waitCalls(t, "h1-", 2, upAt)
	load.stop(t)

	stopped := s.checkLoad(t, load, cutAt, upAt, expiry)
	s.other.waitStatus(t, "c", "in_progress", "0 of 1") // h1's release after it rejoined reached the store
	c := []call{
		{client: "A@h1", grant: grantA, release: releaseA}, {client: "B@h2", grant: grantB, release: releaseB},
		{client: "C@h1", grant: grantC, release: releaseC},
	}
	counted := append([]call(nil), c...)
	counted[0].release = expiry // the store counted h1's call completed at the lapse
	checkCalls(t, counted, parseLimits(t, "concurrency=1"))
	require.Empty(t, fifoViolation(c, []string{"A@h1", "B@h2", "C@h1"}), "c's queue across the hosts and the cut")
	require.NotEmpty(t, concurrencyViolation(c, 1), "h1's holder released after h2's grant: the partition's known effect")
	t.Logf("FIGURE fleet-cut: lease 3s; h1's O_NONBLOCK open got EAGAIN %s after the cut; h1's status said unreachable %s after it; "+
		"h1's lease on c lapsed %s after the cut; h2's waiter granted %s after the lapse; h1 reachable again %s after the link came back, "+
		"its waiter queued before the cut granted %s after it; h1's last load grant while cut off: %s",
		fmtMS(m.eagain), fmtMS(m.down), fmtMS(expiry.Sub(cutAt)), fmtMS(grantB.Sub(expiry)), fmtMS(rejoined),
		fmtMS(grantC.Sub(upAt)), stopped)
	if m := regexp.MustCompile(`completions_delivered=\d+`).FindString(s.cut.log.String()); m != "" {
		t.Logf("h1's outbox when the store was back: %s (a release made while cut off is delivered from it, or directly when the link came back within its call timeout)", m)
	}
	t.Logf("FIGURE fleet-cut-limitation: partition longer than the lease: h1's call on c=concurrency=1 ran %s past its lease's lapse "+
		"(counted completed at the lapse); h2's call was granted %s before it ended: 2 calls in progress for %s",
		fmtMS(releaseA.Sub(expiry)), fmtMS(releaseA.Sub(grantB)), fmtMS(releaseA.Sub(grantB)))
}

// cutFigures is what the cut host did right after the cut.
type cutFigures struct {
	eagain, down time.Duration // until O_NONBLOCK got EAGAIN; until status said unreachable
}

// measureCut checks, right after the cut, that the cut host refuses an
// O_NONBLOCK open of an unlimited meter and says the store is unreachable,
// and that the other host still grants.
func (s *cutScene) measureCut(t *testing.T, cutAt time.Time) cutFigures {
	t.Helper()
	var m cutFigures
	require.ErrorIs(t, openNonblock(s.cut.path("idle", "acquire")), syscall.EAGAIN, "O_NONBLOCK on h1, cut off, of an unlimited meter")
	m.eagain = time.Since(cutAt)
	waitFor(t, "h1's status says the store is unreachable", func() bool { return storeDown(t, s.cut, "idle") }, nil)
	m.down = time.Since(cutAt)
	require.NoError(t, openNonblock(s.other.path("idle", "acquire")), "O_NONBLOCK on h2 while h1 is cut off")
	return m
}

// checkLoad checks the load meter's calls on both hosts: no failed open,
// 0 violations, nothing granted on the cut host from the lapse's margin
// (and nothing asked after the cut) until the link came back. It says
// when the cut host's last grant was.
func (s *cutScene) checkLoad(t *testing.T, load *loadGroup, cutAt, upAt, expiry time.Time) string {
	t.Helper()
	require.Empty(t, load.failures(t), "a client's open, read or close failed across the cut")
	calls := load.calls(t)
	checkCalls(t, calls, parseLimits(t, "3/1s,concurrency=2"))
	margin := min(time.Second, s.lease/4) // meter/redis: a host gives up its lease this long before it lapses
	var last time.Time
	for _, c := range load.callsOf(t, "h1-") {
		if c.grant.After(cutAt) && c.grant.Before(upAt) {
			require.True(t, c.grant.Before(expiry.Add(-margin)), "h1 granted a call %s after the cut, %s before its lease lapsed",
				fmtMS(c.grant.Sub(cutAt)), fmtMS(expiry.Sub(c.grant)))
			require.False(t, c.asked.After(cutAt.Add(50*time.Millisecond)), "h1 granted a call asked %s after the cut",
				fmtMS(c.asked.Sub(cutAt)))
			last = c.grant
		}
	}
	t.Logf("load: %d calls on 2 hosts; h1's last grant while cut off: %s", len(calls), lastGrantText(last, cutAt))
	return lastGrantText(last, cutAt)
}

func lastGrantText(last, cutAt time.Time) string {
	if last.IsZero() {
		return "none after the cut"
	}
	return fmt.Sprintf("%s after the cut (asked before it)", fmtMS(last.Sub(cutAt)))
}
