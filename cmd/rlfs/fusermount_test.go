package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAllowOtherNeedsFuseConf pins a bug: a non-root rlfs mount
// --allow-other without user_allow_other in /etc/fuse.conf blamed /dev/fuse
// (fusermount3 refused; rlfs only saw its exit status). rlfs now reads
// fuse.conf as fusermount3 does and names it, before mounting.
func TestAllowOtherNeedsFuseConf(t *testing.T) {
	dir := t.TempDir()
	conf := func(name, text string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
		return p
	}
	missing := filepath.Join(dir, "missing.conf")
	without := conf("without.conf", "# mount_max = 1000\n#user_allow_other\n")
	with := conf("with.conf", "# comment\n  user_allow_other   # let others in\n")

	require.NoError(t, checkAllowOther(true, 0, missing), "root needs no user_allow_other")
	require.NoError(t, checkAllowOther(false, 1000, missing), "no --allow-other, no check")
	require.NoError(t, checkAllowOther(true, 1000, with))
	for file, why := range map[string]string{missing: "which does not exist", without: "which has no such line"} {
		err := checkAllowOther(true, 1000, file)
		require.Error(t, err, file)
		require.Contains(t, err.Error(), "needs the line user_allow_other in "+file+", "+why)
		require.Contains(t, err.Error(), "add that line to "+file)
		require.NotContains(t, err.Error(), "/dev/fuse")
	}
}

// TestMountErrorHasNoWaitStatus pins a bug: a failed fusermount3 showed as
// "fusermount exited with code 256" (go-fuse prints the raw wait status)
// and blamed /dev/fuse. The exit status is decoded and the message points
// at fusermount3's own line above it.
func TestMountErrorHasNoWaitStatus(t *testing.T) {
	err := mountError(errors.New("fsnode: mount /mnt/rl: fusermount exited with code 256\n"), "/mnt/rl", 1000)
	require.Equal(t, "cannot mount /mnt/rl: fusermount3 refused (it exited with status 1; its reason is the line above); "+
		"as a non-root user rlfs mounts through fusermount3, which must be installed setuid root (apt-get install fuse3) and needs a mountpoint you own; or run rlfs as root", err.Error())

	_, lookErr := exec.LookPath("/nonexistent/fusermount")
	err = mountError(lookErr, "/mnt/rl", 1000)
	require.Contains(t, err.Error(), "cannot mount /mnt/rl: fusermount3 is not installed; ")
	require.NotContains(t, err.Error(), "/dev/fuse")

	err = mountError(errors.New("fsnode: mount /mnt/rl: no such device"), "/mnt/rl", 0)
	require.Contains(t, err.Error(), "/dev/fuse exists", "as root, /dev/fuse is what to check")
}
