package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWeightedRestartKeepsUnits: weighted calls and their settlements
// survive a restart (SIGTERM) and kill -9. On units:100/1h: acquire@40
// settled at 25 and closed, acquire@30 closed unsettled, and acquire@20
// settled at 5 and still held when the daemon stops (killed the moment the
// write returned, with nothing waited for: settlements are journaled like
// grants) count 60 units; rlfs status --db says so while the daemon is
// down, and the restarted daemon's status shows the same 60 used; an
// O_NONBLOCK acquire@41 gets EAGAIN and acquire@40 is granted.
func TestWeightedRestartKeepsUnits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		stop func(t *testing.T, d *daemon)
	}{
		{"sigterm", func(t *testing.T, d *daemon) { d.stop(t) }},
		{"kill9", func(t *testing.T, d *daemon) { d.kill9(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := startDaemon(t, "m=units:100/1h,concurrency=0")
			acq := func(n string) string { return d.path("m", "acquire@"+n) }
			a := unitsHold(t, acq("40"))
			a.settle(t, 25)
			a.release(t)
			c := startProc(t, "cat", acq("30"))
			c.requireSuccess(t, pollTimeout)
			held := unitsHold(t, acq("20"))
			d.waitStatus(t, "m", "in_progress", "1 of unlimited")
			held.settle(t, 5)
			tc.stop(t, d)

			require.Equal(t, 60, storedUnitsUsed(t, d, "m", "units:100/1h"), "rlfs status --db while the daemon is down")
			d.start(t)
			st := d.status(t, "m")
			require.Equal(t, "60 used, 40 free", st["window units:100/1h"], "status after the restart")
			require.Equal(t, "3", st["grants_total"])
			require.Equal(t, "0 of unlimited", st["in_progress"], "the held call counts completed at the restart")
			require.ErrorIs(t, openNonblock(acq("41")), syscall.EAGAIN)
			require.NoError(t, openNonblock(acq("40")))
			d.waitUnitsUsed(t, "m", "units:100/1h", 100)
		})
	}
}

// storedUnitsUsed is what rlfs status --json --db says is used of meter
// m's window item, read from the database beside the daemon.
func storedUnitsUsed(t *testing.T, d *daemon, m, item string) int {
	t.Helper()
	out, err := exec.Command(rlfsBin, "status", "--json", "--db", d.db).Output()
	require.NoError(t, err, "rlfs status --json --db %s", d.db)
	var st struct {
		Meters []struct {
			Meter   string `json:"meter"`
			Windows []struct {
				Limit string `json:"limit"`
				Used  int    `json:"used"`
			} `json:"windows"`
		} `json:"meters"`
	}
	require.NoError(t, json.Unmarshal(out, &st), "rlfs status --json: %s", out)
	for _, mm := range st.Meters {
		for _, w := range mm.Windows {
			if mm.Meter == m && w.Limit == item {
				return w.Used
			}
		}
	}
	t.Fatalf("rlfs status --db lists no window %s of %s: %s", item, m, out)
	return 0
}

// TestWeightedRun: rlfs run --cost N makes a call of N units and gives the
// command its descriptor as fd 3 ($RLFS_ACQUIRE_FD=3), where it reads the
// grant line and writes the actual cost; a command that writes nothing
// leaves the estimate. --cost beyond the meter's units limit fails at once
// with a message naming the cost and the fix, and runs nothing (the meter
// is full and its holder stays, so a wait would never end); --cost that is
// not a number is a usage error.
func TestWeightedRun(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=units:100/1h,concurrency=0")
	dir := t.TempDir()
	grant := filepath.Join(dir, "grant")
	p := startProc(t, rlfsBin, "run", "--cost", "50", d.path("m"), "--", "sh", "-c",
		`echo "fd=$RLFS_ACQUIRE_FD"; cat <&3 >"$1"; echo 12 >&3`, "cmd", grant)
	p.requireSuccess(t, pollTimeout)
	require.Equal(t, "fd=3\n", p.stdout.String())
	b, err := os.ReadFile(grant)
	require.NoError(t, err)
	require.Regexp(t, `^granted \S+ waited \S+ meter m call 1 pid \d+ cost 50\n$`, string(b), "the grant line on fd 3")
	d.waitStatus(t, "m", "in_progress", "0 of unlimited")
	st := d.status(t, "m")
	require.Equal(t, "12 used, 88 free", st["window units:100/1h"])
	require.Equal(t, "50", st["units_granted_since_start"])
	require.Equal(t, "1", st["settled_since_start"])

	q := startProc(t, rlfsBin, "run", "--cost", "30", d.path("m"), "--", "true")
	q.requireSuccess(t, pollTimeout)
	d.waitUnitsUsed(t, "m", "units:100/1h", 42)

	holder := unitsHold(t, d.path("m", "acquire@58"))
	marker := filepath.Join(dir, "ran")
	start := time.Now()
	big := startProc(t, rlfsBin, "run", "--cost", "101", d.path("m"), "--", "touch", marker)
	big.wait(t, pollTimeout)
	took := big.endAt.Sub(start)
	t.Logf("FIGURE rlfs run --cost 101 on units:100/1h exited %d after %s: %s", big.exitCode(), fmtMS(took), big.stderr.String())
	require.Equal(t, 1, big.exitCode(), "stderr: %s", big.stderr.String())
	require.Contains(t, big.stderr.String(), "can never admit a call of 101 units (its limits allow at most 100 units a call: units:100/1h)")
	require.Contains(t, big.stderr.String(), "lower --cost or raise the limit")
	require.Less(t, took, loaded(0))
	require.NoFileExists(t, marker)

	bad := startProc(t, rlfsBin, "run", "--cost", "x", d.path("m"), "--", "touch", marker)
	bad.wait(t, pollTimeout)
	require.Equal(t, 2, bad.exitCode(), "stderr: %s", bad.stderr.String())
	require.Contains(t, bad.stderr.String(), `--cost "x"`)
	require.NoFileExists(t, marker)
	require.False(t, holder.p.exited())
	require.Equal(t, "3", d.status(t, "m")["grants_total"])
}
