package test

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFaultSigtermThousandWaiters: 1,000 blocked opens (20 Python processes
// × 50 threads) wait behind a holder on 1/1h. At SIGTERM every one of them
// gets EIO at once (each thread notes when its open failed: within 1 s on
// an idle machine, at most loaded(0) on a loaded one, where 1,000 Python
// threads wait for a CPU to note it; on 1/1h they would wait), the daemon
// exits 0 and the mount is gone although the holder still has acquire
// open. The database is consistent: a restart serves it, and grants_total
// is what it was (the waiters were never granted).
//
// Heavy: not parallel (see faults_helpers_test.go).
func TestFaultSigtermThousandWaiters(t *testing.T) {
	const procs, threads = 20, 50
	d := startDaemon(t, "m=1/1h")
	acq := d.path("m", "acquire")
	holder := pyHold(t, acq)
	holder.waitOutput(t, "held ")

	var ws []*proc
	for range procs {
		ws = append(ws, startPy(t, faultsPy(), "waiters", acq, strconv.Itoa(threads)))
	}
	d.waitStatus(t, "m", "waiting", strconv.Itoa(procs*threads))
	require.Len(t, d.entries(t, "m", "waiters"), procs*threads)
	before := d.status(t, "m")["grants_total"]

	sigterm := time.Now()
	d.stop(t) // SIGTERM; requires exit status 0 and the mount gone
	exited := time.Since(sigterm)
	var lat []time.Duration
	for _, p := range ws {
		p.requireSuccess(t, pollTimeout)
		lines := strings.Split(strings.TrimSpace(p.stdout.String()), "\n")
		require.Equal(t, "ready", lines[0])
		require.Len(t, lines[1:], threads, "faults.py waiters printed %q", p.stdout.String())
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			require.Len(t, f, 4, "a waiter's line %q", l)
			require.Equal(t, []string{"err", "5"}, f[:2], "a waiter at SIGTERM gets EIO (errno 5); got %q", l)
			lat = append(lat, unixNS(t, f[2]).Sub(sigterm))
		}
	}
	require.Len(t, lat, procs*threads)
	worst := percentile(lat, 100)
	require.Less(t, worst, loaded(0), "every waiter gets EIO at once after SIGTERM")
	_, mounted := mountDev(d.mnt)
	require.False(t, mounted, "the mount is gone")
	require.False(t, holder.exited(), "the holder is not disturbed")

	d.start(t)
	st := d.status(t, "m")
	require.Equal(t, before, st["grants_total"], "no waiter was granted")
	require.Equal(t, "0", st["waiting"])
	require.Equal(t, "1 used, 0 free", st["window 1/1h"], "the holder's call still counts after the restart")
	t.Logf("FIGURE sigterm-1000: %d waiters got EIO within %s of SIGTERM (median %s); the daemon exited 0 after %s; grants_total %s before and after",
		len(lat), fmtMS(worst), fmtMS(percentile(lat, 50)), fmtMS(exited), before)
}

// TestFaultConnectionAborted: the daemon's FUSE connection is aborted
// through /sys/fs/fuse/connections/N/abort while a holder holds and a
// waiter (cat) waits. The waiter fails at once (ECONNABORTED), the daemon
// logs that the mount went away, detaches the dead mountpoint and exits 0,
// and a new daemon starts on the same mountpoint and database with the
// holder's call remembered.
func TestFaultConnectionAborted(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=1/1h")
	acq := d.path("m", "acquire")
	holder := startProc(t, bash.need(t), "-c", `exec sleep 1000 3<"$0"`, acq)
	d.waitEntries(t, "m", "holders", 1)
	waiter := startProc(t, "cat", acq)
	d.waitStatus(t, "m", "waiting", "1")

	aborted := time.Now()
	abortConnection(t, d.run.dev)
	// About 1 s on an idle machine.
	require.True(t, d.waitExit(loaded(time.Second)), "rlfs still runs %v after its FUSE connection was aborted", loaded(time.Second))
	gone := time.Since(aborted)
	require.NoError(t, d.run.err, "rlfs exits 0 when its connection is aborted; output:\n%s", d.log.String())
	require.Contains(t, d.log.String(), "the mount went away")
	_, mounted := mountDev(d.mnt)
	require.False(t, mounted, "the daemon detached the dead mountpoint")
	waiter.wait(t, loaded(0))
	require.NotEqual(t, 0, waiter.exitCode())
	require.Contains(t, waiter.stderr.String(), "Software caused connection abort", "the waiter's error")
	require.False(t, holder.exited())

	d.start(t)
	require.Equal(t, "1", d.status(t, "m")["grants_total"], "the restarted daemon remembers the holder's call")
	require.Equal(t, "1 used, 0 free", d.status(t, "m")["window 1/1h"])
	t.Logf("FIGURE abort: daemon exited 0 %s after the abort, waiter got ECONNABORTED; restart on the same mountpoint served grants_total 1", fmtMS(gone))
}

