// Package sqlite is the embedded meter.LocalStore: one SQLite database file
// (through the pure-Go modernc.org/sqlite) in WAL mode, owned by one daemon
// at a time through an advisory lock file beside it.
//
// # Files
//
//	PATH          the database
//	PATH-wal      its write-ahead log, PATH-shm its index (SQLite's own)
//	PATH.lock     flock(2)ed by the owner; holds "pid=N\nmountpoint=M\n";
//	              deleted by a clean Close
//	              (the owner flocks PATH itself too, so a hard link, which
//	              has another lock file, finds it taken)
//
// # Schema (PRAGMA user_version = 1)
//
//	meters(name PRIMARY KEY, spec, mode, uid, gid, tat_ns, next_id, grants, created_ns)
//	calls(meter, id, granted_ns, done_ns, expired, pid, uid, gid, cmd, cost, actual; PRIMARY KEY (meter, id))
//	data(meter, name, content, mtime_ns; PRIMARY KEY (meter, name))   the meters' data files
//
// spec is the canonical text of meter.Spec.String. Times are wall-clock Unix
// nanoseconds; NULL stands for the zero time (a call in progress has a NULL
// done_ns, a meter without a token bucket a NULL tat_ns). past is the
// meter's history of retired calls, grouped (past.go); cost is the units a
// call was granted for, actual its settled cost (NULL: not settled), utat_ns
// the units bucket's TAT. Schema 1 lacked past, utat_ns, cost, actual and data:
// the owner adds them when it opens such a database (every call costing 1);
// a read-only open reads them so.
//
// A grant is committed before Grant returns: with Sync "normal" it survives
// the daemon's crash, with "full" a power loss as well.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/rlfs/rlfs/meter"
)

var _ meter.LocalStore = (*Store)(nil)

// ErrReadOnly is returned by the writes of a store opened with OpenReadOnly.
var ErrReadOnly = errors.New("sqlite: store is open read-only")

var errClosed = errors.New("sqlite: store is closed")

// Options configure Open. The zero value is sync "normal" and no mountpoint.
type Options struct {
	// Sync is "normal" (the default: a grant survives the daemon's crash)
	// or "full" (it also survives a power loss once WaitDurable returns:
	// one fdatasync of the journal shared by the grants waiting for it,
	// and SQLite commits with synchronous=FULL).
	Sync string
	// Mountpoint is written into the lock file, so that a second daemon
	// can say where the owner serves the database.
	Mountpoint string
	// Logger gets one line when writes start to fail (a full disk) and
	// one when they work again (see Health); nil logs nothing.
	Logger *slog.Logger
}

// Store is a meter.LocalStore in a SQLite database. It is safe for concurrent
// use; writes are serialized on one connection. Create it with Open or
// OpenReadOnly; the zero value is not usable.
type Store struct {
	path string
	ro   bool
	lock *lockFile // nil when read-only

	sync string // the synchronous level, for Recreate

	j          *journal // nil when read-only
	flushErrs  atomic.Int64
	journalOut outage // writes to the grant journal
	sqliteOut  outage // flushes into SQLite
	stopOnce   sync.Once
	stop       chan struct{}
	stopped    chan struct{}

	mu     sync.Mutex
	ident  os.FileInfo // the database file as opened, for Missing
	db     *sql.DB
	conn   *sql.Conn
	st     stmts
	closed bool
}

