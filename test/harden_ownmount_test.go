package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDaemonNeverEntersItsOwnMount pins a hang found by CI: go-fuse's
// WaitMount opens and closes a file in the new mount (its poll hack), and a
// kill -9 that came while that close's FLUSH was being answered left the
// daemon unkillable (the kernel waits uninterruptibly for an answer that
// only the dead daemon could give) and its mount dead until the connection
// was aborted by hand; TestRestartAfterKill9 waited for it for ten minutes.
// A daemon must never call into its own mount. strace follows the daemon
// from its start through serving grants to its stop: after its mount(2),
// no open or stat of a path at or below the mountpoint.
func TestDaemonNeverEntersItsOwnMount(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	strace, err := exec.LookPath("strace")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("this test follows the daemon with strace, which CI must install (apt-get install strace)")
		}
		t.Skip("strace is not installed (apt-get install strace)")
	}
	dir := t.TempDir()
	trace := filepath.Join(dir, "trace")
	d := &daemon{db: filepath.Join(dir, "meters.db"), mnt: filepath.Join(dir, "mnt"), meters: []string{"m=concurrency=0"},
		wrap: []string{strace, "-f", "-qq", "-o", trace, "-e", "trace=mount,open,openat,openat2,stat,lstat,newfstatat,statx,statfs"}}
	t.Cleanup(func() { d.cleanup(t) })
	d.start(t)
	for range 3 {
		waitGrant(t, d.path("m", "acquire"))
	}
	_, err = os.ReadDir(d.path("m", "holders"))
	require.NoError(t, err)
	// SIGTERM to rlfs itself (strace would only detach); strace exits with it.
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", d.pid(), d.pid()))
	require.NoError(t, err)
	rlfsPID, err := strconv.Atoi(strings.Fields(string(kids))[0])
	require.NoError(t, err, "the process strace runs: %q", kids)
	require.NoError(t, syscall.Kill(rlfsPID, syscall.SIGTERM))
	select {
	case <-d.run.done:
	case <-time.After(stopTimeout):
		t.Fatalf("rlfs under strace did not exit within %v of SIGTERM; its output:\n%s", stopTimeout, d.log.String())
	}

	b, err := os.ReadFile(trace)
	require.NoError(t, err)
	lines := strings.Split(string(b), "\n")
	mounted := -1
	for i, l := range lines {
		if strings.Contains(l, "mount(") && strings.Contains(l, `"`+d.mnt+`"`) {
			mounted = i
			break
		}
	}
	require.GreaterOrEqual(t, mounted, 0, "strace saw no mount(2) of %s:\n%s", d.mnt, b)
	for _, l := range lines[mounted+1:] {
		if strings.Contains(l, `"`+d.mnt+`"`) || strings.Contains(l, `"`+d.mnt+`/`) {
			t.Errorf("after mounting, the daemon entered its own mount: %s", l)
		}
	}
}
