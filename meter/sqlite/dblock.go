package sqlite

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The lock file beside a database guards one name of it. A hard link gives
// the same file another name, and so another lock file: a second daemon
// would serve the same database. So the owner also holds flock(2) on the
// database file itself, which every name shares. (flock and SQLite's
// fcntl locks are independent on Linux. The descriptor is only closed once
// SQLite has closed the file, because closing any descriptor of a file drops
// the process's fcntl locks on it.)

// lockDB takes flock(LOCK_EX) on the database file at dbPath, creating it
// empty if absent (SQLite takes an empty file for a new database). It
// replaces, and then releases, a flock this lockFile held on a previous
// file (Recreate). It fails with ErrLocked when another process holds it.
func (l *lockFile) lockDB(dbPath string) error {
	created := false
	f, err := os.OpenFile(dbPath, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err == nil {
		created = true
	} else if errors.Is(err, os.ErrExist) {
		f, err = os.OpenFile(dbPath, os.O_RDONLY, 0)
	}
	if err != nil {
		return failf(ErrPermission, err, "sqlite: cannot open %s to lock it (%s); fix its mode or pass --db", dbPath, errnoText(err))
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return hardLinkError(dbPath)
		}
		return failf(ErrPermission, err, "sqlite: cannot lock %s (%s); put the database on a local file system or pass --db", dbPath, errnoText(err))
	}
	if l.db != nil {
		l.db.Close()
	}
	l.db, l.dbPath, l.dbCreated = f, dbPath, created
	return nil
}

// releaseDB drops the flock on the database file. With remove, a file that
// lockDB created and that is still empty is deleted.
func (l *lockFile) releaseDB(remove bool) {
	if l.db == nil {
		return
	}
	if fi, err := l.db.Stat(); remove && l.dbCreated && err == nil && fi.Size() == 0 {
		os.Remove(l.dbPath)
	}
	l.db.Close()
	l.db = nil
}

// hardLinkError says that the database file at dbPath is locked by another
// process, which reached it under another name (its own lock file beside
// that name let it in). It names that process, the name and its mountpoint
// as far as /proc tells.
func hardLinkError(dbPath string) error {
	var st unix.Stat_t
	pid, name, mnt := "", "", ""
	if unix.Stat(dbPath, &st) == nil {
		pid = flockOwner(st)
	}
	if pid != "" {
		name = nameIn(pid, st)
	}
	if name != "" {
		_, mnt = readOwner(name + ".lock")
	}
	switch {
	case name != "" && mnt != "":
		return failf(ErrLocked, nil, "sqlite: %s is served by pid %s (mounted at %s) under another name, %s (a hard link to the same file); stop it or pass --db", dbPath, pid, mnt, name)
	case name != "":
		return failf(ErrLocked, nil, "sqlite: %s is served by pid %s under another name, %s (a hard link to the same file); stop it or pass --db", dbPath, pid, name)
	case pid != "":
		return failf(ErrLocked, nil, "sqlite: %s is served by pid %s under another name (a hard link to the same file); stop it or pass --db", dbPath, pid)
	}
	return failf(ErrLocked, nil, "sqlite: %s is served by another rlfs under another name (a hard link to the same file); stop it or pass --db", dbPath)
}

// flockOwner returns the pid that /proc/locks shows holding a flock on the
// file st describes, or "".
func flockOwner(st unix.Stat_t) string {
	f, err := os.Open("/proc/locks")
	if err != nil {
		return ""
	}
	defer f.Close()
	// "1: FLOCK  ADVISORY  WRITE 4121 fe:00:10000940 0 EOF"
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 6 && fields[1] == "FLOCK" && fields[5] == want {
			if _, err := strconv.Atoi(fields[4]); err == nil {
				return fields[4]
			}
		}
	}
	return ""
}

// nameIn returns the path under which process pid has the file st open, or
// "" (the process is gone, or its descriptors are not ours to read).
func nameIn(pid string, st unix.Stat_t) string {
	dir := filepath.Join("/proc", pid, "fd")
	es, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range es {
		var fst unix.Stat_t
		p := filepath.Join(dir, e.Name())
		if unix.Stat(p, &fst) != nil || fst.Dev != st.Dev || fst.Ino != st.Ino {
			continue
		}
		if name, err := os.Readlink(p); err == nil && filepath.IsAbs(name) && !strings.HasSuffix(name, " (deleted)") {
			return name
		}
	}
	return ""
}
