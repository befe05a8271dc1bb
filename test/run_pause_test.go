package test

// rlfs run speaks the pause (issue 18, item 2): --pause-on-exit
// CODE=DURATION pauses the meter when the command exits with CODE, and
// --pause-from-file PATH for the Retry-After the command left in PATH, both
// written to rlfs run's acquire descriptor before its close.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var pausedLogRE = regexp.MustCompile(`msg="meter paused" meter=(\S+) until=(\S+) by=("(?:[^"\\]|\\.)*"|\S+) from=("[^"]*"|\S+)`)

// loggedPause is one "meter paused" line of a daemon's log.
type loggedPause struct {
	until    time.Time
	by, from string
}

// loggedPauses are the pauses set on meter m, as the daemon logged them.
// (The log, not the pause file: on a loaded machine a pause of a second can
// be over before the test reads the file.)
func (d *daemon) loggedPauses(t *testing.T, m string) []loggedPause {
	t.Helper()
	var out []loggedPause
	for _, l := range d.logLines(`msg="meter paused"`) {
		g := pausedLogRE.FindStringSubmatch(l)
		require.NotNil(t, g, "log line %q", l)
		if g[1] != m {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, g[2])
		require.NoError(t, err, "log line %q", l)
		out = append(out, loggedPause{until: at, by: strings.Trim(g[3], `"`), from: strings.Trim(g[4], `"`)})
	}
	return out
}

// runPaused runs `rlfs run ARGS` to its end and returns it, with the
// instant it started.
func runPaused(t *testing.T, args ...string) (p *proc, start time.Time) {
	t.Helper()
	start = time.Now()
	p = startProc(t, rlfsBin, append([]string{"run"}, args...)...)
	p.wait(t, pollTimeout)
	return p, start
}

// requirePausedFor checks that rlfs run p (started at start) set the n-th
// pause of meter m, for d from when it wrote it: until lies within
// [start+d, end+d] (the log says milliseconds, truncated), set by rlfs run
// through its acquire descriptor; and the next open is granted no earlier
// than until.
func requirePausedFor(t *testing.T, dm *daemon, m string, n int, p *proc, start time.Time, d time.Duration) {
	t.Helper()
	var ps []loggedPause
	waitFor(t, fmt.Sprintf("the daemon logs pause %d of %s", n, m), func() bool {
		ps = dm.loggedPauses(t, m)
		return len(ps) >= n
	}, func() string { return p.stderr.String() + dm.log.String() })
	require.Len(t, ps, n, "pauses of %s", m)
	got := ps[n-1]
	require.Contains(t, got.by, "rlfs run --", "who paused %s", m)
	require.Equal(t, "an acquire descriptor", got.from)
	require.False(t, got.until.Before(start.Add(d-time.Millisecond)), "paused until %v: less than %v after rlfs run started (%v)", got.until, d, start)
	require.False(t, got.until.After(p.endAt.Add(d)), "paused until %v: more than %v after rlfs run ended (%v)", got.until, d, p.endAt)
	_, when := grantAt(t, dm, m)
	g := when()
	t.Logf("FIGURE %s: paused for %v; the next open was granted %s after rlfs run ended", m, d, fmtMS(g.Sub(p.endAt)))
	require.False(t, g.Before(got.until), "granted at %v, before the pause's end %v", g, got.until)
}

// TestRunPauseOnExit: the exit status given pauses the meter for its
// DURATION (through rlfs run's descriptor, and rlfs run says so on stderr),
// another status does not, a signal's 128+N does; rlfs run keeps the
// command's status; --cost still passes fd 3 for the settlement beside the
// pause.
func TestRunPauseOnExit(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=0", "w=units:100/1h,concurrency=0")
	p, start := runPaused(t, "--pause-on-exit", "3=2s", "--pause-on-exit", "22=30s", d.path("m"), "--", "sh", "-c", "exit 3")
	require.Equal(t, 3, p.exitCode(), "rlfs run exits with the command's status; stderr: %s", p.stderr.String())
	require.Equal(t, fmt.Sprintf("rlfs run: the command exited 3; paused %s: retry-after 2s (--pause-on-exit 3=2s)\n", d.path("m")), p.stderr.String())
	requirePausedFor(t, d, "m", 1, p, start, 2*time.Second)

	for _, argv := range [][]string{
		{"--pause-on-exit", "3=2s", d.path("m"), "--", "true"},
		{"--pause-on-exit", "3=2s", d.path("m"), "--", "sh", "-c", "exit 4"},
	} {
		p, _ := runPaused(t, argv...)
		require.Empty(t, p.stderr.String(), "rlfs run %q", argv)
		require.Equal(t, "not paused", readPause(t, d, "m"), "rlfs run %q: another exit status pauses nothing", argv)
	}
	require.Len(t, d.loggedPauses(t, "m"), 1)

	p, start = runPaused(t, "--pause-on-exit", "143=1s", d.path("m"), "--", "sh", "-c", "kill -TERM $$")
	require.Equal(t, 143, p.exitCode(), "a command killed by SIGTERM; stderr: %s", p.stderr.String())
	requirePausedFor(t, d, "m", 2, p, start, time.Second)

	// --cost: the command settles through fd 3, rlfs run pauses through the
	// same descriptor after it.
	p, start = runPaused(t, "--cost", "50", "--pause-on-exit", "22=1s", d.path("w"), "--", "sh", "-c", `echo 7 >&"$RLFS_ACQUIRE_FD"; exit 22`)
	require.Equal(t, 22, p.exitCode(), "stderr: %s", p.stderr.String())
	require.Equal(t, "7", d.status(t, "w")["units_settled_since_start"], "the command's settlement took")
	requirePausedFor(t, d, "w", 1, p, start, time.Second)
	p, _ = runPaused(t, "--cost", "5", d.path("w"), "--", "sh", "-c", `echo 3 >&3`)
	require.Equal(t, 0, p.exitCode(), "--cost without a pause flag; stderr: %s", p.stderr.String())
	require.Equal(t, "10", d.status(t, "w")["units_settled_since_start"])
}

