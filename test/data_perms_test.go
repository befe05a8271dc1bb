package test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// startPermsDaemon starts a daemon with --allow-other and makes its
// mountpoint reachable by another user.
func startPermsDaemon(t *testing.T, meters ...string) *daemon {
	t.Helper()
	d := startDaemonFlags(t, []string{"--allow-other"}, meters...)
	for dir := filepath.Dir(d.mnt); dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		require.NoError(t, os.Chmod(dir, 0o755))
	}
	return d
}

// TestDataPermissions, with a real unprivileged user: reading a data file
// needs the meter's read permission, changing data/ (write, create,
// remove, rename) its write permission; data/ and its files show the
// meter's owner and mode (less the execute bits for files), after a chmod
// or chown of the meter too.
func TestDataPermissions(t *testing.T) {
	t.Parallel()
	user, uid, _ := testUser(t)
	d := startPermsDaemon(t, "m=concurrency=1")
	data := d.path("m", "data")
	require.NoError(t, os.WriteFile(data+"/f", []byte("root's\n"), 0o644))

	require.NoError(t, os.Chmod(d.path("m"), 0o755)) // others: read only
	requireOwnerMode(t, data, 0, 0o755|os.ModeDir)
	requireOwnerMode(t, data+"/f", 0, 0o644)
	out, code := asUser(t, user, "cat "+data+"/f && ls "+data)
	require.Equal(t, 0, code, out)
	require.Equal(t, "root's\nf\n", out)
	for _, script := range []string{"echo x > " + data + "/f", "echo x >> " + data + "/f", "echo x > " + data + "/new",
		"rm -f " + data + "/f", "mv " + data + "/f " + data + "/g", "truncate -s 0 " + data + "/f"} {
		out, code = asUser(t, user, script)
		require.NotEqual(t, 0, code, "%s as %s on a 0755 meter of root's: %s", script, user, out)
		require.Contains(t, out, "Permission denied", script)
	}
	require.Equal(t, []string{"f"}, d.dataNames(t, "m"))
	requireData(t, data+"/f", "root's\n")

	require.NoError(t, os.Chmod(d.path("m"), 0o700)) // others: nothing
	requireOwnerMode(t, data+"/f", 0, 0o600)
	out, code = asUser(t, user, "cat "+data+"/f")
	require.NotEqual(t, 0, code, out)
	require.Contains(t, out, "Permission denied")

	require.NoError(t, os.Chmod(d.path("m"), 0o777)) // others: everything
	out, code = asUser(t, user, "echo theirs > "+data+"/f && echo new > "+data+"/new && mv "+data+"/new "+data+"/g && cat "+data+"/f")
	require.Equal(t, 0, code, out)
	require.Equal(t, "theirs\n", out)
	require.Equal(t, []string{"f", "g"}, d.dataNames(t, "m"))

	require.NoError(t, os.Chown(d.path("m"), uid, 0)) // the user's own meter
	require.NoError(t, os.Chmod(d.path("m"), 0o700))
	requireOwnerMode(t, data, uid, 0o700|os.ModeDir)
	requireOwnerMode(t, data+"/g", uid, 0o600)
	out, code = asUser(t, user, "rm "+data+"/g && echo mine >> "+data+"/f && cat "+data+"/f")
	require.Equal(t, 0, code, out)
	require.Equal(t, "theirs\nmine\n", out)
	require.Equal(t, []string{"f"}, d.dataNames(t, "m"))
}

// requireOwnerMode requires file to show owner uid and mode.
func requireOwnerMode(t *testing.T, file string, uid int, mode os.FileMode) {
	t.Helper()
	st, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, mode, st.Mode()&(os.ModeDir|os.ModePerm), "mode of %s", file)
	require.Equal(t, uint32(uid), st.Sys().(*syscall.Stat_t).Uid, "owner of %s", file)
}
