package test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// The fleet's host-death must-show: kill -9 of the daemon of a host that
// holds a concurrency=1 meter, every host on --lease 3s. Its call counts
// until its lease lapses in the store, then as completed: another host's
// waiter is granted after the lapse, not before (strict: not before the
// expiry the store recorded for the dead host's lease, and not within 2 s
// of the kill, since a live host renews every lease/3), and not never
// (within 6 s of the kill, the figure: the lapse comes at most 3 s
// after the kill and the waiter's host wakes at it). The dead host's own
// waiter, ahead in the queue, leaves it at the lapse. The dead host's daemon
// then starts again on the same mountpoint and rejoins the fleet.
func TestFleetKill9Lease(t *testing.T) {
	t.Parallel()
	const lease = 3 * time.Second
	srv, ds := fleet(t, 2, []string{"--lease", lease.String()}, "m=concurrency=1")
	h1, h2 := ds[0], ds[1]
	holder := shHold(t, h1.path("m", "acquire"))
	h2.waitStatus(t, "m", "in_progress", "1 of 1")
	head := startProc(t, "sh", "-c", `exec 3<"$1" && echo held`, "sh", h1.path("m", "acquire"))
	h2.waitStatus(t, "m", "waiting", "1")
	logs := t.TempDir()
	waiter := startClient(t, h2.path("m", "acquire"), logs, client{kind: "go", id: "h2-waiter", calls: 1})
	h2.waitStatus(t, "m", "waiting", "2")

	killed := h1.crash(t)
	expiry := leaseExpiry(t, srv, "m", "h1")
	waiter.requireSuccess(t, pollTimeout)
	calls := readCalls(t, logs)
	require.Len(t, calls, 1)
	grant := calls[0].grant
	delay := grant.Sub(killed)
	t.Logf("FIGURE fleet kill -9: the other host's waiter was granted %s after kill -9 of the holder's daemon (--lease %v; the lease lapsed %s after the kill)",
		fmtMS(delay), lease, fmtMS(expiry.Sub(killed)))
	require.False(t, grant.Before(expiry.Add(-tolerance(0))), "granted %v before h1's lease lapsed", expiry.Sub(grant))
	require.GreaterOrEqual(t, delay, lease-lease/3-tolerance(0), "granted too soon after the kill")
	require.LessOrEqual(t, delay, 6*time.Second, "granted too late after the kill")
	require.Error(t, head.wait(t, pollTimeout), "h1's waiter, whose daemon was killed, was granted: %s", head.stdout.String())

	_ = holder.cmd.Process.Kill() // its descriptor is on the dead mount
	h1.restartCrashed(t)
	for _, d := range ds {
		d.waitEntries(t, "m", "holders", 0)
		d.waitStatus(t, "m", "in_progress", "0 of 1")
	}
	again := shHold(t, h1.path("m", "acquire"))
	holders := h2.waitEntries(t, "m", "holders", 1)
	require.True(t, strings.HasSuffix(holders[0], "."+strconv.Itoa(again.pid())+"@h1"), "holders/ on h2: %q", holders)
}

// leaseExpiry is when host's lease on meter lapses, as the store recorded
// it (the store's clock is this machine's).
func leaseExpiry(t *testing.T, srv *redistest.Server, meterName, host string) time.Time {
	t.Helper()
	v := storeCommand(t, srv, "HGET", "{rlfs:"+meterName+"}:h", host)
	exp, _, ok := strings.Cut(v, ",")
	require.True(t, ok, "lease of %s on %s in the store: %q", host, meterName, v)
	us, err := strconv.ParseInt(exp, 10, 64)
	require.NoError(t, err, "lease of %s on %s in the store: %q", host, meterName, v)
	return time.UnixMicro(us)
}
