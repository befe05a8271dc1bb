package sqlite

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Errors of Open and OpenReadOnly, to check with errors.Is. The error
// returned is one line naming the problem and its fix; these are its kinds.
var (
	// ErrLocked: another process (an rlfs daemon) serves the database.
	ErrLocked = errors.New("sqlite: database is served by another process")
	// ErrNoDir: the database's directory does not exist or is not a directory.
	ErrNoDir = errors.New("sqlite: directory of the database does not exist")
	// ErrPermission: the database, its directory or its lock file may not
	// be read or written by this process.
	ErrPermission = errors.New("sqlite: permission denied")
	// ErrCorrupt: the file is not a SQLite database, is damaged, or is a
	// SQLite database of something other than rlfs. It was left untouched.
	ErrCorrupt = errors.New("sqlite: not an rlfs database")
	// ErrVersion: the database was written by a newer rlfs.
	ErrVersion = errors.New("sqlite: database schema is newer than this rlfs")
)

// openError is a one-line message for the user that still answers
// errors.Is for its kind and for the underlying error.
type openError struct {
	msg  string
	kind error
	err  error
}

func (e *openError) Error() string { return e.msg }

func (e *openError) Unwrap() []error {
	if e.err == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.err}
}

func failf(kind, err error, format string, args ...any) error {
	return &openError{msg: fmt.Sprintf(format, args...), kind: kind, err: err}
}

// errnoText is the short text of a system error: "permission denied".
func errnoText(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

// checkDir makes sure the database's directory exists and, unless readOnly,
// that files can be created in it (the database, its -wal and -shm, the lock).
func checkDir(dir string, readOnly bool) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return failf(ErrNoDir, err, "sqlite: directory %s does not exist; create it (mkdir -p %s) or pass --db", dir, dir)
	case errors.Is(err, unix.ENOTDIR):
		return failf(ErrNoDir, err, "sqlite: %s is not a directory (a part of it is a file); pass --db with another path", dir)
	case errors.Is(err, fs.ErrPermission):
		return failf(ErrPermission, err, "sqlite: cannot reach directory %s (permission denied); fix the permissions of its parents or pass --db", dir)
	case err != nil:
		return failf(ErrNoDir, err, "sqlite: cannot use directory %s (%s); pass --db with another path", dir, errnoText(err))
	case !st.IsDir():
		return failf(ErrNoDir, nil, "sqlite: %s is not a directory; pass --db with another path", dir)
	}
	if readOnly {
		return nil
	}
	switch err := unix.Access(dir, unix.W_OK|unix.X_OK); {
	case errors.Is(err, unix.EROFS):
		return failf(ErrPermission, err, "sqlite: directory %s is on a read-only file system; pass --db with a writable path", dir)
	case err != nil:
		return failf(ErrPermission, err, "sqlite: cannot create files in directory %s (%s); run rlfs as its owner (uid %d), fix its mode, or pass --db", dir, errnoText(err), ownerOf(st))
	}
	return nil
}

func ownerOf(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return 0
}

// sqliteMagic opens every SQLite 3 database file.
var sqliteMagic = []byte("SQLite format 3\x00")

// checkFile inspects an existing database file without changing it. It
// reports whether the file exists; an empty file counts as a new database.
func checkFile(path string, readOnly bool) (exists bool, err error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case errors.Is(err, fs.ErrPermission):
		return false, failf(ErrPermission, err, "sqlite: cannot reach %s (permission denied); fix the permissions of its directory or pass --db", path)
	case err != nil:
		return false, failf(ErrPermission, err, "sqlite: cannot use %s (%s); pass --db with another path", path, errnoText(err))
	case fi.IsDir():
		return true, failf(ErrCorrupt, nil, "sqlite: %s is a directory, not an rlfs database; pass --db with a file path such as %s", path, filepath.Join(path, "meters.db"))
	case !fi.Mode().IsRegular():
		return true, failf(ErrCorrupt, nil, "sqlite: %s is not a regular file (%s), not an rlfs database; pass --db with a file path", path, fi.Mode().Type())
	}
	mode := uint32(unix.R_OK | unix.W_OK)
	what := "read and write"
	if readOnly {
		mode, what = unix.R_OK, "read"
	}
	if err := unix.Access(path, mode); err != nil {
		return true, failf(ErrPermission, err, "sqlite: cannot %s %s (%s); run rlfs as its owner (uid %d), fix its mode, or pass --db", what, path, errnoText(err), ownerOf(fi))
	}
	f, err := os.Open(path)
	if err != nil {
		return true, failf(ErrPermission, err, "sqlite: cannot read %s (%s); fix its mode or pass --db", path, errnoText(err))
	}
	defer f.Close()
	head := make([]byte, 100) // the SQLite header
	n, err := io.ReadFull(f, head)
	if n == 0 && errors.Is(err, io.EOF) {
		return true, nil // empty: SQLite takes it for a new database
	}
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return true, failf(ErrCorrupt, err, "sqlite: cannot read %s (%s); check the disk or pass --db", path, errnoText(err))
	}
	if n < len(head) || !bytes.HasPrefix(head, sqliteMagic) {
		return true, failf(ErrCorrupt, nil, "sqlite: %s is not an rlfs database (file is not a database); move it aside or pass --db", path)
	}
	return true, nil
}

