package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFaultDatabaseDeleted: while three clients make calls, the database,
// its WAL and shared memory and both journal files are deleted. Within
// seconds (it checks every second: loaded(1s) allowed) the daemon logs that the file was deleted and that it rewrote it with the
// full state; the calls go on. After a stop and a restart on the new file,
// both meters are there with their limits (one of them made at run time
// with mkdir and its limits file, so it can come from nowhere but the
// database) and grants_total is exactly what the daemon counted.
func TestFaultDatabaseDeleted(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=50/1s,concurrency=0")
	extra := d.path("extra")
	out, code := sh(t, fmt.Sprintf("mkdir %s && echo '3/1s' > %s/limits && cat %s/acquire", extra, extra, extra))
	require.Equal(t, 0, code, out)

	acq := d.path("m", "acquire")
	logs, errDir := t.TempDir(), t.TempDir()
	stopFile := filepath.Join(t.TempDir(), "stop")
	var clients []*proc
	for i := range 3 {
		id := fmt.Sprintf("py%d", i)
		clients = append(clients, startPy(t, faultsPy(), "loop", acq, id, "0.005", stopFile,
			filepath.Join(logs, id+".log"), filepath.Join(errDir, id+".errs")))
	}
	grants := func() int {
		n, err := strconv.Atoi(d.status(t, "m")["grants_total"])
		require.NoError(t, err)
		return n
	}
	waitFor(t, "20 grants on m", func() bool { return grants() >= 20 }, nil)

	deleted := time.Now()
	before := grants()
	for _, f := range []string{d.db, d.db + "-wal", d.db + "-shm", d.db + ".grants-0", d.db + ".grants-1"} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			require.NoError(t, err)
		}
	}
	const rewritten = "database rewritten with the full state"
	waitFor(t, "the daemon logs that it rewrote the database", func() bool {
		return strings.Contains(d.log.String(), rewritten)
	}, func() string { return d.log.String() })
	noticed := time.Since(deleted)
	require.Less(t, noticed, loaded(time.Second), "the deleted database is rewritten within seconds (it is checked every second)")
	require.Contains(t, d.log.String(), "database file deleted or replaced")
	require.FileExists(t, d.db)
	waitFor(t, "20 more grants after the rewrite", func() bool { return grants() >= before+20 }, nil)

	require.NoError(t, os.WriteFile(stopFile, nil, 0o644))
	for _, p := range clients {
		p.requireSuccess(t, pollTimeout)
	}
	require.Empty(t, readErrs(t, errDir), "client errors while the database was deleted")
	d.waitStatus(t, "m", "in_progress", "0 of unlimited")
	total := d.status(t, "m")["grants_total"]
	require.Equal(t, strconv.Itoa(len(readCalls(t, logs))), total, "grants_total is every grant the clients logged")
	mLimits, err := os.ReadFile(d.path("m", "limits"))
	require.NoError(t, err)

	d.restart(t)
	st := d.status(t, "m")
	require.Equal(t, total, st["grants_total"], "grants_total survives the deletion and a restart")
	got, err := os.ReadFile(d.path("m", "limits"))
	require.NoError(t, err)
	require.Equal(t, string(mLimits), string(got))
	xst := d.status(t, "extra")
	require.Equal(t, "3/1s,concurrency=1", xst["limits"], "a meter made at run time survives the deletion")
	require.Equal(t, "1", xst["grants_total"])
	t.Logf("FIGURE db-deleted: rewritten %s after the deletion (checked every second); %s grants (%d before the deletion) and both meters intact after a restart",
		fmtMS(noticed), total, before)
}

// readErrs reads the lines of the *.errs files faults.py loop wrote in dir.
func readErrs(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.errs"))
	require.NoError(t, err)
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" {
				out = append(out, filepath.Base(f)+": "+l)
			}
		}
	}
	return out
}

