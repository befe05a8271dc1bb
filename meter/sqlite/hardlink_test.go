package sqlite_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/sqlite"
)

// TestHardLinkIsLocked pins a bug: the ownership lock was PATH.lock beside
// the (resolved) path, and a hard link to a served database has another
// path, so a second owner could open it. The owner flocks the database
// file too; Open under another name fails with ErrLocked, naming the owner
// (pid, mountpoint) and the name it serves the file under.
func TestHardLinkIsLocked(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "meters.db")
	s, err := sqlite.Open(path, sqlite.Options{Mountpoint: "/mnt/rl"})
	require.NoError(t, err)
	defer s.Close()
	link := filepath.Join(t.TempDir(), "other.db")
	require.NoError(t, os.Link(path, link))

	_, err = sqlite.Open(link, sqlite.Options{Mountpoint: "/mnt/two"})
	require.ErrorIs(t, err, sqlite.ErrLocked, "Open through a hard link")
	want := fmt.Sprintf("sqlite: %s is served by pid %d (mounted at /mnt/rl) under another name, %s (a hard link to the same file); stop it or pass --db", link, os.Getpid(), path)
	require.Equal(t, want, err.Error())
	_, err = os.Stat(link + ".lock")
	require.ErrorIs(t, err, os.ErrNotExist, "the refused Open leaves no lock file beside the link")

	// Once the owner closes, the other name may be served.
	require.NoError(t, s.Close())
	s2, err := sqlite.Open(link, sqlite.Options{})
	require.NoError(t, err, "Open through the link after the owner closed")
	require.NoError(t, s2.Close())
}

// TestRecreatedDatabaseIsLocked: the file the daemon writes after its
// database was deleted (Recreate) takes the flock too, so a hard link to
// the new file does not let a second owner in.
func TestRecreatedDatabaseIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meters.db")
	s, err := sqlite.Open(path, sqlite.Options{Mountpoint: "/mnt/rl"})
	require.NoError(t, err)
	defer s.Close()
	reg, err := meter.OpenLocal(s, meter.Options{})
	require.NoError(t, err)
	_, err = reg.Create("email", meter.DefaultSpec(), meter.DefaultAttr())
	require.NoError(t, err)

	require.NoError(t, os.Remove(path))
	require.True(t, s.Missing())
	require.NoError(t, reg.Rewrite(s.Recreate))
	link := filepath.Join(t.TempDir(), "other.db")
	require.NoError(t, os.Link(path, link))
	_, err = sqlite.Open(link, sqlite.Options{})
	require.ErrorIs(t, err, sqlite.ErrLocked, "Open through a hard link to the recreated file")
	require.Contains(t, err.Error(), "under another name, "+path)

	// The store still works on the new file.
	_, err = reg.Create("api", meter.DefaultSpec(), meter.DefaultAttr())
	require.NoError(t, err)
}
