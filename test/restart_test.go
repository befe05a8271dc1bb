package test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite" // to hold the database's write lock
)

// downFor is how long a stopped daemon stays down before its restart, as
// with systemd's RestartSec=1. It is part of the scenario, not a wait for a
// condition: a restarted daemon that forgot the completion time and counted
// the call completed at the restart would make the next caller wait 5 s
// from the restart, at least downFor more than from the completion.
const downFor = time.Second

func stayDown(since time.Time) { time.Sleep(time.Until(since.Add(downFor))) }

// TestRestartKeepsHistory: on a 1/5s meter, a call is made, the daemon
// stops (SIGTERM, or kill -9) and starts again on the same database, and the
// next caller still waits until 5 s after the last completion. A call in
// progress when the daemon is killed counts as completed at the restart.
func TestRestartKeepsHistory(t *testing.T) {
	t.Parallel()
	const per = 5 * time.Second
	tol := tolerance(per)
	for _, tc := range []struct {
		name string
		stop func(t *testing.T, d *daemon)
	}{
		{"sigterm", func(t *testing.T, d *daemon) { d.stop(t) }},
		// The store writes completions in batches, up to 50 ms late: kill
		// once the database holds it. TestKill9RightAfterCompletion is the
		// kill inside that window.
		{"kill9", func(t *testing.T, d *daemon) { d.waitStoredInProgress(t, "m", 0); d.kill9(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := startDaemon(t, "m=1/5s")
			logs := t.TempDir()
			first := startClient(t, d.path("m", "acquire"), logs, client{kind: "go", id: "first", calls: 1})
			first.requireSuccess(t, 30*time.Second)
			d.waitStatus(t, "m", "in_progress", "0 of 1") // the daemon has recorded the completion
			completed := readCalls(t, logs)[0].release

			tc.stop(t, d)
			stayDown(completed)
			d.start(t)
			require.Less(t, time.Since(completed), per-time.Second, "the restart took too long to prove anything")
			require.Equal(t, "1", d.status(t, "m")["grants_total"], "the restarted daemon knows the call")

			second := startClient(t, d.path("m", "acquire"), logs, client{kind: "go", id: "second", calls: 1})
			second.requireSuccess(t, 30*time.Second)
			calls := readCalls(t, logs)
			require.Len(t, calls, 2)
			wait := calls[1].grant.Sub(completed)
			t.Logf("next call granted %v after the last completion", wait.Round(time.Millisecond))
			require.GreaterOrEqual(t, wait, per-tol, "calls:\n%s", formatCalls(calls))
			require.Less(t, wait, per+500*time.Millisecond, "calls:\n%s", formatCalls(calls))
		})
	}

	t.Run("kill9-while-holding", func(t *testing.T) {
		t.Parallel()
		d := startDaemon(t, "m=1/5s")
		acq := d.path("m", "acquire")
		holder := pyHold(t, acq)
		holder.waitOutput(t, "held ")

		killed := time.Now()
		d.kill9(t)
		stayDown(killed)
		d.start(t)
		mounted := time.Now()
		require.Less(t, mounted.Sub(killed), per-time.Second, "the restart took too long to prove anything")

		logs := t.TempDir()
		next := startClient(t, acq, logs, client{kind: "go", id: "next", calls: 1})
		next.requireSuccess(t, 30*time.Second)
		calls := readCalls(t, logs)
		require.Len(t, calls, 1)
		// The held call completed at the restart, somewhere between the kill
		// and the mount.
		g := calls[0].grant
		t.Logf("next call granted %v after the kill, %v after the remount", g.Sub(killed).Round(time.Millisecond), g.Sub(mounted).Round(time.Millisecond))
		require.GreaterOrEqual(t, g.Sub(killed), downFor+per-tol)
		require.Less(t, g.Sub(mounted), per+500*time.Millisecond)
		d.waitEntries(t, "m", "holders", 0)
	})
}

// TestKill9RightAfterCompletion pins design §4: a completion is persisted
// when it happens. meter/sqlite moves grants and completions into SQLite
// every 50 ms; what happened since is only in its journal, and a kill -9 in
// that window must lose nothing. (It used to: the restarted daemon counted
// the call completed at the restart, so on a 1/PER meter the next grant was
// due PER after the restart instead of PER after the completion.)
//
// The test makes the window as long as it likes instead of hoping to hit
// it: it holds SQLite's write lock on the database itself, so no flush can
// land, checks that SQLite does not hold the call while rlfs status --db
// (which reads the journal too) sees it completed, kills the daemon, lets
// go of the lock and restarts after a pause. The restarted daemon must date
// the next grant from the real completion, not from the restart.
func TestKill9RightAfterCompletion(t *testing.T) {
	t.Parallel()
	const per = time.Minute // long, so that a slow restart still shows the next grant ahead
	d := startDaemon(t, "m=1/1m")
	db, err := sql.Open("sqlite", d.db)
	require.NoError(t, err)
	defer db.Close()
	conn, err := db.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(context.Background(), "BEGIN IMMEDIATE") // the daemon's flushes wait behind this
	require.NoError(t, err)

	logs := t.TempDir()
	c := startClient(t, d.path("m", "acquire"), logs, client{kind: "go", id: "first", calls: 1})
	c.requireSuccess(t, 30*time.Second)
	d.waitStatus(t, "m", "in_progress", "0 of 1") // the completion is recorded (journaled before status shows it)
	completed := readCalls(t, logs)[0].release

	var inSQLite int
	require.NoError(t, conn.QueryRowContext(context.Background(), "SELECT count(*) FROM calls WHERE meter = 'm'").Scan(&inSQLite))
	require.Equal(t, 0, inSQLite, "the call reached SQLite: the journal window was not held open")
	require.Equal(t, 0, d.storedInProgress(t, "m"), "rlfs status --db does not see the completion in the journal")
	d.kill9(t)
	_, err = conn.ExecContext(context.Background(), "ROLLBACK")
	require.NoError(t, err)
	require.NoError(t, conn.Close())

	// Down long enough that a completion lost and counted at the restart
	// would move the next grant well past completion+PER.
	const down = 2500 * time.Millisecond
	time.Sleep(time.Until(completed.Add(down)))
	d.start(t)
	require.Equal(t, "1", d.status(t, "m")["grants_total"], "the restarted daemon knows the call")
	require.Equal(t, "0 of 1", d.status(t, "m")["in_progress"])

	b, err := os.ReadFile(d.path("m", "status.json"))
	require.NoError(t, err)
	var st struct {
		NextGrant string `json:"next_grant"` // "2026-…Z (in 57.4s)"
	}
	require.NoError(t, json.Unmarshal(b, &st))
	at, _, _ := strings.Cut(st.NextGrant, " ")
	next, err := time.Parse(time.RFC3339Nano, at)
	require.NoError(t, err, "next_grant %q", st.NextGrant)
	late := next.Sub(completed.Add(per))
	t.Logf("next grant due %v after completion+PER", late.Round(time.Millisecond))
	require.GreaterOrEqual(t, late, -10*time.Millisecond, "the window ends before PER after the completion")
	require.Less(t, late, down-time.Second,
		"kill -9 right after a completion lost it: the next grant is dated from the restart, not from the completion")

	// And the meter does count the call: an open that must not wait is refused.
	_, err = syscall.Open(d.path("m", "acquire"), syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	require.Equal(t, syscall.EAGAIN, err, "an O_NONBLOCK open within PER of the completion")
}

// storedInProgress is how many calls of meterName the database holds in
// progress, as rlfs status --db reads it (read-only, beside the daemon).
func (d *daemon) storedInProgress(t *testing.T, meterName string) int {
	t.Helper()
	out, err := exec.Command(rlfsBin, "status", "--json", "--db", d.db).Output()
	require.NoError(t, err, "rlfs status --json --db %s", d.db)
	var st struct {
		Meters []struct {
			Meter      string `json:"meter"`
			InProgress int    `json:"in_progress"`
		} `json:"meters"`
	}
	require.NoError(t, json.Unmarshal(out, &st), "rlfs status --json: %s", out)
	for _, m := range st.Meters {
		if m.Meter == meterName {
			return m.InProgress
		}
	}
	t.Fatalf("rlfs status --db %s lists no meter %q: %s", d.db, meterName, out)
	return 0
}

// waitStoredInProgress polls the database until it holds n calls of
// meterName in progress.
func (d *daemon) waitStoredInProgress(t *testing.T, meterName string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the database holds %d calls of %s in progress", n, meterName), func() bool {
		return d.storedInProgress(t, meterName) == n
	}, nil)
}
