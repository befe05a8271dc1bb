package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRunFlags pins two bugs of rlfs run's flags: --conflict-exit-code 256
// was accepted (and exited 0), and --wait 0 meant "wait forever" instead of
// "do not wait", as flock -w 0.
func TestRunFlags(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		wait     time.Duration
		nonblock bool
		conflict int
	}{
		{[]string{"/m", "--", "true"}, 0, false, 1},
		{[]string{"--wait", "0", "/m", "--", "true"}, 0, true, 1},
		{[]string{"--wait", "0s", "/m", "--", "true"}, 0, true, 1},
		{[]string{"--wait", "0", "--nonblock", "/m", "--", "true"}, 0, true, 1},
		{[]string{"--wait", "1.5", "/m", "--", "true"}, 1500 * time.Millisecond, false, 1},
		{[]string{"--wait", "2m", "--conflict-exit-code", "255", "/m", "--", "true"}, 2 * time.Minute, false, 255},
		{[]string{"--conflict-exit-code", "0", "/m", "--", "true"}, 0, false, 0},
	} {
		o, err := parseRun(tc.args, &bytes.Buffer{})
		require.NoError(t, err, "rlfs run %q", tc.args)
		require.Equal(t, tc.wait, o.wait, "--wait of rlfs run %q", tc.args)
		require.Equal(t, tc.nonblock, o.nonblock, "nonblock of rlfs run %q", tc.args)
		require.Equal(t, tc.conflict, o.conflict, "--conflict-exit-code of rlfs run %q", tc.args)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--conflict-exit-code", "256", "/m", "--", "true"}, "want 0 to 255"},
		{[]string{"--conflict-exit-code", "-1", "/m", "--", "true"}, "want 0 to 255"},
		{[]string{"--wait", "-1s", "/m", "--", "true"}, "must not be negative"},
		{[]string{"--wait", "soon", "/m", "--", "true"}, "want a duration"},
		{[]string{"--wait", "1s", "--nonblock", "/m", "--", "true"}, "exclude each other"},
	} {
		_, _, err := run(t, append([]string{"run"}, tc.args...)...)
		require.ErrorContains(t, err, tc.want, "rlfs run %q", tc.args)
		var stderr bytes.Buffer
		require.Equal(t, 2, exitCode(err, &stderr), "exit code of rlfs run %q", tc.args)
		require.Contains(t, stderr.String(), "Try: rlfs", "rlfs run %q gives a hint", tc.args)
	}
}

// TestRunCostTooBigMessage: rlfs run --cost beyond a units limit names the
// limits that bound one call's cost (read from the meter's limits file),
// where it once said only "a units limit of its is smaller".
func TestRunCostTooBigMessage(t *testing.T) {
	dir := t.TempDir()
	require.Equal(t, "a units limit of the meter is smaller", unitLimits(dir), "no limits file")
	for _, tc := range []struct{ limits, want string }{
		{"3/1s\nunits:100/1s\nconcurrency=1\n", "its limits allow at most 100 units a call: units:100/1s"},
		{"units:90000/1m\nunits:rate=1000/1s\nunits:burst=5000\n", "its limits allow at most 5000 units a call: units:90000/1m,units:rate=1000/1s,units:burst=5000"},
		{"concurrency=1\n", "a units limit of the meter is smaller"},
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "limits"), []byte(tc.limits), 0o644))
		require.Equal(t, tc.want, unitLimits(dir), "limits %q", tc.limits)
	}
}
