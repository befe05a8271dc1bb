package sqlite_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
	"github.com/rlfs/rlfs/meter/sqlite"
)

var holder = meter.Holder{PID: 42, UID: 1000, GID: 100, Cmd: "sendmail -t"}

// TestReadOnlyWhileOwned: `rlfs status --db` reads a database a daemon
// owns, sees its commits, cannot write, and does not disturb it.
func TestReadOnlyWhileOwned(t *testing.T) {
	w, path := open(t, sqlite.Options{Mountpoint: "/mnt/rl"})
	require.NoError(t, w.CreateMeter("email", meter.DefaultSpec(), meter.DefaultAttr()))
	require.NoError(t, w.Grant("email", meter.Call{ID: 1, GrantedAt: metertest.Epoch, Holder: holder}, time.Time{}, time.Time{}))

	r, err := sqlite.OpenReadOnly(path)
	require.NoError(t, err, "OpenReadOnly while owned")
	defer r.Close()
	got, err := r.Load()
	require.NoError(t, err, "Load (read-only)")
	require.Len(t, got, 1)
	require.Len(t, got[0].State.Calls, 1)

	// The owner writes on; the reader sees it on its next Load.
	require.NoError(t, w.Grant("email", meter.Call{ID: 2, GrantedAt: metertest.Epoch.Add(time.Second), Holder: holder}, time.Time{}, time.Time{}))
	got, err = r.Load()
	require.NoError(t, err, "Load (read-only) after another grant")
	require.Len(t, got[0].State.Calls, 2)
	require.Equal(t, uint64(2), got[0].Grants)

	for what, err := range map[string]error{
		"CreateMeter": r.CreateMeter("x", meter.DefaultSpec(), meter.DefaultAttr()),
		"SetSpec":     r.SetSpec("email", meter.DefaultSpec()),
		"SetAttr":     r.SetAttr("email", meter.DefaultAttr()),
		"DeleteMeter": r.DeleteMeter("email"),
		"Grant":       r.Grant("email", meter.Call{ID: 3, GrantedAt: metertest.Epoch}, time.Time{}, time.Time{}),
		"Complete":    r.Complete("email", meter.Call{ID: 1, DoneAt: metertest.Epoch}),
		"Retire":      r.Retire("email", metertest.Epoch, false, nil),
	} {
		require.ErrorIs(t, err, sqlite.ErrReadOnly, "%s on a read-only store", what)
	}
	require.NoError(t, r.Close(), "Close (read-only)")

	// The owner still owns it, and the reader's Close did not checkpoint or lock.
	_, err = sqlite.Open(path, sqlite.Options{})
	require.ErrorIs(t, err, sqlite.ErrLocked, "Open while owned, after a reader came and went")
	require.NoError(t, w.Grant("email", meter.Call{ID: 3, GrantedAt: metertest.Epoch.Add(2 * time.Second), Holder: holder}, time.Time{}, time.Time{}))
}

// TestReadOnlyAfterCleanStop: a database whose daemon stopped (no -wal or
// -shm left) is read without creating files the owner would not have.
func TestReadOnlyAfterCleanStop(t *testing.T) {
	w, path := open(t, sqlite.Options{})
	require.NoError(t, w.CreateMeter("email", meter.DefaultSpec(), meter.DefaultAttr()))
	require.NoError(t, w.Close())
	before := snapshotDir(t, filepath.Dir(path))

	r, err := sqlite.OpenReadOnly(path)
	require.NoError(t, err, "OpenReadOnly after a clean stop")
	got, err := r.Load()
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.NoError(t, r.Close())
	require.Equal(t, before, snapshotDir(t, filepath.Dir(path)), "files after a read-only open")
}

// TestReadOnlyAfterCrash: the files a killed daemon left (database, -wal,
// -shm) are read with every committed grant.
func TestReadOnlyAfterCrash(t *testing.T) {
	w, path := open(t, sqlite.Options{})
	require.NoError(t, w.CreateMeter("email", meter.DefaultSpec(), meter.DefaultAttr()))
	for i := range 10 {
		require.NoError(t, w.Grant("email", meter.Call{ID: uint64(i + 1), GrantedAt: metertest.Epoch.Add(time.Duration(i) * time.Second), Holder: holder}, time.Time{}, time.Time{}))
	}
	// Copy the files as they are while the daemon runs: a crash image.
	crash := filepath.Join(t.TempDir(), "meters.db")
	for _, suffix := range []string{"", "-wal", "-shm", ".grants-0", ".grants-1"} {
		b, err := os.ReadFile(path + suffix)
		require.NoError(t, err, "read %s", path+suffix)
		require.NoError(t, os.WriteFile(crash+suffix, b, 0o644))
	}
	r, err := sqlite.OpenReadOnly(crash)
	require.NoError(t, err, "OpenReadOnly of a crash image")
	got, err := r.Load()
	require.NoError(t, err)
	require.NoError(t, r.Close())
	require.Len(t, got, 1)
	require.Len(t, got[0].State.Calls, 10, "calls read from a crash image")

	// And the next daemon recovers them too.
	s, err := sqlite.Open(crash, sqlite.Options{})
	require.NoError(t, err, "Open of a crash image")
	got, err = s.Load()
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.Equal(t, uint64(10), got[0].Grants, "grants after recovery")
}

func TestReadOnlyMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meters.db")
	_, err := sqlite.OpenReadOnly(path)
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.EqualError(t, err, "sqlite: database "+path+" does not exist; check the path or pass --db")
	_, err = os.Stat(path)
	require.ErrorIs(t, err, fs.ErrNotExist, "OpenReadOnly created the database")
}

func TestReadOnlyGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meters.db")
	require.NoError(t, os.WriteFile(path, []byte("garbage"), 0o644))
	_, err := sqlite.OpenReadOnly(path)
	require.ErrorIs(t, err, sqlite.ErrCorrupt)
}
