package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAllowOtherWithoutFuseConf pins a bug: rlfs mount --allow-other run by
// a user other than root, where /etc/fuse.conf lacks user_allow_other,
// failed with "fusermount exited with code 256" (a raw wait status) and
// blamed /dev/fuse. It now stops before mounting with one line naming
// /etc/fuse.conf and user_allow_other, and creates nothing.
func TestAllowOtherWithoutFuseConf(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	if b, err := os.ReadFile("/etc/fuse.conf"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			line, _, _ = strings.Cut(line, "#")
			if strings.TrimSpace(line) == "user_allow_other" {
				t.Skip("/etc/fuse.conf has user_allow_other here: the refusal cannot be shown")
			}
		}
	}
	user, uid, gid := testUser(t)
	userBin := reachableCopy(t, rlfsBin)
	base := t.TempDir()
	makeReachable(t, base)
	require.NoError(t, os.Chown(base, uid, gid))
	db, mnt := filepath.Join(base, "meters.db"), filepath.Join(base, "mnt")
	prefix := []string{"setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups", "--", userBin}

	f := runBadMountCmd(t, mnt, prefix, "--allow-other", "--db", db, "--meter", "m=1/s", mnt)
	require.Equal(t, 1, f.code, f.stderr)
	require.Contains(t, f.rlfs, "--allow-other as a non-root user")
	require.Contains(t, f.rlfs, "user_allow_other in /etc/fuse.conf")
	require.Contains(t, f.rlfs, "add that line to /etc/fuse.conf")
	require.NotContains(t, f.rlfs, "/dev/fuse")
	require.NotContains(t, f.rlfs, "code 256")
	es, err := os.ReadDir(base)
	require.NoError(t, err)
	require.Empty(t, es, "the refused start created files")
}
