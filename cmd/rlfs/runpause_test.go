package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRunPauseFlags: --pause-on-exit CODE=DURATION is repeatable and
// validated (an exit status 0 to 255, a pause the daemon reads, not one
// that lifts, each status once), each error naming the flag and the fix;
// --pause-from-file is made absolute for $RLFS_PAUSE_FILE.
func TestRunPauseFlags(t *testing.T) {
	o, err := parseRun([]string{"--pause-on-exit", "22=30s", "--pause-on-exit", "75=120", "--pause-on-exit", " 143 = 1.5m",
		"--pause-from-file", "h.txt", "/m", "--", "curl"}, &bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, pauseOnExit{22: "30s", 75: "120", 143: "1.5m"}, o.pauseOnExit)
	require.Equal(t, "22=30s,75=120,143=1.5m", o.pauseOnExit.String())
	wd, err := os.Getwd()
	require.NoError(t, err)
	require.Equal(t, filepath.Join(wd, "h.txt"), o.pauseFile)
	require.True(t, o.pausing())

	o, err = parseRun([]string{"/m", "--", "true"}, &bytes.Buffer{})
	require.NoError(t, err)
	require.False(t, o.pausing(), "no pause flag: rlfs run opens acquire read-only, as before")

	for _, tc := range []struct{ arg, want string }{
		{"22", "want CODE=DURATION, such as 22=30s"},
		{"256=30s", `the exit status "256" is not a whole number from 0 to 255`},
		{"-1=30s", `the exit status "-1" is not a whole number from 0 to 255`},
		{"x=30s", `the exit status "x" is not a whole number from 0 to 255`},
		{"22=soon", "want a pause such as 30s, 1.5m or 120 (seconds)"},
		{"22=-5s", "want a pause such as 30s"},
		{"22=", "want a pause such as 30s"},
		{"22=0", "0 would lift a pause, not set one; give a duration such as 30s"},
		{"22=none", "none would lift a pause, not set one"},
		{"22=Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT is in the past; give a duration such as 30s"},
	} {
		var stderr bytes.Buffer
		_, _, err := run(t, "run", "--pause-on-exit", tc.arg, "/m", "--", "true")
		require.Equal(t, 2, exitCode(err, &stderr), "rlfs run --pause-on-exit %q", tc.arg)
		require.Contains(t, stderr.String(), `invalid value "`+tc.arg+`" for flag -pause-on-exit: `+tc.want, "rlfs run --pause-on-exit %q", tc.arg)
		require.Contains(t, stderr.String(), "Try: rlfs run --help")
	}
	var stderr bytes.Buffer
	_, _, err = run(t, "run", "--pause-on-exit", "22=1s", "--pause-on-exit", "22=2s", "/m", "--", "true")
	require.Equal(t, 2, exitCode(err, &stderr))
	require.Contains(t, stderr.String(), "exit status 22 given twice (1s and 2s); give each status once")
}

// TestRetryAfterIn: what rlfs run --pause-from-file takes from the file
// the command left: curl -D's header dump (the last response's
// Retry-After, only for a 429 or a 503), or a value a script wrote.
func TestRetryAfterIn(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, text, value, where string
		status                   int
		err                      string
	}{
		{"429", "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nRetry-After: 2\r\n\r\n", "2", "Retry-After of HTTP 429 in ", 429, ""},
		{"503-http2-lower", "HTTP/2 503 \r\nretry-after: Wed, 21 Oct 2026 07:28:00 GMT\r\n\r\n", "Wed, 21 Oct 2026 07:28:00 GMT", "Retry-After of HTTP 503 in ", 503, ""},
		{"redirect-then-429", "HTTP/1.1 301 Moved\r\nLocation: /b\r\nRetry-After: 600\r\n\r\nHTTP/1.1 429 Too Many\r\nRetry-After: 3\r\n\r\n", "3", "Retry-After of HTTP 429 in ", 429, ""},
		{"429-then-200", "HTTP/1.1 429 Too Many\r\nRetry-After: 3\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", "", "", 200, ""},
		{"301-with-retry-after", "HTTP/1.1 301 Moved\r\nRetry-After: 600\r\n\r\n", "", "", 301, ""},
		{"429-without", "HTTP/1.1 429 Too Many\r\nContent-Length: 0\r\n\r\n", "", "", 429, ""},
		{"retry-after-x-header", "HTTP/1.1 429 Too Many\r\nRetry-After-Ms: 5\r\n\r\n", "", "", 429, ""},
		{"bare", "30\n", "30", "", 0, ""},
		{"bare-duration", "  1.5m  ", "1.5m", "", 0, ""},
		{"line", "# from the API\nretry-after 45\n", "45", "retry-after in ", 0, ""},
		{"header-line", "Retry-After: 7\n", "7", "retry-after in ", 0, ""},
		{"empty", "", "", "", 0, ""},
		{"blank", "\n\n", "", "", 0, ""},
		{"lines", "30\n40\n", "", "", 0, "2 lines and none is retry-after X"},
	} {
		p := filepath.Join(dir, tc.name)
		require.NoError(t, os.WriteFile(p, []byte(tc.text), 0o644))
		says, err := retryAfterIn(p)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.name)
			continue
		}
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.value, says.value, "retryAfterIn of %s: %q", tc.name, tc.text)
		require.Equal(t, tc.status, says.status, "retryAfterIn of %s: %q", tc.name, tc.text)
		if tc.where != "" {
			require.Equal(t, tc.where+p, says.where, tc.name)
		}
	}
	says, err := retryAfterIn(filepath.Join(dir, "missing"))
	require.NoError(t, err, "a file the command did not create is no pause")
	require.Equal(t, fileSays{}, says)
}

// TestPrepPauseFile: the pause file is emptied before the command runs (a
// 429 a previous run left there must not pause the meter again); a missing
// one is fine; one that cannot be emptied is an error naming the fix.
func TestPrepPauseFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "h")
	require.NoError(t, os.WriteFile(p, []byte("HTTP/1.1 429 x\r\nRetry-After: 9\r\n\r\n"), 0o600))
	require.NoError(t, prepPauseFile(p))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Empty(t, b)
	require.NoError(t, prepPauseFile(filepath.Join(dir, "missing")))
	_, err = os.Stat(filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, os.ErrNotExist, "rlfs run does not create the file")
	err = prepPauseFile(dir)
	require.ErrorContains(t, err, "--pause-from-file "+dir)
	require.ErrorContains(t, err, "give a file rlfs run may empty")
}