// Open opens the database at path, creating it and its schema if absent,
// and takes its lock. Problems come back as one line naming the fix, of the
// kinds ErrNoDir, ErrPermission, ErrCorrupt, ErrVersion and ErrLocked. An
// existing file is checked read-only first: one that is not a sound rlfs
// database is left as it was.
func Open(path string, opt Options) (*Store, error) {
	level, err := syncLevel(opt.Sync)
	if err != nil {
		return nil, err
	}
	path, err = resolve(path)
	if err != nil {
		return nil, err
	}
	if err := checkDir(filepath.Dir(path), false); err != nil {
		return nil, err
	}
	exists, err := checkFile(path, false)
	if err != nil {
		return nil, err
	}
	lock, err := acquireLock(path, opt.Mountpoint)
	if err != nil {
		return nil, err
	}
	if err := lock.lockDB(path); err != nil {
		lock.release(true)
		return nil, err
	}
	if exists {
		err = verify(path)
	}
	var s *Store
	if err == nil {
		s, err = open(path, false, level)
	}
	if err == nil {
		s.journalOut.init(opt.Logger, "grant journal", "opens of acquire fail with EIO", path)
		s.sqliteOut.init(opt.Logger, "SQLite", "grants and completions wait in the journal, retried every "+flushEvery.String(), path)
		err = s.startJournal(level == "FULL")
	}
	if err != nil {
		if s != nil {
			s.Close()
		}
		lock.release(true)
		return nil, err
	}
	s.lock = lock
	return s, nil
}

// OpenReadOnly opens an existing database for Load only, without its lock
// and without writing to it, so that it can be read while a daemon owns it.
// Its writes fail with ErrReadOnly.
func OpenReadOnly(path string) (*Store, error) {
	path, err := resolve(path)
	if err != nil {
		return nil, err
	}
	if err := checkDir(filepath.Dir(path), true); err != nil {
		return nil, err
	}
	exists, err := checkFile(path, true)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, failf(fs.ErrNotExist, nil, "sqlite: database %s does not exist; check the path or pass --db", path)
	}
	return open(path, true, "")
}

// resolve makes path absolute and follows symbolic links, so that every
// name of one database leads to the same lock file.
func resolve(path string) (string, error) {
	if path == "" {
		return "", errors.New("sqlite: empty database path; pass --db PATH")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("sqlite: database path %s: %w", path, err)
	}
	if p, err := filepath.EvalSymlinks(abs); err == nil {
		return p, nil
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		return filepath.Join(dir, filepath.Base(abs)), nil
	}
	return abs, nil
}

func syncLevel(s string) (string, error) {
	switch strings.ToLower(s) {
	case "", "normal":
		return "NORMAL", nil
	case "full":
		return "FULL", nil
	}
	return "", fmt.Errorf("sqlite: sync level %q: want normal or full", s)
}

