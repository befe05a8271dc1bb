package test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFilesInsideMountpointRefused pins a bug: `rlfs mount --db MNT/x.db
// MNT` mounted over its own database; a second later the watcher found the
// file "deleted" (the mount hides it) and rewrote it through the mount while
// holding the registry lock, which the mount's own lookups need: a deadlock
// that only aborting the connection ended. A database, --config or
// --cpuprofile at or below the mountpoint (through a symlink too, from
// $RLFS_DB or the config's db too) is now refused before mounting, with one
// line naming the problem and the fix; nothing is created in the mountpoint.
func TestFilesInsideMountpointRefused(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	for _, tc := range []struct {
		name string
		env  string // RLFS_DB=… when set
		args func(dir, mnt string) []string
		want []string
	}{
		{"db inside", "", func(dir, mnt string) []string { return []string{"--db", mnt + "/x.db", mnt} },
			[]string{"database", "inside the mountpoint", "--db"}},
		{"db at the mountpoint", "", func(dir, mnt string) []string { return []string{"--db", mnt, mnt} },
			[]string{"database", "inside the mountpoint"}},
		{"db deeper, missing dir", "", func(dir, mnt string) []string { return []string{"--db", mnt + "/a/b/x.db", mnt} },
			[]string{"inside the mountpoint"}},
		{"db through a symlink", "", func(dir, mnt string) []string {
			link := filepath.Join(dir, "link")
			if err := os.Symlink(mnt, link); err != nil {
				panic(err)
			}
			return []string{"--db", link + "/x.db", mnt}
		}, []string{"inside the mountpoint"}},
		{"db from RLFS_DB", "x.db", func(dir, mnt string) []string { return []string{mnt} },
			[]string{"$RLFS_DB", "inside the mountpoint", "RLFS_DB"}},
		{"db from the config", "", func(dir, mnt string) []string {
			cfg := filepath.Join(dir, "rlfs.toml")
			if err := os.WriteFile(cfg, []byte("db = \""+mnt+"/x.db\"\n"), 0o644); err != nil {
				panic(err)
			}
			return []string{"--config", cfg, mnt}
		}, []string{"inside the mountpoint", "rlfs.toml"}},
		{"config inside", "", func(dir, mnt string) []string {
			cfg := filepath.Join(mnt, "rlfs.toml")
			if err := os.WriteFile(cfg, []byte("[meters]\nm = \"1/s\"\n"), 0o644); err != nil {
				panic(err)
			}
			return []string{"--db", dir + "/x.db", "--config", cfg, mnt}
		}, []string{"--config", "inside the mountpoint"}},
		{"cpuprofile inside", "", func(dir, mnt string) []string {
			return []string{"--db", dir + "/x.db", "--cpuprofile", mnt + "/cpu.prof", mnt}
		}, []string{"--cpuprofile", "inside the mountpoint"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			mnt := filepath.Join(dir, "mnt")
			require.NoError(t, os.MkdirAll(mnt, 0o755))
			args := tc.args(dir, mnt)
			before := dirState(t, mnt)
			var prefix []string
			if tc.env != "" {
				prefix = []string{"env", "RLFS_DB=" + filepath.Join(mnt, tc.env), rlfsBin}
			}
			start := time.Now()
			f := refuseWithoutHang(t, mnt, prefix, args...)
			t.Logf("FIGURE refused after %s: %s", fmtMS(time.Since(start)), f.rlfs)
			require.Equal(t, 1, f.code)
			for _, w := range append(tc.want, mnt) {
				require.Contains(t, f.rlfs, w)
			}
			require.Equal(t, before, dirState(t, mnt), "nothing created in the mountpoint")
		})
	}
}

// TestDBBesideMountpointServes: a database in the directory that holds the
// mountpoint, or in a directory whose name starts like the mountpoint's, is
// not inside it and is served as usual.
func TestDBBesideMountpointServes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := newDaemon(t, filepath.Join(dir, "mnt-db", "x.db"), filepath.Join(dir, "mnt"), nil, "m=1/s")
	require.NoError(t, os.MkdirAll(filepath.Dir(d.db), 0o755))
	d.start(t)
	d.requireServes(t, "m")
	d.stop(t)
}

// refuseWithoutHang is runBadMountCmd for an rlfs that may deadlock on its
// own mount (see abortIfHung).
func refuseWithoutHang(t *testing.T, mnt string, prefix []string, args ...string) failedMount {
	t.Helper()
	defer abortIfHung(t, mnt, 10*time.Second)()
	return runBadMountCmd(t, mnt, prefix, args...)
}

// abortIfHung aborts the FUSE connection of the mount at mnt unless the
// returned stop is called within after. A daemon deadlocked on its own mount
// waits for a FUSE request it sent to itself, which not even SIGKILL ends;
// the abort does, so that a test of that bug fails instead of hanging.
func abortIfHung(t *testing.T, mnt string, after time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-done:
		case <-time.After(after):
			if dev, ok := mountDev(mnt); ok {
				t.Logf("%s still busy after %v: aborting its FUSE connection", mnt, after)
				abortConnection(t, dev)
			}
		}
	}()
	return func() { close(done); <-finished }
}

// TestDBMovedIntoMountNotRewritten: the database's directory replaced, while
// the daemon runs, by a symbolic link into the daemon's own mount. The
// watcher then finds the database "deleted"; rewriting it there would call
// into the mount while holding the registry lock (the deadlock above). The
// daemon logs the problem instead, keeps serving, and rewrites nothing
// until the directory is back.
func TestDBMovedIntoMountNotRewritten(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dbDir := filepath.Join(dir, "state")
	require.NoError(t, os.MkdirAll(dbDir, 0o755))
	d := newDaemon(t, filepath.Join(dbDir, "x.db"), filepath.Join(dir, "mnt"), nil, "m=concurrency=0")
	d.start(t)
	defer abortIfHung(t, d.mnt, 15*time.Second)()
	aside := filepath.Join(dir, "state.aside")
	require.NoError(t, os.Rename(dbDir, aside))
	require.NoError(t, os.Symlink(d.mnt, dbDir))
	waitFor(t, "the daemon logs that the database leads into its mount", func() bool {
		return len(d.logLines("leads into the mount")) > 0 || !d.alive()
	}, d.log.String)
	// Within the 10 s that a deadlocked daemon would need to show it.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		d.requireServes(t, "m")
	}
	require.Len(t, d.logLines("leads into the mount"), 1, "logged once, not every second")
	require.Empty(t, d.logLines("rewritten"))

	require.NoError(t, os.Remove(dbDir))
	require.NoError(t, os.Rename(aside, dbDir))
	d.requireServes(t, "m")
	d.stop(t)
	require.FileExists(t, d.db)
}
