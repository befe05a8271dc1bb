package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCopyOfAMeterTakesNoCall pins a bug: `mv METER elsewhere` counted a
// call. rename(2) gets EXDEV out of the mount, and mv falls back to copying
// the tree, which opened acquire: a blocking FIFO wait on a held meter, then
// a counted call. cp and mv open what they copy with O_RDONLY|O_NOFOLLOW
// (checked with strace on coreutils 9.1), and rlfs refuses such an open of
// acquire with EPERM at once. The copy fails on acquire, the meter stays,
// nothing waits and nothing counts; the usual clients still acquire.
func TestCopyOfAMeterTakesNoCall(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=1/1s")
	acq := d.path("m", "acquire")
	holder := shHold(t, acq)
	d.waitStatus(t, "m", "in_progress", "1 of 1")

	dst := t.TempDir() // outside the mount: another filesystem
	for _, tc := range []struct{ name, cmd string }{
		{"mv", fmt.Sprintf("mv %s %s/", d.path("m"), dst)},
		{"cp -r", fmt.Sprintf("cp -r %s %s/r", d.path("m"), dst)},
		{"cp -a", fmt.Sprintf("cp -a %s %s/a", d.path("m"), dst)},
	} {
		out, code := sh(t, "timeout 10 "+tc.cmd)
		require.NotEqual(t, 124, code, "%s waited for the held meter: %s", tc.name, out)
		require.NotEqual(t, 0, code, "%s of a meter cannot succeed: acquire is not copied", tc.name)
		require.Contains(t, out, "acquire", tc.name)
		require.Contains(t, out, "Operation not permitted", tc.name)
		require.Empty(t, d.entries(t, "m", "waiters"), "%s left a waiter", tc.name)
		st := d.status(t, "m")
		require.Equal(t, "1", st["grants_total"], "%s counted a call", tc.name)
		require.Equal(t, "0", st["rejected_since_start"], tc.name)
	}
	_, err := os.Stat(d.path("m", "acquire"))
	require.NoError(t, err, "the meter is still there after mv")
	copied, err := os.ReadFile(filepath.Join(dst, "r", "limits"))
	require.NoError(t, err, "the rest of the meter was copied")
	require.Equal(t, "1/1s\nconcurrency=1\n", string(copied))
	require.Equal(t, 1, strings.Count(d.log.String(), "O_NOFOLLOW refused"), "the daemon says why once:\n%s", d.log.String())

	// Acquiring as users do still works: cat (O_RDONLY) and flock(1)
	// (O_RDONLY|O_CREAT|O_NOCTTY) wait for the holder, then count.
	_, err = holder.stdin.Write([]byte("\n"))
	require.NoError(t, err)
	holder.requireSuccess(t, pollTimeout)
	out, code := sh(t, fmt.Sprintf("cat %s >/dev/null && flock %s true", acq, acq))
	require.Equal(t, 0, code, out)
	require.Equal(t, "3", d.status(t, "m")["grants_total"])
}