// TestFaultClockSetBack: a database whose stored call times lie 1 h in the
// future, as when the wall clock was set back 1 h across a restart. The
// test makes a call on 1/5s, stops the daemon, shifts every stored time of
// the meter's calls 1 h ahead with Python's sqlite3 module, and restarts.
// The next caller waits about PER (5 s) from the restart, not an hour (at
// most 1.5×PER from when the mount is up: less than the two PERs of a time
// clamped to the restart plus PER); and the call is not forgotten either:
// its time is clamped to the restart, so the wait is a full PER from there
// (strict).
func TestFaultClockSetBack(t *testing.T) {
	t.Parallel()
	const per = 5 * time.Second
	d := startDaemon(t, "m=1/5s")
	_, code := sh(t, "cat "+d.path("m", "acquire"))
	require.Equal(t, 0, code)
	d.waitStatus(t, "m", "in_progress", "0 of 1")
	d.stop(t)
	for _, j := range []string{d.db + ".grants-0", d.db + ".grants-1"} {
		if fi, err := os.Stat(j); err == nil {
			require.Zero(t, fi.Size(), "%s holds records after a clean stop: they would be replayed over the crafted times", j)
		}
	}

	const shift = `
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
cols = [r[1] for r in db.execute("PRAGMA table_info(calls)")]
assert {"meter", "granted_ns", "done_ns"} <= set(cols), cols
n = db.execute("UPDATE calls SET granted_ns = granted_ns + ?, done_ns = done_ns + ? WHERE meter = 'm'",
               (3600 * 10**9, 3600 * 10**9)).rowcount
db.commit()
print(n, *db.execute("SELECT MAX(done_ns) FROM calls WHERE meter = 'm'").fetchone())
db.close()
`
	out, err := exec.Command(python3.need(t), "-c", shift, d.db).CombinedOutput()
	require.NoError(t, err, "shift the stored times: %s", out)
	f := strings.Fields(string(out))
	require.Len(t, f, 2, "python printed %q", out)
	require.NotEqual(t, "0", f[0], "no stored call of m to shift")
	doneNS, err := strconv.ParseInt(f[1], 10, 64)
	require.NoError(t, err)
	require.Greater(t, time.Until(time.Unix(0, doneNS)), 50*time.Minute, "the stored completion lies an hour ahead")

	restarted := time.Now()
	d.start(t)
	up := time.Now()
	logs := t.TempDir()
	next := startClient(t, d.path("m", "acquire"), logs, client{kind: "go", id: "next", calls: 1})
	next.requireSuccess(t, per+pollTimeout)
	calls := readCalls(t, logs)
	require.Len(t, calls, 1)
	g := calls[0].grant
	t.Logf("next call granted %s after the restart began, %s after the mount was up", fmtMS(g.Sub(restarted)), fmtMS(g.Sub(up)))
	require.Less(t, g.Sub(up), per+per/2, "no wait longer than PER after a clock set back 1 h")
	require.GreaterOrEqual(t, g.Sub(restarted), per-tolerance(per), "the future call still counts, clamped to the restart")
	require.Equal(t, "2", d.status(t, "m")["grants_total"])
	t.Logf("FIGURE clock-set-back: stored completion 1 h ahead; next caller on 1/5s granted %s after the restart (not an hour)", fmtMS(g.Sub(restarted)))
}

