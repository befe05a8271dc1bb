package sqlite_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
	"github.com/rlfs/rlfs/meter/sqlite"
)

// syncGrants is how many grants the child process makes, one at a time.
const syncGrants = 5

// TestSyncFull proves what --sync full promises: every grant is on disk
// (fdatasync of the grant journal) before WaitDurable returns, and --sync
// normal issues no such sync. It counts the real system calls: a child
// process (this test binary, running TestSyncFullChild) makes syncGrants
// grants one after another under strace. (The test it replaces only
// checked that a second connection saw the grant, which holds without any
// sync at all.)
func TestSyncFull(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("TestSyncFull counts fdatasync calls with strace, which CI must install (apt-get install strace)")
		}
		t.Skip("strace is not installed (apt-get install strace)")
	}
	// A call strace saw whole, or the start of one it split around another
	// thread's ("<unfinished ...>", then "<... fdatasync resumed>").
	journalSync := regexp.MustCompile(`fdatasync\(\d+<[^>]*\.grants-[01]>(\) += 0| <unfinished)`)
	for _, tc := range []struct {
		sync     string
		min, max int
	}{
		{"full", syncGrants, syncGrants + 1}, // one per grant (the grants come one at a time), perhaps one more at Close
		{"normal", 0, 0},
	} {
		t.Run(tc.sync, func(t *testing.T) {
			dir := t.TempDir()
			trace := filepath.Join(dir, "strace.out")
			cmd := exec.Command(strace, "-f", "-y", "-qq", "-e", "trace=fdatasync", "-o", trace,
				os.Args[0], "-test.run=^TestSyncFullChild$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), "RLFS_SYNC_CHILD="+tc.sync, "RLFS_SYNC_DIR="+dir)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "the child under strace:\n%s", out)
			require.Contains(t, string(out), "--- PASS: TestSyncFullChild", "the child ran:\n%s", out)
			b, err := os.ReadFile(trace)
			require.NoError(t, err)
			n := len(journalSync.FindAll(b, -1))
			t.Logf("--sync %s: %d grants, %d fdatasync of the journal", tc.sync, syncGrants, n)
			require.GreaterOrEqual(t, n, tc.min, "fdatasync calls on the journal with --sync %s:\n%s", tc.sync, b)
			require.LessOrEqual(t, n, tc.max, "fdatasync calls on the journal with --sync %s:\n%s", tc.sync, b)
		})
	}
}

// TestSyncFullChild is TestSyncFull's child: it makes syncGrants grants,
// each waiting until durable, at the sync level RLFS_SYNC_CHILD.
func TestSyncFullChild(t *testing.T) {
	level := os.Getenv("RLFS_SYNC_CHILD")
	if level == "" {
		t.Skip("run by TestSyncFull")
	}
	s, err := sqlite.Open(filepath.Join(os.Getenv("RLFS_SYNC_DIR"), "meters.db"), sqlite.Options{Sync: level})
	require.NoError(t, err)
	require.NoError(t, s.CreateMeter("a", meter.DefaultSpec(), meter.DefaultAttr()))
	for i := range syncGrants {
		c := meter.Call{ID: uint64(i + 1), GrantedAt: metertest.Epoch, Holder: meter.Holder{PID: 1, Cmd: "x" + strconv.Itoa(i)}}
		require.NoError(t, s.Grant("a", c, metertest.Epoch, time.Time{}))
		require.NoError(t, s.WaitDurable())
	}
	require.NoError(t, s.Close())
}
