package test

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFleetFaultSigtermWithWaiters: host h1 has three waiters queued on a
// concurrency=1 meter held on h2, and h2 has a waiter behind them. SIGTERM
// of h1's daemon answers its waiters with EIO promptly, it exits 0, and its
// waiters leave the store's queue: when h2's holder releases, h2's waiter is
// granted at once, not after h1's lease (10 s) lapses.
func TestFleetFaultSigtermWithWaiters(t *testing.T) {
	t.Parallel()
	const lease = 10 * time.Second
	_, ds := fleet(t, 2, []string{"--lease", lease.String()}, "m=concurrency=1")
	h1, h2 := ds[0], ds[1]
	holder := pyHold(t, h2.path("m", "acquire"))
	holder.waitOutput(t, "held")
	ahead := startWaiters(t, h1.path("m", "acquire"), 3)
	h2.waitEntries(t, "m", "waiters", 3)
	behind := startWaiters(t, h2.path("m", "acquire"), 1)
	h2.waitEntries(t, "m", "waiters", 4)

	term := time.Now()
	require.NoError(t, h1.run.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, ahead.wait(t, pollTimeout))
	res := waitersResults(t, ahead)
	require.Len(t, res, 3, "h1's waiters answered: %q", ahead.stdout.String())
	var slowest time.Duration
	for _, r := range res {
		require.False(t, r.ok, "h1's waiter was granted while h2 held the meter")
		require.Equal(t, int(syscall.EIO), r.errno, "h1's waiter at SIGTERM")
		slowest = max(slowest, r.when.Sub(term))
	}
	require.True(t, h1.waitExit(stopTimeout), "h1's daemon did not exit after SIGTERM")
	require.NoError(t, h1.run.err, "h1's exit status after SIGTERM; its output:\n%s", h1.log.String())
	exited := time.Since(term)
	waiters := h2.waitEntries(t, "m", "waiters", 1)
	left := time.Since(term)
	require.Contains(t, waiters[0], "@h2", "the waiter left in the queue is h2's")

	released := holder.release(t)
	require.NoError(t, behind.wait(t, pollTimeout))
	got := waitersResults(t, behind)
	require.Len(t, got, 1)
	require.True(t, got[0].ok, "h2's waiter behind h1's: %q", behind.stdout.String())
	handoff := got[0].when.Sub(released)
	require.Less(t, handoff, lease/2, "h2's waiter was granted %s after the release: it waited for h1's lease", fmtMS(handoff))
	t.Logf("FIGURE fleet-sigterm: h1's 3 waiters got EIO within %s of SIGTERM, h1 exited after %s, its waiters were out of the store's queue "+
		"within %s (seen on h2), h2's waiter behind them was granted %s after the holder's release (lease %v)",
		fmtMS(slowest), fmtMS(exited), fmtMS(left), fmtMS(handoff), lease)
}
