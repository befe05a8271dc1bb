package test

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRunSignalStopsWait pins a bug: rlfs run ignored SIGINT and SIGTERM
// while it waited for its grant (main's signal.NotifyContext swallowed them
// and the blocked open was retried after EINTR), so Ctrl-C did nothing and
// `timeout 5 rlfs run …` returned only when the holder left. Like flock(1),
// a signal while waiting now stops the wait at once, runs nothing and exits
// 128+signal; the waiter leaves the queue and nothing is counted.
func TestRunSignalStopsWait(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	holder := shHold(t, d.path("m", "acquire"))
	// Stopping a wait must take less than starting a process does: that is
	// "at once" on a machine however busy (and under a second on an idle one).
	baseline := runTime(t, rlfsBin, "run", "--nonblock", d.path("m"), "--", "true")
	limit := max(time.Second, baseline)
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{
		{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}, {syscall.SIGHUP, 129}, {syscall.SIGQUIT, 131},
	} {
		marker := filepath.Join(t.TempDir(), "ran")
		p := startProc(t, rlfsBin, "run", d.path("m"), "--", "touch", marker)
		d.waitEntries(t, "m", "waiters", 1)
		sent := time.Now()
		require.NoError(t, syscall.Kill(p.pid(), tc.sig))
		p.wait(t, pollTimeout)
		took := p.endAt.Sub(sent)
		t.Logf("FIGURE rlfs run exited %d, %s after %v (a whole rlfs run --nonblock took %s)", p.exitCode(), fmtMS(took), tc.sig, fmtMS(baseline))
		require.Equal(t, tc.code, p.exitCode(), "exit status after %v; stderr: %s", tc.sig, p.stderr.String())
		require.Less(t, took, limit, "rlfs run must stop waiting at once on %v", tc.sig)
		require.NoFileExists(t, marker, "the command must not run after %v", tc.sig)
		d.waitEntries(t, "m", "waiters", 0)
	}
	require.False(t, holder.exited(), "the holder still holds")
	st := d.status(t, "m")
	require.Equal(t, "1", st["grants_total"], "only the holder was granted")
	require.Equal(t, "1 of 1", st["in_progress"])
}

// TestRunUnderTimeout: `timeout 2 rlfs run …` on a meter held for longer
// returns once timeout's SIGTERM arrives (exit 124), while the holder still
// holds, not when the holder leaves.
func TestRunUnderTimeout(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	holder := shHold(t, d.path("m", "acquire"))
	marker := filepath.Join(t.TempDir(), "ran")
	const limit = 2 * time.Second
	start := time.Now()
	p := startProc(t, "timeout", "2", rlfsBin, "run", d.path("m"), "--", "touch", marker)
	p.wait(t, 15*limit)
	took := p.endAt.Sub(start)
	t.Logf("FIGURE timeout 2 rlfs run returned after %s", fmtMS(took))
	require.Equal(t, 124, p.exitCode(), "timeout's status when its command had to be stopped; stderr: %s", p.stderr.String())
	require.False(t, holder.exited(), "it returned while the holder still held")
	require.GreaterOrEqual(t, took, limit)
	require.Less(t, took, 3*limit, "timeout 2 returns in about 2 s")
	require.NoFileExists(t, marker)
	d.waitEntries(t, "m", "waiters", 0)
}

// TestRunWaitZero pins a bug: --wait 0 (as `flock -w 0`) meant "wait
// forever"; it means "do not wait": a busy meter fails at once with the
// conflict exit code and runs nothing.
func TestRunWaitZero(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	holder := shHold(t, d.path("m", "acquire"))
	for _, args := range [][]string{
		{"--wait", "0"},
		{"--wait", "0s"},
		{"--wait", "0", "--conflict-exit-code", "75"},
	} {
		marker := filepath.Join(t.TempDir(), "ran")
		want := 1
		if len(args) > 2 {
			want = 75
		}
		argv := append(append([]string{"run"}, args...), d.path("m"), "--", "touch", marker)
		start := time.Now()
		p := startProc(t, rlfsBin, argv...)
		p.wait(t, pollTimeout)
		t.Logf("FIGURE rlfs %v on a held meter: exit %d after %s", args, p.exitCode(), fmtMS(p.endAt.Sub(start)))
		require.Equal(t, want, p.exitCode(), "rlfs %v; stderr: %s", argv, p.stderr.String())
		require.Contains(t, p.stderr.String(), "cannot grant a call right now")
		require.NoFileExists(t, marker)
	}
	require.False(t, holder.exited())
	require.Equal(t, "0", d.status(t, "m")["waiting"])
	require.Equal(t, "1", d.status(t, "m")["grants_total"], "nothing but the holder was counted")

	holder.stdin.Close()
	holder.requireSuccess(t, pollTimeout)
	d.waitStatus(t, "m", "in_progress", "0 of 1")
	out, code := sh(t, fmt.Sprintf("%s run --wait 0 %s -- echo ran", rlfsBin, d.path("m")))
	require.Equal(t, 0, code, out)
	require.Equal(t, "ran\n", out, "--wait 0 on a free meter runs the command")
}

// TestRunConflictExitCodeRange pins a bug: --conflict-exit-code 256 was
// accepted and exited 0 (an exit status is 0 to 255). It is a usage error.
func TestRunConflictExitCodeRange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	for _, v := range []string{"256", "-1", "1000"} {
		p := startProc(t, rlfsBin, "run", "--conflict-exit-code", v, dir, "--", "touch", marker)
		p.wait(t, pollTimeout)
		require.Equal(t, 2, p.exitCode(), "--conflict-exit-code %s; stderr: %s", v, p.stderr.String())
		require.Contains(t, p.stderr.String(), "--conflict-exit-code "+v)
		require.Contains(t, p.stderr.String(), "0 to 255")
		_, err := os.Stat(marker)
		require.ErrorIs(t, err, os.ErrNotExist)
	}
}

// runTime runs a command that must exit by itself and returns how long it
// took, start-up included: a measure of how busy the machine is.
func runTime(t *testing.T, name string, args ...string) time.Duration {
	t.Helper()
	start := time.Now()
	p := startProc(t, name, args...)
	p.wait(t, pollTimeout)
	return p.endAt.Sub(start)
}