// TestFaultDatabaseReadOnly completes the bad-database cases of
// badinput_test.go (corrupt, missing directory, served by another daemon)
// with databases that cannot be written, each a real rlfs database with a
// meter and a call: on a read-only file system (EROFS, a read-only bind
// mount), immutable (chattr +i: EPERM even for root), and for a daemon run
// as an unprivileged user (setpriv): a root-owned 0444 file (EACCES), and
// a root-owned 0555 directory (EACCES for the lock and journal files).
// Each stops rlfs mount before mounting with exit status 1 and one rlfs:
// line naming the path, the problem and a fix; nothing in the directory is
// created, changed or removed.
func TestFaultDatabaseReadOnly(t *testing.T) {
	t.Parallel()
	// A real database to refuse.
	src := startDaemon(t, "m=1/s")
	_, code := sh(t, "cat "+src.path("m", "acquire"))
	require.Equal(t, 0, code)
	src.stop(t)
	golden, err := os.ReadFile(src.db)
	require.NoError(t, err)

	user, _, _ := testUser(t)
	userBin := reachableCopy(t, rlfsBin) // a copy of rlfs the unprivileged user can run

	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir, db string) // dir holds db, a copy of golden
		user  bool
		want  []string // in the rlfs: line besides the path
		what  string   // the path the line names: "db" or "dir"
	}{
		{"read-only file system", func(t *testing.T, dir, db string) {
			out, err := exec.Command("mount", "--bind", dir, dir).CombinedOutput()
			require.NoError(t, err, "mount --bind: %s", out)
			t.Cleanup(func() {
				if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
					t.Errorf("umount %s: %v: %s", dir, err, out)
				}
			})
			out, err = exec.Command("mount", "-o", "remount,bind,ro", dir).CombinedOutput()
			require.NoError(t, err, "remount ro: %s", out)
		}, false, []string{"read-only file system", "--db"}, "dir"},
		{"immutable file", func(t *testing.T, dir, db string) {
			out, err := exec.Command("chattr", "+i", db).CombinedOutput()
			if err != nil {
				t.Skipf("chattr +i is not supported here: %v: %s", err, out)
			}
			t.Cleanup(func() { _ = exec.Command("chattr", "-i", db).Run() })
		}, false, []string{"operation not permitted", "--db"}, "db"},
		{"0444 file, unprivileged daemon", func(t *testing.T, dir, db string) {
			require.NoError(t, os.Chmod(db, 0o444))
			_, uid, gid := testUser(t)
			require.NoError(t, os.Chown(dir, uid, gid)) // the directory is the user's; the file root's
		}, true, []string{"permission denied", "uid 0", "--db"}, "db"},
		{"0555 directory, unprivileged daemon", func(t *testing.T, dir, db string) {
			require.NoError(t, os.Chmod(db, 0o644))
			require.NoError(t, os.Chmod(dir, 0o555))
		}, true, []string{"permission denied", "--db"}, "dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "db")
			require.NoError(t, os.Mkdir(dir, 0o755))
			db := filepath.Join(dir, "meters.db")
			require.NoError(t, os.WriteFile(db, golden, 0o644))
			mnt := filepath.Join(base, "mnt")
			var prefix []string
			if tc.user {
				makeReachable(t, base)
				prefix = []string{"setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups", "--", userBin}
			}
			tc.setup(t, dir, db)
			before := dirState(t, dir)
			f := runBadMountCmd(t, mnt, prefix, "--db", db, "--meter", "m=1/s", mnt)
			require.Equal(t, 1, f.code)
			named := db
			if tc.what == "dir" {
				named = dir
			}
			require.Contains(t, f.rlfs, named)
			for _, w := range tc.want {
				require.Contains(t, f.rlfs, w)
			}
			require.Equal(t, before, dirState(t, dir), "the refused start left the database directory as it was")
			t.Logf("FIGURE bad-db %s: %s", tc.name, f.rlfs)
		})
	}
}

// makeReachable makes dir and its parents up to the temporary directory
// traversable by every user (t.TempDir() is 0700).
func makeReachable(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		require.NoError(t, err)
		require.NoError(t, os.Chmod(d, fi.Mode().Perm()|0o055))
	}
}

// reachableCopy copies the executable bin into a directory every user can
// reach (the test binaries live in a 0700 directory) and returns its path.
// cp writes the copy, not this process: a file this process held open for
// writing would be inherited by any child another test forks meanwhile, and
// executing the copy then fails with ETXTBSY until that child execs (seen in
// CI: "setpriv: failed to execute …/rlfs: Text file busy").
func reachableCopy(t *testing.T, bin string) string {
	t.Helper()
	dir := t.TempDir()
	makeReachable(t, dir)
	p := filepath.Join(dir, filepath.Base(bin))
	out, err := exec.Command("cp", bin, p).CombinedOutput()
	require.NoError(t, err, "cp %s %s: %s", bin, p, out)
	require.NoError(t, os.Chmod(p, 0o755))
	return p
}
