package test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestRestartAfterKill9 pins a bug: after kill -9 (or an OOM kill) of the
// daemon, the next `rlfs mount` on the same mountpoint refused it as a
// "dead FUSE mount … umount -l", so systemd's Restart=on-failure could never
// bring rlfs back. Now it detaches its predecessor's dead mount, logs that,
// and serves. A holder keeps `acquire` open across the kill (a real process
// holding the descriptor), which is what keeps the dead mount attached.
// Unlike daemon.kill9, the test leaves the dead mount for rlfs to handle.
func TestRestartAfterKill9(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	d := startDaemon(t, "m=concurrency=1")
	baseline := waitGrant(t, d.path("m", "acquire")).Sub(begin)
	holder := shHold(t, d.path("m", "acquire"))
	require.NoError(t, d.run.cmd.Process.Kill())
	d.run.awaitKilled(t)
	_, err := os.ReadDir(d.mnt)
	require.True(t, errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED), "kill -9 leaves a dead mount: ls gives %v", err)

	restart := time.Now()
	d.start(t)
	served := waitGrant(t, d.path("m", "acquire"))
	took := served.Sub(restart)
	t.Logf("FIGURE after kill -9 with a holder, the new rlfs mount served %s after it started (the first start: %s)", fmtMS(took), fmtMS(baseline))
	// Within 5 s, unless starting at all takes longer on this machine now.
	require.Less(t, took, max(5*time.Second, 2*baseline), "the restart serves within 5 s")
	require.False(t, holder.exited(), "the holder of the dead mount's call is still there")

	d.waitLog(t, "detached a dead rlfs mount")
	lines := d.logLines("detached a dead rlfs mount")
	require.Len(t, lines, 1)
	require.Contains(t, lines[0], "mountpoint="+d.mnt)
	require.Equal(t, 1, mountsAt(d.mnt), "one mount at %s: the new one", d.mnt)
	require.Equal(t, "3", d.status(t, "m")["grants_total"], "the first grant, the held call and the new grant")
	d.stop(t)
}

// TestMountpointReclaimRules: rlfs mount detaches only dead rlfs mounts, and
// as many as are stacked on its mountpoint; it refuses someone else's dead
// mount, and a live rlfs mount under a dead one.
func TestMountpointReclaimRules(t *testing.T) {
	t.Parallel()
	requireFUSE(t)

	t.Run("two dead rlfs mounts stacked", func(t *testing.T) {
		t.Parallel()
		d := newDaemon(t, "", "", nil, "m=1/s")
		require.NoError(t, os.MkdirAll(d.mnt, 0o755))
		deadFuseMount(t, d.mnt, "fuse.rlfs")
		deadFuseMount(t, d.mnt, "fuse.rlfs")
		require.Equal(t, 2, mountsAt(d.mnt))
		d.start(t)
		d.requireServes(t, "m")
		d.waitLog(t, "detached a dead rlfs mount")
		waitFor(t, "two detaches logged", func() bool { return len(d.logLines("detached a dead rlfs mount")) == 2 }, d.log.String)
		require.Equal(t, 1, mountsAt(d.mnt))
		d.stop(t)
		require.Equal(t, 0, mountsAt(d.mnt))
	})

	t.Run("someone else's dead mount", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		mnt := filepath.Join(dir, "mnt")
		require.NoError(t, os.MkdirAll(mnt, 0o755))
		deadFuseMount(t, mnt, "fuse.sshfs")
		f := runBadMount(t, "", "--db", filepath.Join(dir, "m.db"), "--meter", "m=1/s", mnt)
		require.Contains(t, f.rlfs, mnt)
		require.Contains(t, f.rlfs, "fuse.sshfs")
		require.Contains(t, f.rlfs, "umount -l "+mnt)
		require.Equal(t, 1, mountsAt(mnt), "rlfs leaves someone else's mount alone")
	})

	t.Run("live rlfs under a dead one", func(t *testing.T) {
		t.Parallel()
		live := startDaemon(t, "m=1/s")
		deadFuseMount(t, live.mnt, "fuse.rlfs")
		p := startProc(t, rlfsBin, "mount", "--db", filepath.Join(t.TempDir(), "other.db"), live.mnt)
		require.Error(t, p.wait(t, pollTimeout), "a second rlfs on a live mount must fail")
		require.Equal(t, 1, p.exitCode())
		require.Contains(t, p.stderr.String(), "detached a dead rlfs mount")
		require.Contains(t, p.stderr.String(), "rlfs: mountpoint "+live.mnt+" is busy")
		require.Equal(t, 1, mountsAt(live.mnt), "the live mount stays")
		live.requireServes(t, "m")
	})
}

// deadFuseMount mounts a FUSE filesystem of type fstype at dir whose
// connection is dead at once (its /dev/fuse descriptor is closed without a
// reply), as a daemon killed with kill -9 leaves its mount. Cleanup
// detaches whatever is left of it.
func deadFuseMount(t *testing.T, dir, fstype string) {
	t.Helper()
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	opts := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0", fd)
	err = unix.Mount("dead", dir, fstype, unix.MS_NOSUID|unix.MS_NODEV, opts)
	unix.Close(fd)
	require.NoError(t, err, "mount a dead %s at %s", fstype, dir)
	t.Cleanup(func() {
		for mountsAt(dir) > 0 {
			if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
				t.Errorf("umount -l %s: %v: %s", dir, err, out)
				return
			}
		}
	})
	_, err = os.Stat(dir)
	require.ErrorIs(t, err, syscall.ENOTCONN)
}

// mountsAt counts the mounts stacked at dir.
func mountsAt(dir string) int {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && unescapeMount(f[4]) == dir {
			n++
		}
	}
	return n
}