// dsn is the URI that opens path for the owner, with sync as PRAGMA
// synchronous, or read-only when sync is "".
//
// A read-only open of a database without a -wal file reads it as
// immutable: no process has it open (SQLite keeps the -wal while a
// connection is open in WAL mode), all of it is in the main file, and so no
// -wal or -shm file gets created beside a database whose daemon is stopped.
// (A daemon that starts meanwhile writes to its new -wal, not to the main
// file, until its first checkpoint: the reader sees the state before it.)
func dsn(path, sync string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "foreign_keys(0)")
	if sync == "" {
		q.Set("mode", "ro")
		q.Add("_pragma", "query_only(1)")
		if _, err := os.Lstat(path + "-wal"); errors.Is(err, fs.ErrNotExist) {
			q.Set("immutable", "1")
		}
	} else {
		q.Add("_pragma", "synchronous("+sync+")")
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

// connect opens one connection to the database at path.
func connect(path, sync string) (*sql.DB, *sql.Conn, error) {
	db, err := sql.Open("sqlite", dsn(path, sync))
	if err != nil {
		return nil, nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(context.Background())
	if err != nil {
		db.Close()
		return nil, nil, classify(path, "open", err)
	}
	return db, conn, nil
}

// verify checks, without writing, that the existing database at path is
// empty or a sound rlfs database.
func verify(path string) error {
	db, conn, err := connect(path, "")
	if err != nil {
		return err
	}
	defer db.Close()
	defer conn.Close()
	ctx := context.Background()
	version, err := inspect(ctx, conn, path)
	if err != nil || version == 0 {
		return err
	}
	var res string
	if err := conn.QueryRowContext(ctx, "PRAGMA quick_check(1)").Scan(&res); err != nil {
		return classify(path, "check", err)
	}
	if res != "ok" {
		res = strings.Join(strings.Fields(strings.ReplaceAll(res, "*** in database main ***", "")), " ")
		return failf(ErrCorrupt, nil, "sqlite: %s is damaged (%s); move it aside (the sqlite3 tool's .recover may save it) or pass --db", path, res)
	}
	return nil
}

// open opens the database at path for the owner (creating the schema if
// it is empty) or, when ro, for reading.
func open(path string, ro bool, sync string) (*Store, error) {
	db, conn, err := connect(path, sync)
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, ro: ro, db: db, conn: conn, sync: sync}
	if err := s.setup(); err != nil {
		s.st.close()
		conn.Close()
		db.Close()
		return nil, err
	}
	s.ident, _ = os.Stat(path)
	return s, nil
}

// classify turns a SQLite error met while opening into one line with a fix.
func classify(path, op string, err error) error {
	var se *msqlite.Error
	if !errors.As(err, &se) {
		return fmt.Errorf("sqlite: %s %s: %w", op, path, err)
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_NOTADB:
		return failf(ErrCorrupt, err, "sqlite: %s is not an rlfs database (file is not a database); move it aside or pass --db", path)
	case sqlite3.SQLITE_CORRUPT:
		return failf(ErrCorrupt, err, "sqlite: %s is damaged (database disk image is malformed); move it aside (the sqlite3 tool's .recover may save it) or pass --db", path)
	case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH, sqlite3.SQLITE_CANTOPEN:
		return failf(ErrPermission, err, "sqlite: cannot %s %s (%v); check the permissions of it, its -wal and -shm files and its directory, or pass --db", op, path, err)
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return failf(ErrLocked, err, "sqlite: %s is locked by another program (%v); stop it or pass --db", path, err)
	}
	return fmt.Errorf("sqlite: %s %s: %w", op, path, err)
}

// Path returns the database's absolute path.
func (s *Store) Path() string { return s.path }

// Close checkpoints the WAL into the database, closes it and releases the
// lock. Closing twice does nothing.
func (s *Store) Close() error {
	s.stopOnce.Do(func() {
		if s.stop != nil {
			close(s.stop)
			<-s.stopped
		}
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	var errs []error
	if s.j != nil {
		if err := s.flushLocked(); err != nil {
			errs = append(errs, err)
		} else if err := s.j.reset(); err == nil {
			s.j.remove()
		}
		s.j.close()
	}
	s.closed = true
	s.st.close()
	if !s.ro {
		// A reader (rlfs status) may hold the WAL: then it stays, and
		// the next Open replays it.
		if _, err := s.conn.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil && !isBusy(err) {
			errs = append(errs, fmt.Errorf("sqlite: checkpoint %s: %w", s.path, err))
		}
	}
	errs = append(errs, s.conn.Close(), s.db.Close())
	s.lock.close()
	return errors.Join(errs...)
}

// usable reports why the store may not run a statement, if it may not.
func (s *Store) usable(write bool) error {
	switch {
	case s.closed:
		return errClosed
	case write && s.ro:
		return ErrReadOnly
	}
	return nil
}

// nsOf is t as stored: Unix nanoseconds, or NULL for the zero time.
func nsOf(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// timeOf is the inverse of nsOf, without a monotonic reading.
func timeOf(ns sql.NullInt64) time.Time {
	if !ns.Valid {
		return time.Time{}
	}
	return time.Unix(0, ns.Int64)
}

func isBusy(err error) bool {
	var se *msqlite.Error
	return errors.As(err, &se) && (se.Code()&0xff == sqlite3.SQLITE_BUSY || se.Code()&0xff == sqlite3.SQLITE_LOCKED)
}

func isConstraint(err error) bool {
	var se *msqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}
