package test

// What a newcomer met following the docs on a fresh machine (issue 15,
// item 9), pinned: rlfs wait, lock files gone after a clean stop, modes
// logged in octal, a fleet host's journal beside its --db.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWaitReturnsOnceMounted: `rlfs wait MNT` started before the daemon
// returns once the meters are there (the next command lists them and
// reads a limits file), and counts no call.
func TestWaitReturnsOnceMounted(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	w := startProc(t, bash.need(t), "-c", `"$0" wait --timeout 90s "$1" && ls "$1" && cat "$1/demo/limits"`, rlfsBin, mnt)
	d := newDaemon(t, "", mnt, nil, "demo=2/1s")
	d.start(t)
	w.requireSuccess(t, pollTimeout)
	require.Equal(t, "demo\n2/1s\nconcurrency=1\n", w.stdout.String(), "what the commands after rlfs wait saw")
	require.Equal(t, "0", d.status(t, "demo")["grants_total"], "rlfs wait counted a call")
}

// TestWaitSaysWhatIsThere: a wait that times out exits 1 after its
// timeout and says what the mountpoint is: nothing mounted, another
// filesystem, or a dead rlfs mount (its daemon killed), which a new daemon
// reclaims; a wait started then returns once that one serves.
func TestWaitSaysWhatIsThere(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.Mkdir(empty, 0o755))
	requireWaitFails(t, empty, regexp.QuoteMeta("no filesystem is mounted there; check that rlfs mount runs (its log says why it stopped) and that MOUNTPOINT is the one it was given"))

	tmpfs := filepath.Join(dir, "tmpfs")
	require.NoError(t, os.Mkdir(tmpfs, 0o755))
	out, err := exec.Command("mount", "-t", "tmpfs", "none", tmpfs).CombinedOutput()
	require.NoError(t, err, "mount -t tmpfs: %s", out)
	t.Cleanup(func() { _ = exec.Command("umount", "-l", tmpfs).Run() })
	requireWaitFails(t, tmpfs, regexp.QuoteMeta("a tmpfs filesystem is mounted there, not rlfs; give the MOUNTPOINT of rlfs mount"))

	d := newDaemon(t, "", "", nil, "m=1/s")
	d.start(t)
	d.crash(t)
	requireWaitFails(t, d.mnt, `the rlfs mount there does not answer \((stat|open) `+regexp.QuoteMeta(d.mnt+": transport endpoint is not connected); check the daemon's log"))
	w := startProc(t, rlfsBin, "wait", d.mnt)
	d.start(t) // detaches the dead mount itself
	w.requireSuccess(t, pollTimeout)
	require.Empty(t, w.stdout.String()+w.stderr.String(), "rlfs wait prints nothing when the mount is ready")
}

// requireWaitFails runs rlfs wait --timeout 300ms on mnt and requires exit
// status 1, the one line naming the problem (why, a regular expression),
// and that it waited its timeout (and not much longer than a loaded
// machine needs).
func requireWaitFails(t *testing.T, mnt, why string) {
	t.Helper()
	start := time.Now()
	out, err := exec.Command(rlfsBin, "wait", "--timeout", "300ms", mnt).CombinedOutput()
	took := time.Since(start)
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "rlfs wait %s: %s", mnt, out)
	require.Equal(t, 1, ee.ExitCode(), "rlfs wait %s: %s", mnt, out)
	require.Regexp(t, "^"+regexp.QuoteMeta("rlfs: "+mnt+" is not ready after 300ms: ")+why+"\n$", string(out))
	require.GreaterOrEqual(t, took, 300*time.Millisecond, "rlfs wait gave up before its timeout")
	require.Less(t, took, loaded(300*time.Millisecond)+10*time.Second, "rlfs wait went on long after its timeout")
}