// TestRunPauseFromFile: the Retry-After the command left in the pause file
// (curl -D's header dump of a 429, or a value it wrote to
// $RLFS_PAUSE_FILE) pauses the meter for exactly that, and wins over
// --pause-on-exit; a 200's headers, or what an earlier run left (rlfs run
// empties the file first), pause nothing.
func TestRunPauseFromFile(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=0")
	dir := t.TempDir()
	hdr := filepath.Join(dir, "headers")
	dump := func(status, retryAfter string) string {
		return fmt.Sprintf(`printf 'HTTP/1.1 %s\r\nRetry-After: %s\r\n\r\n' > "$RLFS_PAUSE_FILE"`, status, retryAfter)
	}
	p, start := runPaused(t, "--pause-from-file", hdr, "--pause-on-exit", "22=30s", d.path("m"), "--", "sh", "-c", dump("429 Too Many Requests", "2")+"; exit 22")
	require.Equal(t, 22, p.exitCode())
	require.Equal(t, fmt.Sprintf("rlfs run: the command exited 22; paused %s: retry-after 2 (Retry-After of HTTP 429 in %s)\n", d.path("m"), hdr), p.stderr.String())
	requirePausedFor(t, d, "m", 1, p, start, 2*time.Second)

	// A script writes the value itself, and exits 0.
	p, start = runPaused(t, "--pause-from-file", hdr, d.path("m"), "--", "sh", "-c", `echo 1 > "$RLFS_PAUSE_FILE"`)
	require.Equal(t, 0, p.exitCode(), "stderr: %s", p.stderr.String())
	requirePausedFor(t, d, "m", 2, p, start, time.Second)

	// Left by an earlier run: emptied before the command runs.
	require.NoError(t, os.WriteFile(hdr, []byte("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\n\r\n"), 0o600))
	p, _ = runPaused(t, "--pause-from-file", hdr, d.path("m"), "--", "true")
	require.Equal(t, 0, p.exitCode())
	require.Equal(t, "not paused", readPause(t, d, "m"), "stderr: %s", p.stderr.String())
	b, err := os.ReadFile(hdr)
	require.NoError(t, err)
	require.Empty(t, b, "rlfs run emptied the pause file before the command ran")

	// The server answered, and not "slow down" (a 404, a 200 with a
	// Retry-After, which means nothing there), or said Retry-After: 0: no
	// pause, whatever the --pause-on-exit.
	for _, tc := range []struct{ status, retryAfter string }{
		{"404 Not Found", "30"}, {"200 OK", "30"}, {"429 Too Many Requests", "0"},
	} {
		p, _ = runPaused(t, "--pause-from-file", hdr, "--pause-on-exit", "22=30s", d.path("m"), "--", "sh", "-c", dump(tc.status, tc.retryAfter)+"; exit 22")
		require.Equal(t, 22, p.exitCode())
		require.Empty(t, p.stderr.String(), "HTTP %s, Retry-After: %s", tc.status, tc.retryAfter)
		require.Equal(t, "not paused", readPause(t, d, "m"), "HTTP %s, Retry-After: %s", tc.status, tc.retryAfter)
	}

	// A 429 without a Retry-After, or with one that is no pause (said on
	// stderr): the --pause-on-exit applies.
	p, start = runPaused(t, "--pause-from-file", hdr, "--pause-on-exit", "22=1s", d.path("m"), "--", "sh", "-c",
		`printf 'HTTP/1.1 429 Too Many Requests\r\n\r\n' > "$RLFS_PAUSE_FILE"; exit 22`)
	require.Equal(t, 22, p.exitCode())
	require.Contains(t, p.stderr.String(), "(--pause-on-exit 22=1s)")
	requirePausedFor(t, d, "m", 3, p, start, time.Second)
	// A Retry-After that is no pause is said, and the fallback applies.
	p, _ = runPaused(t, "--pause-from-file", hdr, "--pause-on-exit", "22=1s", d.path("m"), "--", "sh", "-c", dump("429 Too Many Requests", "soon")+"; exit 22")
	require.Equal(t, 22, p.exitCode())
	lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
	require.Equal(t, []string{
		fmt.Sprintf(`rlfs run: Retry-After of HTTP 429 in %s: "soon" is no pause (want seconds, a duration or an HTTP-date); not paused by it`, hdr),
		fmt.Sprintf("rlfs run: the command exited 22; paused %s: retry-after 1s (--pause-on-exit 22=1s)", d.path("m")),
	}, lines)
}
