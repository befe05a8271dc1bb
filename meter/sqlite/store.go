package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// stmts are the prepared statements of a Store, all on its one connection.
type stmts struct {
	begin, beginRead, commit, rollback *sql.Stmt

	create, setSpec, setAttr, setPause, delMeter, delCalls *sql.Stmt
	grantMeter, grantCall, complete                        *sql.Stmt
	setState, keepTAT, nextID, revoke, ungrant             *sql.Stmt
	setPast, settle, setUTAT                               *sql.Stmt
	pruneDone, pruneGranted                                *sql.Stmt
	loadMeters, loadCalls                                  *sql.Stmt
}

// prepare prepares the statements for schema version (2, or 1 read-only).
func (st *stmts) prepare(ctx context.Context, conn *sql.Conn, version int) error {
	past, utat, cost, actual := "past", "utat_ns", "cost", "actual"
	if version < 2 { // schema 1, read-only: none of these columns
		past, utat, cost, actual = "NULL", "NULL", "1", "NULL"
	}
	pause := "pause_until_ns, pause_by, pause_from"
	if version < 3 { // read-only: no pause
		pause = "NULL, NULL, NULL"
	}
	for _, p := range []struct {
		s    **sql.Stmt
		text string
	}{
		{&st.begin, "BEGIN IMMEDIATE"},
		{&st.beginRead, "BEGIN"},
		{&st.commit, "COMMIT"},
		{&st.rollback, "ROLLBACK"},
		{&st.create, `INSERT INTO meters (name, spec, mode, uid, gid, tat_ns, next_id, grants, created_ns)
			VALUES (?, ?, ?, ?, ?, NULL, 0, 0, ?)`},
		{&st.setSpec, "UPDATE meters SET spec = ? WHERE name = ?"},
		{&st.setAttr, "UPDATE meters SET mode = ?, uid = ?, gid = ? WHERE name = ?"},
		{&st.setPause, "UPDATE meters SET pause_until_ns = ?, pause_by = ?, pause_from = ? WHERE name = ?"},
		{&st.delMeter, "DELETE FROM meters WHERE name = ?"},
		{&st.delCalls, "DELETE FROM calls WHERE meter = ?"},
		{&st.grantMeter, "UPDATE meters SET tat_ns = ?, next_id = max(next_id, ?), grants = grants + ? WHERE name = ?"},
		{&st.keepTAT, "UPDATE meters SET next_id = max(next_id, ?), grants = grants + ? WHERE name = ?"},
		{&st.nextID, "SELECT next_id FROM meters WHERE name = ?"},
		{&st.revoke, "DELETE FROM calls WHERE meter = ? AND id = ?"},
		{&st.ungrant, "UPDATE meters SET grants = grants - 1 WHERE name = ?"},
		{&st.setState, "UPDATE meters SET tat_ns = ?, next_id = ?, grants = ?, past = ?, utat_ns = ? WHERE name = ?"},
		{&st.setPast, "UPDATE meters SET past = ? WHERE name = ?"},
		{&st.settle, "UPDATE calls SET actual = ? WHERE meter = ? AND id = ?"},
		{&st.setUTAT, "UPDATE meters SET utat_ns = ? WHERE name = ?"},
		{&st.grantCall, `INSERT INTO calls (meter, id, granted_ns, done_ns, expired, pid, uid, gid, cmd, cost, actual)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&st.complete, "UPDATE calls SET done_ns = ?, expired = ? WHERE meter = ? AND id = ?"},
		{&st.pruneDone, "DELETE FROM calls WHERE meter = ? AND done_ns IS NOT NULL AND done_ns <= ?"},
		{&st.pruneGranted, "DELETE FROM calls WHERE meter = ? AND done_ns IS NOT NULL AND granted_ns <= ?"},
		{&st.loadMeters, "SELECT name, spec, mode, uid, gid, tat_ns, next_id, grants, " + past + ", " + utat + ", " + pause + " FROM meters ORDER BY name"},
		{&st.loadCalls, "SELECT meter, id, granted_ns, done_ns, expired, pid, uid, gid, cmd, " + cost + ", " + actual + " FROM calls ORDER BY meter, id"},
	} {
		if version < 2 && (strings.Contains(p.text, "past =") || strings.Contains(p.text, "utat_ns =") ||
			strings.Contains(p.text, "actual =") || strings.Contains(p.text, "cost, actual)")) {
			continue // read-only: never written
		}
		if version < 3 && strings.Contains(p.text, "pause_until_ns =") {
			continue // read-only: never written
		}
		stmt, err := conn.PrepareContext(ctx, p.text)
		if err != nil {
			return err
		}
		*p.s = stmt
	}
	return nil
}

func (st *stmts) close() {
	for _, s := range []*sql.Stmt{
		st.begin, st.beginRead, st.commit, st.rollback,
		st.create, st.setSpec, st.setAttr, st.setPause, st.delMeter, st.delCalls,
		st.grantMeter, st.grantCall, st.complete, st.setState, st.setPast, st.settle, st.setUTAT, st.keepTAT, st.nextID, st.revoke, st.ungrant,
		st.pruneDone, st.pruneGranted, st.loadMeters, st.loadCalls,
	} {
		if s != nil {
			s.Close()
		}
	}
}

// exec runs stmt and returns how many rows it changed.
func exec(stmt *sql.Stmt, args ...any) (int64, error) {
	res, err := stmt.Exec(args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// must1 runs stmt and fails with meter.ErrNotExist unless it changed a row.
func must1(stmt *sql.Stmt, args ...any) error {
	n, err := exec(stmt, args...)
	if err == nil && n == 0 {
		err = meter.ErrNotExist
	}
	return err
}

// txLocked runs f in a write transaction and commits it.
func (s *Store) txLocked(f func() error) error {
	if _, err := s.st.begin.Exec(); err != nil {
		return err
	}
	err := f()
	if err == nil {
		_, err = s.st.commit.Exec()
	}
	if err != nil {
		s.st.rollback.Exec() // may fail when SQLite already rolled back
	}
	return err
}

// write runs f with the store locked, if it may write, after the queued
// grants and completions, so that it sees and orders after them.
func (s *Store) write(f func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(true); err != nil {
		return err
	}
	if err := s.flushLocked(); err != nil {
		return err
	}
	return f()
}

// read runs f with the store locked, for a read-only statement.
func (s *Store) read(f func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(false); err != nil {
		return err
	}
	return f()
}

func (s *Store) bg() context.Context { return context.Background() }

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Load returns every meter, sorted by name, with its calls in grant order,
// read in one transaction.
func (s *Store) Load() ([]meter.Stored, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(false); err != nil {
		return nil, err
	}
	if !s.ro {
		if err := s.flushLocked(); err != nil {
			return nil, err
		}
	}
	if _, err := s.st.beginRead.Exec(); err != nil {
		return nil, fmt.Errorf("sqlite: load %s: %w", s.path, err)
	}
	out, err := s.loadLocked()
	if _, cerr := s.st.commit.Exec(); err == nil && cerr != nil {
		err = fmt.Errorf("sqlite: load %s: %w", s.path, cerr)
	}
	if err != nil {
		return nil, err
	}
	if s.ro {
		overlayJournal(s.path, out)
	}
	return out, nil
}

// overlayJournal adds the grants and completions that a running (or
// crashed) owner has in its journal but not yet in SQLite, so that a
// read-only Load is current.
func overlayJournal(db string, out []meter.Stored) {
	index := make(map[string]int, len(out))
	for i, m := range out {
		index[m.Name] = i
	}
	var recs []journalRec
	for i := range 2 {
		f, err := os.Open(journalPath(db, i))
		if err != nil {
			continue
		}
		rs, _ := readJournal(f)
		f.Close()
		recs = append(recs, rs...)
	}
	slices.SortFunc(recs, func(a, b journalRec) int { return cmp.Compare(a.seq, b.seq) })
	for _, r := range recs {
		i, ok := index[r.op.meter]
		if !ok {
			continue
		}
		m := &out[i]
		c := r.op.call
		k := slices.IndexFunc(m.State.Calls, func(x meter.Call) bool { return x.ID == c.ID })
		switch r.op.kind {
		case opComplete:
			if k >= 0 {
				m.State.Calls[k].DoneAt, m.State.Calls[k].Expired = c.DoneAt, c.Expired
			}
			continue
		case opRevoke:
			if k >= 0 {
				m.State.Calls = slices.Delete(m.State.Calls, k, k+1)
				m.Grants--
			}
			continue
		case opSettle:
			if k >= 0 {
				m.State.Calls[k].Actual, m.State.Calls[k].Settled = c.Actual, true
			}
			m.State.UTAT = r.op.utat
			continue
		}
		if k >= 0 {
			continue
		}
		m.State.Calls = append(m.State.Calls, c)
		m.Grants++
		m.State.NextID = max(m.State.NextID, c.ID+1)
		m.State.TAT, m.State.UTAT = r.op.tat, r.op.utat
	}
	for i := range out {
		slices.SortFunc(out[i].State.Calls, func(a, b meter.Call) int { return cmp.Compare(a.ID, b.ID) })
	}
}

func (s *Store) loadLocked() ([]meter.Stored, error) {
	out, err := s.loadMeters()
	if err != nil {
		return nil, err
	}
	index := make(map[string]int, len(out))
	for i, m := range out {
		index[m.Name] = i
	}
	rows, err := s.st.loadCalls.Query()
	if err != nil {
		return nil, fmt.Errorf("sqlite: load calls from %s: %w", s.path, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			name          string
			c             meter.Call
			granted, done sql.NullInt64
			expired       int64
			actual        sql.NullInt64
		)
		if err := rows.Scan(&name, &c.ID, &granted, &done, &expired, &c.Holder.PID, &c.Holder.UID, &c.Holder.GID, &c.Holder.Cmd, &c.Cost, &actual); err != nil {
			return nil, fmt.Errorf("sqlite: load calls from %s: %w", s.path, err)
		}
		i, ok := index[name]
		if !ok {
			continue // a call of no meter: nothing counts it
		}
		c.GrantedAt, c.DoneAt, c.Expired = timeOf(granted), timeOf(done), expired != 0
		c.Actual, c.Settled = actual.Int64, actual.Valid
		out[i].State.Calls = append(out[i].State.Calls, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: load calls from %s: %w", s.path, err)
	}
	return out, nil
}

func (s *Store) loadMeters() ([]meter.Stored, error) {
	rows, err := s.st.loadMeters.Query()
	if err != nil {
		return nil, fmt.Errorf("sqlite: load meters from %s: %w", s.path, err)
	}
	defer rows.Close()
	var out []meter.Stored
	for rows.Next() {
		var (
			m               meter.Stored
			spec            string
			tat, utat       sql.NullInt64
			past            []byte
			pause           sql.NullInt64
			pauseBy, pauseF sql.NullString
		)
		if err := rows.Scan(&m.Name, &spec, &m.Attr.Mode, &m.Attr.UID, &m.Attr.GID, &tat, &m.State.NextID, &m.Grants, &past, &utat, &pause, &pauseBy, &pauseF); err != nil {
			return nil, fmt.Errorf("sqlite: load meters from %s: %w", s.path, err)
		}
		if m.Spec, err = meter.ParseSpec(spec); err != nil {
			return nil, failf(ErrCorrupt, err, "sqlite: meter %q in %s has limits that do not parse (%v); fix them with the sqlite3 tool or pass --db", m.Name, s.path, err)
		}
		if m.State.Past, err = decodePast(past); err != nil {
			return nil, failf(ErrCorrupt, err, "sqlite: meter %q in %s has a history that does not decode; clear it (UPDATE meters SET past = NULL) with the sqlite3 tool or pass --db", m.Name, s.path)
		}
		m.State.TAT, m.State.UTAT = timeOf(tat), timeOf(utat)
		m.Pause = meter.Pause{Until: timeOf(pause), By: pauseBy.String, From: pauseF.String}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: load meters from %s: %w", s.path, err)
	}
	return out, nil
}

// CreateMeter stores a new meter; it fails with meter.ErrExist if the name is taken.
func (s *Store) CreateMeter(name string, spec meter.Spec, attr meter.Attr) error {
	err := s.write(func() error {
		_, err := exec(s.st.create, name, spec.String(), attr.Mode, attr.UID, attr.GID, time.Now().UnixNano())
		if isConstraint(err) {
			err = meter.ErrExist
		}
		if err == nil {
			s.j.setKnown(name, true)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: create %q: %w", name, err)
	}
	return nil
}

// SetSpec replaces a meter's spec; meter.ErrNotExist if there is no such meter.
func (s *Store) SetSpec(name string, spec meter.Spec) error {
	err := s.write(func() error { return must1(s.st.setSpec, spec.String(), name) })
	if err != nil {
		return fmt.Errorf("sqlite: store limits of %q: %w", name, err)
	}
	return nil
}

// SetPause stores a meter's pause (zero: none); meter.ErrNotExist if there
// is no such meter.
func (s *Store) SetPause(name string, p meter.Pause) error {
	err := s.write(func() error { return must1(s.st.setPause, nsOf(p.Until), p.By, p.From, name) })
	if err != nil {
		return fmt.Errorf("sqlite: store the pause of %q: %w", name, err)
	}
	return nil
}

// SetAttr replaces a meter's owner and mode; meter.ErrNotExist if there is no such meter.
func (s *Store) SetAttr(name string, attr meter.Attr) error {
	err := s.write(func() error { return must1(s.st.setAttr, attr.Mode, attr.UID, attr.GID, name) })
	if err != nil {
		return fmt.Errorf("sqlite: store owner and mode of %q: %w", name, err)
	}
	return nil
}

// DeleteMeter removes a meter and its calls in one transaction.
func (s *Store) DeleteMeter(name string) error {
	err := s.write(func() error {
		return s.txLocked(func() error {
			if err := must1(s.st.delMeter, name); err != nil {
				return err
			}
			if _, err := exec(s.st.delCalls, name); err != nil {
				return err
			}
			if _, err := s.conn.ExecContext(s.bg(), "DELETE FROM data WHERE meter = ?", name); err != nil {
				return err
			}
			s.j.setKnown(name, false)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("sqlite: delete %q: %w", name, err)
	}
	return nil
}

// Grant appends call c and the bucket's TAT after it to the grant journal
// (one pwrite) and queues it for SQLite. It survives a crash of the daemon
// when Grant returns; with sync "full" it survives a power loss once
// WaitDurable returns.
func (s *Store) Grant(name string, c meter.Call, tat, utat time.Time) error {
	if s.j == nil {
		return ErrReadOnly
	}
	if err := s.j.appendGrant(name, c, tat, utat); err != nil {
		return fmt.Errorf("sqlite: record grant %d of %q: %w", c.ID, name, err)
	}
	return nil
}

// WaitDurable returns once every grant recorded so far is durable to the
// store's sync level: at once for "normal", after a shared fdatasync of the
// journal for "full" (group commit). It implements meter.GroupSyncer.
func (s *Store) WaitDurable() error {
	if s.j == nil {
		return ErrReadOnly
	}
	return s.j.waitDurable()
}

// Complete appends c's completion time to the journal (one pwrite), so it
// survives a crash of the daemon, and queues it for SQLite.
func (s *Store) Complete(name string, c meter.Call) error {
	if s.j == nil {
		return ErrReadOnly
	}
	if err := s.j.appendComplete(name, c); err != nil {
		return fmt.Errorf("sqlite: record completion of call %d of %q: %w", c.ID, name, err)
	}
	return nil
}

// Settle appends call id's actual cost and the units bucket's TAT after it
// to the journal (one pwrite), and queues them for SQLite.
func (s *Store) Settle(name string, id uint64, actual int64, utat time.Time) error {
	if s.j == nil {
		return ErrReadOnly
	}
	if err := s.j.appendSettle(name, id, actual, utat); err != nil {
		return fmt.Errorf("sqlite: record the cost of call %d of %q: %w", id, name, err)
	}
	return nil
}

// Revoke journals that call id was granted to an open that failed, and
// queues its removal (and the grants counter's decrement) for SQLite.
func (s *Store) Revoke(name string, id uint64) error {
	if s.j == nil {
		return ErrReadOnly
	}
	if err := s.j.appendRevoke(name, id); err != nil {
		return fmt.Errorf("sqlite: revoke call %d of %q: %w", id, name, err)
	}
	return nil
}

// flushLocked moves the queued grants and completions into SQLite in one
// transaction; then the journal file they came from is emptied. s.mu is held.
func (s *Store) flushLocked() error {
	ops, _ := s.j.take()
	if len(ops) == 0 {
		return nil
	}
	if err := s.txLocked(func() error { return s.applyLocked(ops) }); err != nil {
		s.j.untake(ops)
		s.sqliteOut.fail(err)
		return fmt.Errorf("sqlite: write %d queued grants and completions into %s: %w", len(ops), s.path, err)
	}
	s.sqliteOut.ok()
	s.j.recycle(ops)
	if err := s.j.truncateInactive(); err != nil {
		return fmt.Errorf("sqlite: empty the grant journal of %s: %w", s.path, err)
	}
	return nil
}

// flusher flushes the queue every flushEvery, or sooner when it is long,
// until stop is closed.
func (s *Store) flusher(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		case <-s.j.kick:
		}
		s.mu.Lock()
		if s.usable(true) == nil {
			if err := s.flushLocked(); err != nil {
				s.flushErrs.Add(1)
			}
		}
		s.mu.Unlock()
	}
}

// FlushErrors counts failed background flushes into SQLite; the queue is
// kept and retried, and the journal keeps the grants meanwhile.
func (s *Store) FlushErrors() int64 { return s.flushErrs.Load() }

// Retire deletes the meter's completed calls that completed (or, with
// byGrant, were granted) at or before cutoff, and stores past as its
// history. Calls in progress stay. It is queued with the grants and
// completions, so that a call granted, completed and retired between two
// flushes never reaches the calls table; the history written by the same
// flush holds it. past is kept, not copied (meter.LocalStore allows it).
func (s *Store) Retire(name string, cutoff time.Time, byGrant bool, past []meter.Past) error {
	if s.j == nil {
		return ErrReadOnly
	}
	if err := s.j.queueRetire(name, cutoff, byGrant, past); err != nil {
		return fmt.Errorf("sqlite: retire calls of %q: %w", name, err)
	}
	return nil
}