// TestFaultLazyUnmount: `umount -l MNT` takes the mount away from under the
// daemon.
//
// idle: nothing is open; the daemon logs that the mount went away, exits 0
// and a restart on the same mountpoint and database works.
//
// busy pins a bug: a lazy unmount is what an operator does precisely when a
// plain umount says "busy", but while a holder holds and a waiter waits, the
// kernel keeps the detached filesystem alive for them and rlfs goes on
// serving it, invisible: it does not notice that its mountpoint is gone, the
// waiter stays blocked (for an hour on 1/1h), and the daemon keeps the
// database's lock, so a restart fails with "is served by pid N". Expected:
// as for an aborted connection, the daemon notices within seconds, fails
// the waiter with EIO, logs that the mount went away and exits 0.
func TestFaultLazyUnmount(t *testing.T) {
	t.Parallel()
	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		d := startDaemon(t, "m=1/1h")
		_, code := sh(t, "cat "+d.path("m", "acquire"))
		require.Equal(t, 0, code)
		d.waitStatus(t, "m", "in_progress", "0 of 1")

		unmounted := time.Now()
		out, err := exec.Command("umount", "-l", d.mnt).CombinedOutput()
		require.NoError(t, err, "umount -l: %s", out)
		// The daemon checks its mountpoint every second.
		require.True(t, d.waitExit(loaded(time.Second)), "rlfs still runs %v after umount -l of its idle mount", loaded(time.Second))
		gone := time.Since(unmounted)
		require.NoError(t, d.run.err, "rlfs exits 0; output:\n%s", d.log.String())
		require.Contains(t, d.log.String(), "the mount went away")

		d.start(t)
		require.Equal(t, "1", d.status(t, "m")["grants_total"])
		t.Logf("FIGURE lazy-unmount idle: daemon exited 0 %s after umount -l; restart works", fmtMS(gone))
	})

	t.Run("busy", func(t *testing.T) {
		t.Parallel()
		d := startDaemon(t, "m=1/1h")
		acq := d.path("m", "acquire")
		holder := startProc(t, bash.need(t), "-c", `exec sleep 1000 3<"$0"`, acq)
		d.waitEntries(t, "m", "holders", 1)
		waiter := startProc(t, "cat", acq)
		d.waitStatus(t, "m", "waiting", "1")

		unmounted := time.Now()
		out, err := exec.Command("umount", "-l", d.mnt).CombinedOutput()
		require.NoError(t, err, "umount -l: %s", out)
		// Noticed within a second, then up to 0.5 s for the holder's
		// connection to end: about 2 s on an idle machine.
		if !d.waitExit(loaded(2 * time.Second)) {
			// Show what the operator sees: the restart is refused.
			f := runBadMount(t, d.mnt, "--db", d.db, "--meter", "m=1/1h", d.mnt)
			t.Fatalf("rlfs (pid %d) still runs %v after umount -l with a holder and a waiter: it serves the detached mount, "+
				"the waiter (cat, %s) is still blocked, and a restart on the same database fails:\n%s", d.pid(), loaded(2*time.Second), waiter.state(), f.rlfs)
		}
		gone := time.Since(unmounted)
		require.NoError(t, d.run.err, "rlfs exits 0; output:\n%s", d.log.String())
		require.Contains(t, d.log.String(), "the mount went away")
		waiter.wait(t, loaded(0))
		require.NotEqual(t, 0, waiter.exitCode(), "the waiter fails rather than waiting on a daemon that is gone")
		require.False(t, holder.exited())

		d.start(t)
		require.Equal(t, "1", d.status(t, "m")["grants_total"])
		t.Logf("FIGURE lazy-unmount busy: daemon exited 0 %s after umount -l; waiter: %s; restart works", fmtMS(gone), strings.TrimSpace(waiter.stderr.String()))
	})
}
