package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSecondDaemonThroughHardLink pins a bug: the ownership lock was
// PATH.lock beside the database's path, so `rlfs mount --db LINK` on a hard
// link to a served database started a second daemon on the same file.
// The owner now flocks the database file too. A second daemon through a
// link stops before mounting with one line naming the owner (pid,
// mountpoint) and the name it serves the file under; so it does for the
// file the daemon rewrites after its database was deleted.
func TestSecondDaemonThroughHardLink(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=1/s")
	second := func(what string) {
		t.Helper()
		link := filepath.Join(t.TempDir(), "link.db")
		require.NoError(t, os.Link(d.db, link))
		mnt2 := filepath.Join(t.TempDir(), "mnt2")
		f := runBadMount(t, mnt2, "--db", link, "--meter", "x=1/s", mnt2)
		require.Equal(t, 1, f.code, "%s: %s", what, f.stderr)
		want := fmt.Sprintf("is served by pid %d (mounted at %s) under another name, %s (a hard link to the same file); stop it or pass --db", d.pid(), d.mnt, d.db)
		require.Contains(t, f.rlfs, want, what)
		require.NoFileExists(t, link+".lock", "%s: the refused daemon leaves no lock file", what)
		_, err := os.Stat(mnt2)
		require.True(t, err == nil || os.IsNotExist(err), "%s: %v", what, err)
	}
	second("a hard link to the served database")

	for _, f := range []string{d.db, d.db + "-wal", d.db + "-shm"} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			require.NoError(t, err)
		}
	}
	waitFor(t, "the daemon rewrites its deleted database", func() bool {
		return strings.Contains(d.log.String(), "database rewritten with the full state")
	}, func() string { return d.log.String() })
	second("a hard link to the rewritten database")

	out, code := sh(t, "cat "+d.path("m", "acquire"))
	require.Equal(t, 0, code, "the first daemon still serves: %s", out)
	require.Equal(t, "1", d.status(t, "m")["grants_total"])
}
