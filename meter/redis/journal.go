package redis

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The local journal is this host's own record, in a file, of what it must
// be able to tell the store again: the meters it knows (to put them back
// should the store lose its data), its calls that may still count, the
// completions it could not deliver yet, and the store's epoch it last saw.
// One daemon writes it at a time (flock). Each change is one appended JSON
// line, written before the engine is answered, so it survives kill -9 of the
// daemon; a torn last line (a crash mid-write) is ignored. When the file
// grows past journalCompactAt and to twice what its last rewrite wrote, it
// is rewritten with what still matters: a host that must remember many
// calls (a window of 100,000) rewrites after as many lines again, not after
// every line (amortized O(1) a line).

var journalCompactAt int64 = 4 << 20 // a variable for tests

// compactDue says whether the journal should be rewritten now.
func (j *journal) compactDue() bool {
	return j.size > max(journalCompactAt, 2*j.base)
}

// jrec is one line of the journal.
type jrec struct {
	K      string `json:"k"` // epoch, def, undef, call, done, gone, out, sent
	M      string `json:"m,omitempty"`
	E      string `json:"e,omitempty"`
	Spec   string `json:"spec,omitempty"`
	Mode   uint32 `json:"mode,omitempty"`
	UID    uint32 `json:"uid,omitempty"`
	GID    uint32 `json:"gid,omitempty"`
	ID     uint64 `json:"id,omitempty"`
	Ticket uint64 `json:"t,omitempty"`
	G      int64  `json:"g,omitempty"` // granted, µs store time
	D      int64  `json:"d,omitempty"` // done, µs store time
	C      int64  `json:"c,omitempty"` // cost (0 in journals of earlier versions: 1)
	PID    int    `json:"pid,omitempty"`
	Rev    bool   `json:"rev,omitempty"`
}

type journal struct {
	path string
	f    *os.File
	size int64
	base int64 // the size its last rewrite wrote
	// rewrites counts the rewrites (tests)
	rewrites int
	lock     *os.File
	bad      bool   // a write failed: logged once, the journal is behind
	buf      []byte // the line being written (write's, reused)
}

// openJournal locks path's journal and reads what it holds.
func openJournal(path, host string) (*journal, []jrec, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, nil, fmt.Errorf("redis: create the directory of the journal %s: %v; create it or pass --journal", path, err)
	}
	lock, err := lockJournal(path, host)
	if err != nil {
		return nil, nil, err
	}
	_ = lock.Truncate(0)
	_, _ = lock.WriteAt([]byte("pid="+strconv.Itoa(os.Getpid())+"\n"), 0)
	recs, err := readJournal(path)
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("redis: open the journal %s: %v; check its permissions or pass --journal", path, err)
	}
	fi, _ := f.Stat()
	return &journal{path: path, f: f, size: fi.Size(), lock: lock}, recs, nil
}

// lockJournal takes the flock of path.lock, creating the file if absent.
// A clean close deletes that file (journal.close), so a flock won on a file
// that is no longer at path.lock guards nothing: then it tries again.
func lockJournal(path, host string) (*os.File, error) {
	for range 8 {
		lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("redis: open %s.lock: %v; check its directory's permissions or pass --journal", path, err)
		}
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			owner, _ := os.ReadFile(path + ".lock")
			lock.Close()
			return nil, fmt.Errorf("redis: the journal %s is in use by another rlfs (%s); one daemon serves host %q at a time: stop it, or give this one another --host and --journal",
				path, strings.TrimSpace(string(owner)), host)
		}
		if sameFile(lock, path+".lock") {
			return lock, nil
		}
		lock.Close()
	}
	return nil, fmt.Errorf("redis: %s.lock keeps being replaced while locking; stop the other rlfs or pass --journal", path)
}

// sameFile reports whether f is the file at path now.
func sameFile(f *os.File, path string) bool {
	var held, now unix.Stat_t
	return unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(path, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev
}

func readJournal(path string) ([]jrec, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redis: read the journal %s: %v", path, err)
	}
	defer f.Close()
	var out []jrec
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r jrec
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			break // a torn line: the crash happened here
		}
		out = append(out, r)
	}
	return out, nil
}

// write appends r; the caller holds the store's lock.
func (j *journal) write(r jrec) error {
	if j == nil {
		return nil
	}
	j.buf = append(appendRec(j.buf[:0], r), '\n')
	n, err := j.f.Write(j.buf)
	j.size += int64(n)
	return err
}

// appendRec appends r as json.Marshal writes it, without reflection when
// its strings are plain (printable ASCII that JSON writes as is); else
// through json.Marshal. TestJournalEncoding holds the two together.
func appendRec(b []byte, r jrec) []byte {
	for _, s := range []string{r.K, r.M, r.E, r.Spec} {
		if !plainJSON(s) {
			m, _ := json.Marshal(r)
			return append(b, m...)
		}
	}
	b = append(append(append(b, `{"k":"`...), r.K...), '"')
	str := func(key, v string) {
		if v != "" {
			b = append(append(append(append(append(b, `,"`...), key...), `":"`...), v...), '"')
		}
	}
	num := func(key string, v int64) {
		if v != 0 {
			b = strconv.AppendInt(append(append(append(b, `,"`...), key...), `":`...), v, 10)
		}
	}
	unum := func(key string, v uint64) {
		if v != 0 {
			b = strconv.AppendUint(append(append(append(b, `,"`...), key...), `":`...), v, 10)
		}
	}
	str("m", r.M)
	str("e", r.E)
	str("spec", r.Spec)
	unum("mode", uint64(r.Mode))
	unum("uid", uint64(r.UID))
	unum("gid", uint64(r.GID))
	unum("id", r.ID)
	unum("t", r.Ticket)
	num("g", r.G)
	num("d", r.D)
	num("c", r.C)
	num("pid", int64(r.PID))
	if r.Rev {
		b = append(b, `,"rev":true`...)
	}
	return append(b, '}')
}

// plainJSON reports whether json.Marshal writes s as is between quotes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// rewrite replaces the journal with recs (a snapshot of what matters).
func (j *journal) rewrite(recs []jrec) error {
	tmp := j.path + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	var size int64
	for _, r := range recs {
		j.buf = append(appendRec(j.buf[:0], r), '\n')
		n, _ := w.Write(j.buf)
		size += int64(n)
	}
	if err := errors.Join(w.Flush(), f.Sync(), f.Close()); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return err
	}
	nf, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	j.f.Close()
	j.f, j.size, j.base = nf, size, size
	j.rewrites++
	return nil
}

// close closes the journal and deletes its lock file before dropping the
// flock, so that a clean stop leaves no stale .lock behind (one left by a
// killed daemon is taken over by the next).
func (j *journal) close() {
	if j == nil {
		return
	}
	j.f.Close()
	if sameFile(j.lock, j.path+".lock") {
		os.Remove(j.path + ".lock")
	}
	j.lock.Close()
}
