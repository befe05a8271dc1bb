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

// TestRestartKeepsHistory: a call is made on a 1/1h meter, the daemon stops
// (SIGTERM, or kill -9) and starts again on the same database, and the
// meter still counts the call from its completion: the next call is due an
// hour after the completion (status' next_grant, the engine's own decision:
// strict lower bound), which is before a daemon that had forgotten the
// completion and counted the call completed at the restart would allow it
// (order); an O_NONBLOCK open gets EAGAIN and a blocking one waits. A call
// in progress when the daemon is killed counts as completed at the restart.
//
// Then the period is shortened to X, a few seconds more than has passed
// since the completion, and the waiting caller is granted X after the
// completion (strict), and about then (within loaded(0) of X after the
// latest the completion can be). X is chosen after the restart because a
// restart takes seconds on a loaded machine (over 30 s was seen): a fixed
// short period could lapse before the daemon is back, and prove nothing.
func TestRestartKeepsHistory(t *testing.T) {
	t.Parallel()
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
			d := startDaemon(t, "m=1/1h")
			logs := t.TempDir()
			first := startClient(t, d.path("m", "acquire"), logs, client{kind: "go", id: "first", calls: 1})
			first.requireSuccess(t, pollTimeout)
			d.waitStatus(t, "m", "in_progress", "0 of 1") // the daemon has recorded the completion
			completed := readCalls(t, logs)[0].release

			tc.stop(t, d)
			stayDown(completed)
			restarted := time.Now()
			d.start(t)
			require.Equal(t, "1", d.status(t, "m")["grants_total"], "the restarted daemon knows the call")
			// The call counts from its completion: not earlier, and before
			// the restart (the daemon recorded it before it stopped).
			requireCountedFrom(t, d, logs, completed, restarted)
		})
	}

	t.Run("kill9-while-holding", func(t *testing.T) {
		t.Parallel()
		d := startDaemon(t, "m=1/1h")
		acq := d.path("m", "acquire")
		holder := pyHold(t, acq)
		holder.waitOutput(t, "held ")

		killed := time.Now()
		d.kill9(t)
		stayDown(killed)
		restarted := time.Now()
		d.start(t)
		mounted := time.Now()
		// The held call completed at the restart, between its start and the
		// mount: not at the kill, not later.
		requireCountedFrom(t, d, t.TempDir(), restarted, mounted)
		d.waitEntries(t, "m", "holders", 0)
	})
}

// requireCountedFrom proves that meter m (1/1h, concurrency=1, one call
// made, nothing in progress) counts its call from a completion at or after
// from and no later than until (the daemon's own record, which the test
// knows to lie between two instants it observed). A client logging to logs
// is the next caller.
func requireCountedFrom(t *testing.T, d *daemon, logs string, from, until time.Time) {
	t.Helper()
	st := d.status(t, "m")
	at, _, _ := strings.Cut(st["next_grant"], " (")
	due, err := time.Parse(time.RFC3339Nano, at)
	require.NoError(t, err, "status next_grant: %q", st["next_grant"])
	// Times in status are rounded down to the millisecond.
	require.False(t, due.Before(from.Add(time.Hour-tolerance(0))), "next grant due at %v, %v before an hour after the completion", due, from.Add(time.Hour).Sub(due))
	require.False(t, due.After(until.Add(time.Hour)), "next grant due at %v, %v after an hour after the restart: the completion was forgotten", due, due.Sub(until.Add(time.Hour)))
	_, err = syscall.Open(d.path("m", "acquire"), syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	require.ErrorIs(t, err, syscall.EAGAIN, "O_NONBLOCK open while 1/1h counts the call")
	next := startClient(t, d.path("m", "acquire"), logs, client{kind: "go", id: "next", calls: 1})
	d.waitStatus(t, "m", "waiting", "1")

	// Shorten the period to X: the call still counts for 5 s or more.
	x := (time.Since(from) + 5*time.Second).Truncate(time.Second) + time.Second
	require.NoError(t, os.WriteFile(d.path("m", "limits"), []byte(fmt.Sprintf("1/%ds\n", int(x.Seconds()))), 0o644))
	next.requireSuccess(t, x+pollTimeout)
	var g time.Time
	for _, c := range readCalls(t, logs) {
		if c.client == "next" {
			g = c.grant
		}
	}
	t.Logf("on 1/1h the next call was due %v after the earliest and %v after the latest the completion can be; on 1/%v it was granted %v after the earliest",
		due.Sub(from).Round(time.Millisecond), due.Sub(until).Round(time.Millisecond), x, g.Sub(from).Round(time.Millisecond))
	require.GreaterOrEqual(t, g.Sub(from), x-tolerance(x), "the next call on 1/%v granted before the period after the completion ended", x)
	require.Less(t, g.Sub(until), x+loaded(0), "the next call on 1/%v granted long after the period after the completion ended", x)
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