// lockFile is the advisory lock that makes one process the owner of a
// database: PATH.lock, held with flock(LOCK_EX) and holding the owner's pid
// and mountpoint for the message a second process prints.
type lockFile struct {
	path    string
	f       *os.File
	created bool // this process created the file

	// The flock on the database file itself (see lockDB).
	db        *os.File
	dbPath    string
	dbCreated bool // lockDB created the (empty) database file
}

// acquireLock takes the lock of the database at dbPath or fails with
// ErrLocked naming the owner. flock belongs to an open file description,
// so a second acquireLock in the same process fails too.
func acquireLock(dbPath, mountpoint string) (*lockFile, error) {
	path := dbPath + ".lock"
	for range 8 {
		l, err := tryLock(dbPath, path, mountpoint)
		if l != nil || err != nil {
			return l, err
		}
		// The file was removed or replaced between open and flock: the
		// lock we hold guards nothing. Try again on the new file.
	}
	return nil, failf(ErrLocked, nil, "sqlite: %s keeps being replaced while locking; stop the other process or pass --db", path)
}

func tryLock(dbPath, path, mountpoint string) (*lockFile, error) {
	created := true
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		created = false
		f, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS) {
			return nil, failf(ErrPermission, err, "sqlite: cannot open lock file %s (%s); run rlfs as the owner of the database or pass --db", path, errnoText(err))
		}
		return nil, failf(ErrPermission, err, "sqlite: cannot open lock file %s (%s); pass --db with another path", path, errnoText(err))
	}
	fd := int(f.Fd())
	for {
		err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			break
		}
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return nil, lockedError(dbPath, path)
	}
	if err != nil {
		f.Close()
		return nil, failf(ErrPermission, err, "sqlite: cannot lock %s (%s); put the database on a local file system or pass --db", path, errnoText(err))
	}
	var held, now unix.Stat_t
	if unix.Fstat(fd, &held) != nil || unix.Stat(path, &now) != nil || held.Ino != now.Ino || held.Dev != now.Dev {
		f.Close()
		return nil, nil
	}
	l := &lockFile{path: path, f: f, created: created}
	text := fmt.Sprintf("pid=%d\nmountpoint=%s\n", os.Getpid(), oneLine(mountpoint))
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(text), 0)
	}
	if err != nil {
		l.release(false)
		return nil, failf(ErrPermission, err, "sqlite: cannot write lock file %s (%s); check the disk or pass --db", path, errnoText(err))
	}
	return l, nil
}

// lockedError names the owner of the lock, as far as its file says.
func lockedError(dbPath, path string) error {
	pid, mnt := readOwner(path)
	switch {
	case pid == "":
		return failf(ErrLocked, nil, "sqlite: %s is served by another process (it holds %s); stop it or pass --db", dbPath, path)
	case mnt == "":
		return failf(ErrLocked, nil, "sqlite: %s is served by pid %s; stop it or pass --db", dbPath, pid)
	}
	return failf(ErrLocked, nil, "sqlite: %s is served by pid %s (mounted at %s); stop it or pass --db", dbPath, pid, mnt)
}

// readOwner parses the lock file's pid= and mountpoint= lines; it returns
// empty strings for what it cannot read.
func readOwner(path string) (pid, mountpoint string) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) > 64<<10 {
		return "", ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "pid":
			if _, err := strconv.Atoi(v); err == nil {
				pid = v
			}
		case "mountpoint":
			mountpoint = v
		}
	}
	return pid, mountpoint
}

// oneLine keeps a mountpoint with a newline from breaking the lock file.
func oneLine(s string) string { return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(s) }

// close ends a clean stop: it drops the flock on the database file, deletes
// the lock file (unless another file replaced it meanwhile) and drops its
// flock, so that a clean stop leaves no stale PATH.lock behind. A process
// that opened the file just before it went finds it gone once it holds
// the flock (tryLock's inode check) and locks a new one. A lock file left
// by a daemon that was killed is taken over by the next (flock died with
// the killer's victim).
func (l *lockFile) close() {
	if l == nil || l.f == nil {
		return
	}
	l.releaseDB(false)
	var held, now unix.Stat_t
	if unix.Fstat(int(l.f.Fd()), &held) == nil && unix.Stat(l.path, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
		os.Remove(l.path)
	}
	l.f.Close()
	l.f = nil
}

// release drops the lock, and the flock on the database file. With remove,
// a lock file this process created is deleted first (and a database file
// lockDB created, if still empty), so that refusing a database leaves
// nothing beside it; tryLock's inode check keeps that safe against a
// concurrent locker.
func (l *lockFile) release(remove bool) {
	if l == nil || l.f == nil {
		return
	}
	l.releaseDB(remove)
	if remove && l.created {
		os.Remove(l.path)
	}
	l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
}