// TestCleanStopLeavesNoLockFiles: after SIGTERM the database's directory
// holds the database alone (no stale meters.db.lock, no journal, no WAL);
// the lock file a kill -9 leaves does not stop the next start, whose clean
// stop removes it. A fleet host's journal keeps no .lock either.
func TestCleanStopLeavesNoLockFiles(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=1/s")
	dir := filepath.Dir(d.db)
	require.FileExists(t, d.db+".lock", "the lock file while the daemon runs")
	waitGrant(t, d.path("m", "acquire"))
	d.stop(t)
	require.Equal(t, []string{"meters.db", "mnt"}, dirNames(t, dir), "what a clean stop leaves beside the database")

	d.start(t)
	d.kill9(t)
	require.FileExists(t, d.db+".lock", "kill -9 leaves the lock file")
	d.start(t)
	d.requireServes(t, "m")
	d.stop(t)
	require.Equal(t, []string{"meters.db", "mnt"}, dirNames(t, dir), "what a clean stop after a kill -9 leaves")

	srv := startRedis(t)
	h := startFleetDaemon(t, srv.URL(), "h1", nil, "m=1/s")
	journal := filepath.Join(filepath.Dir(h.mnt), "h1.journal")
	require.FileExists(t, journal+".lock", "the journal's lock while the host runs")
	h.stop(t)
	require.FileExists(t, journal, "the journal stays")
	require.NoFileExists(t, journal+".lock", "a clean stop removes the journal's lock file")
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	slices.Sort(names)
	return names
}

// TestModeLoggedInOctal: the log gives a meter's mode as chmod takes it,
// when mkdir creates the meter and when chmod changes it.
func TestModeLoggedInOctal(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	require.NoError(t, os.Mkdir(d.path("m"), 0o755))
	require.NoError(t, os.Chmod(d.path("m"), 0o750))
	d.waitLog(t, `msg="meter owner/mode changed" meter=m mode=0750 uid=0 gid=0`)
	require.Len(t, d.logLines(`msg="meter created" meter=m limits="concurrency=1" mode=0755 uid=0`), 1, "the mkdir's log line")
}

// TestFleetJournalBesideDB: a fleet host given --db keeps its journal
// beside that path, not beside the default database. A host whose journal
// an earlier rlfs kept at the default place keeps using it there, and the
// log says how to move it; moved so, it is used beside --db.
func TestFleetJournalBesideDB(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	srv := startRedis(t)
	dir := t.TempDir()
	oldDir, newDir := filepath.Join(dir, "default"), filepath.Join(dir, "state")
	for _, p := range []string{oldDir, newDir} {
		require.NoError(t, os.Mkdir(p, 0o755))
	}
	const name = "fleet-rlfs-h1.journal"
	fresh := &daemon{mnt: filepath.Join(dir, "mnt-h2"), meters: []string{"m=1/s"}, env: []string{"RLFS_DB=" + filepath.Join(oldDir, "meters.db")},
		extra: []string{"--store", srv.URL(), "--host", "h2", "--lease", "30s", "--db", filepath.Join(newDir, "h2.db")}}
	t.Cleanup(func() { fresh.cleanup(t) })
	fresh.start(t)
	require.FileExists(t, filepath.Join(newDir, "fleet-rlfs-h2.journal"), "a new host's journal beside --db")
	require.NoFileExists(t, filepath.Join(oldDir, "fleet-rlfs-h2.journal"), "nothing beside the default database")
	fresh.stop(t)

	d := &daemon{mnt: filepath.Join(dir, "mnt"), meters: []string{"m=1/s"}, env: []string{"RLFS_DB=" + filepath.Join(oldDir, "meters.db")},
		extra: []string{"--store", srv.URL(), "--host", "h1", "--lease", "30s"}}
	t.Cleanup(func() { d.cleanup(t) })
	d.start(t) // an earlier deployment: no --db, the journal beside the default database
	require.FileExists(t, filepath.Join(oldDir, name))
	d.stop(t)

	d.extra = append(d.extra, "--db", filepath.Join(newDir, "meters.db"))
	d.start(t)
	oldJ, newJ := filepath.Join(oldDir, name), filepath.Join(newDir, name)
	d.waitLog(t, "this host's journal is still at "+oldJ+", beside the default database, where rlfs kept it before; it stays in use. "+
		"To keep it beside the database: stop rlfs, mv "+oldJ+" "+newJ+", start rlfs again (or pass --journal "+oldJ+" to keep it where it is)")
	require.FileExists(t, oldJ+".lock", "the old journal is the one in use")
	require.NoFileExists(t, newJ, "no second journal beside --db")
	d.stop(t)

	require.NoError(t, os.Rename(oldJ, newJ))
	d.start(t)
	require.FileExists(t, newJ+".lock", "the moved journal is the one in use")
	// The mounted line may reach the log just after the mount shows.
	waitFor(t, "the mounted line names the journal", func() bool {
		runs := strings.Split(d.log.String(), "--- run ")
		return strings.Contains(runs[len(runs)-1], "journal="+newJ)
	}, d.log.String)
	runs := strings.Split(d.log.String(), "--- run ")
	require.NotContains(t, runs[len(runs)-1], "journal is still at", "no warning once moved")
}
