package sqlite

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rlfs/rlfs/meter"
)

// The journal makes a grant or a completion durable in one small pwrite
// (about a microsecond) instead of one SQLite transaction (tens of
// microseconds). Records are appended to one of two files beside the
// database, PATH.grants-0 and PATH.grants-1. A flusher moves them into SQLite
// in batches, switches the journal to the other (empty) file and truncates
// the one it flushed. At Open, records left in either file are replayed,
// idempotently, before anything is read. With sync "normal" a record in the
// page cache survives a crash of the daemon; "full" adds a group fdatasync
// for grants. (A completion lost to a power loss is counted at the restart,
// which is later: on the safe side.)
//
// Record: u32 length of the rest | u32 CRC-32 (Castagnoli) of the payload |
// payload: u8 kind | u64 seq | u16 len, meter | u64 id | then for a grant:
// i64 granted ns | i64 TAT ns (0: none) | i64 pid | u32 uid | u32 gid | u16
// len, cmd; for a completion: i64 done ns | u8 expired; for a revocation
// nothing more. A torn or corrupt
// tail (a power loss mid-write) ends a file's replay.

// flushEvery is how often pending grants and completions go into SQLite.
const flushEvery = 50 * time.Millisecond

// flushAt is how many pending operations trigger a flush before flushEvery.
const flushAt = 4096

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type opKind uint8

const (
	opGrant opKind = iota + 1
	opComplete
	opRetire
	opRevoke
	opSettle
)

// op is a grant, completion, revocation or retirement waiting to go into
// SQLite.
type op struct {
	kind    opKind
	meter   string
	call    meter.Call
	tat     time.Time    // opGrant
	utat    time.Time    // opGrant, opSettle: the units bucket's TAT after it
	cutoff  time.Time    // opRetire
	byGrant bool         // opRetire
	past    []meter.Past // opRetire: the history after it
}

type journal struct {
	full bool // fdatasync before a grant counts as durable

	mu      sync.Mutex
	files   [2]*os.File
	size    [2]int64
	dirty   [2]bool // written since the last fdatasync
	active  int
	seq     uint64
	pending []op
	spare   []op // a flushed batch's array, emptied, for pending to reuse
	buf     []byte
	out     *outage // counts and logs failed writes (the store's, set by startJournal)
	kick    chan struct{}
	known   map[string]bool // meters that exist

	written atomic.Int64 // bytes appended, ever
	syncMu  sync.Mutex
	synced  atomic.Int64 // bytes known durable
}

func journalPath(db string, i int) string { return fmt.Sprintf("%s.grants-%d", db, i) }

// startJournal opens the grant journal, replays what a crash left in it,
// learns the meters' names and starts the flusher.
func (s *Store) startJournal(full bool) error {
	j, ops, err := openJournal(s.path, full)
	if err != nil {
		return err
	}
	s.j = j
	j.out = &s.journalOut
	if len(ops) > 0 {
		if err := s.txLocked(func() error { return s.applyLocked(ops) }); err != nil {
			return fmt.Errorf("sqlite: replay %d grants from the journal of %s: %w", len(ops), s.path, err)
		}
	}
	if err := j.reset(); err != nil {
		return fmt.Errorf("sqlite: empty the grant journal of %s: %w", s.path, err)
	}
	ms, err := s.loadMeters()
	if err != nil {
		return err
	}
	for _, m := range ms {
		j.setKnown(m.Name, true)
	}
	s.stop, s.stopped = make(chan struct{}), make(chan struct{})
	go s.flusher(s.stop, s.stopped)
	return nil
}

// openJournal opens both journal files and returns the operations they hold,
// in order, for replay.
func openJournal(db string, full bool) (*journal, []op, error) {
	j := &journal{full: full, kick: make(chan struct{}, 1), known: map[string]bool{}}
	var recs []journalRec
	for i := range j.files {
		f, err := os.OpenFile(journalPath(db, i), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			j.close()
			return nil, nil, classify(db, "open the grant journal of", err)
		}
		j.files[i] = f
		rs, err := readJournal(f)
		if err != nil {
			j.close()
			return nil, nil, fmt.Errorf("sqlite: read the grant journal %s: %w", f.Name(), err)
		}
		recs = append(recs, rs...)
	}
	slices.SortFunc(recs, func(a, b journalRec) int { return cmp.Compare(a.seq, b.seq) })
	ops := make([]op, 0, len(recs))
	for _, r := range recs {
		ops = append(ops, r.op)
		j.seq = max(j.seq, r.seq)
	}
	return j, ops, nil
}

func (j *journal) appendGrant(name string, c meter.Call, tat, utat time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.appendLocked(op{kind: opGrant, meter: name, call: c, tat: tat, utat: utat}, func(b []byte) []byte {
		b = binary.LittleEndian.AppendUint64(b, uint64(c.GrantedAt.UnixNano()))
		b = binary.LittleEndian.AppendUint64(b, uint64(nsOrZero(tat)))
		b = binary.LittleEndian.AppendUint64(b, uint64(int64(c.Holder.PID)))
		b = binary.LittleEndian.AppendUint32(b, c.Holder.UID)
		b = binary.LittleEndian.AppendUint32(b, c.Holder.GID)
		b = appendStr(b, c.Holder.Cmd)
		// Since weighted calls: the cost and the units bucket's TAT. A
		// record without them (an older daemon's) is a call of cost 1.
		b = binary.LittleEndian.AppendUint64(b, uint64(c.Cost))
		return binary.LittleEndian.AppendUint64(b, uint64(nsOrZero(utat)))
	})
}

// appendSettle writes a settlement record with one pwrite and queues it.
func (j *journal) appendSettle(name string, id uint64, actual int64, utat time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	c := meter.Call{ID: id, Actual: actual, Settled: true}
	return j.appendLocked(op{kind: opSettle, meter: name, call: c, utat: utat}, func(b []byte) []byte {
		b = binary.LittleEndian.AppendUint64(b, uint64(actual))
		return binary.LittleEndian.AppendUint64(b, uint64(nsOrZero(utat)))
	})
}

func nsOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func timeOrZero(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// appendComplete writes a completion record with one pwrite and queues it.
func (j *journal) appendComplete(name string, c meter.Call) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.appendLocked(op{kind: opComplete, meter: name, call: c}, func(b []byte) []byte {
		b = binary.LittleEndian.AppendUint64(b, uint64(c.DoneAt.UnixNano()))
		return append(b, byte(boolInt(c.Expired)))
	})
}

// appendRevoke writes a revocation record with one pwrite and queues it.
func (j *journal) appendRevoke(name string, id uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.appendLocked(op{kind: opRevoke, meter: name, call: meter.Call{ID: id}}, func(b []byte) []byte { return b })
}

// appendLocked writes o's record, whose kind-specific part body appends.
// A write that fails (a full disk) leaves the file as it was: its size does
// not advance, so the next append overwrites what part of the record got
// written, and the journal works again as soon as a write does. A grant
// that could not be written fails; a completion or revocation, which
// happened anyway, is still queued for SQLite (a crash before the flush
// then counts the call until the restart, on the safe side).
func (j *journal) appendLocked(o op, body func([]byte) []byte) error {
	if !j.known[o.meter] {
		return meter.ErrNotExist
	}
	j.seq++
	b := j.buf[:0]
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0) // length and CRC, below
	b = append(b, byte(o.kind))
	b = binary.LittleEndian.AppendUint64(b, j.seq)
	b = appendStr(b, o.meter)
	b = binary.LittleEndian.AppendUint64(b, o.call.ID)
	b = body(b)
	binary.LittleEndian.PutUint32(b, uint32(len(b)-8))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	j.buf = b
	f := j.files[j.active]
	if _, err := f.WriteAt(b, j.size[j.active]); err != nil {
		j.seq--
		_ = f.Truncate(j.size[j.active]) // drop a partial record; shrinking needs no space
		j.out.fail(err)
		if o.kind != opGrant {
			j.queueLocked(o)
		}
		return fmt.Errorf("write the journal %s: %w", f.Name(), err)
	}
	j.out.ok()
	j.size[j.active] += int64(len(b))
	j.written.Add(int64(len(b)))
	j.dirty[j.active] = true
	j.queueLocked(o)
	return nil
}

func appendStr(b []byte, s string) []byte {
	if len(s) > 1<<16-1 {
		s = s[:1<<16-1]
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// queueRetire queues a retirement for SQLite. It is not journaled: a crash
// before the flush leaves the calls in SQLite and the journal, and the engine
// retires them again after the restart.
func (j *journal) queueRetire(name string, cutoff time.Time, byGrant bool, past []meter.Past) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.known[name] {
		return meter.ErrNotExist
	}
	j.queueLocked(op{kind: opRetire, meter: name, cutoff: cutoff, byGrant: byGrant, past: past})
	return nil
}

// setKnown records whether meter name exists.
func (j *journal) setKnown(name string, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if ok {
		j.known[name] = true
	} else {
		delete(j.known, name)
	}
}

func (j *journal) queueLocked(o op) {
	j.pending = append(j.pending, o)
	if len(j.pending) == flushAt {
		select {
		case j.kick <- struct{}{}:
		default:
		}
	}
}

// take hands the pending operations to a flush and switches appends to the
// other file if it is empty. It returns the file to truncate once the
// operations are in SQLite (-1: none).
func (j *journal) take() ([]op, int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	ops := j.pending
	j.pending, j.spare = j.spare, nil
	other := 1 - j.active
	if len(ops) == 0 || j.size[other] != 0 {
		return ops, -1
	}
	old := j.active
	j.active = other
	return ops, old
}

// recycle gives the array of a flushed batch back for appends to reuse, so
// that the hot path does not grow a new one (ops are a few hundred bytes
// each) after every flush. Its elements are cleared first: they hold meter
// names and history slices.
func (j *journal) recycle(ops []op) {
	if cap(ops) > 2*flushAt {
		return // a burst's array: let it go
	}
	clear(ops)
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.spare == nil {
		j.spare = ops[:0]
	}
}

// untake puts operations whose flush failed back in front of the queue.
func (j *journal) untake(ops []op) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.pending = append(ops, j.pending...)
}

// truncateInactive empties the file appends do not go to: after a
// successful flush, every record in it is in SQLite (take moved appends
// away from it before the flush, or an earlier flush that failed left it
// for this one).
func (j *journal) truncateInactive() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	i := 1 - j.active
	if j.size[i] == 0 {
		return nil
	}
	if err := j.files[i].Truncate(0); err != nil {
		return err
	}
	j.size[i] = 0
	return nil
}

// reopen opens the journal files anew at db's path (after the database
// was recreated) and empties them.
func (j *journal) reopen(db string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := range j.files {
		f, err := os.OpenFile(journalPath(db, i), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		j.files[i].Close()
		j.files[i], j.size[i] = f, 0
	}
	j.pending, j.active = nil, 0
	return nil
}

// reset empties both files and drops what is pending: the caller has
// written the whole state elsewhere.
func (j *journal) reset() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.pending = nil
	var errs []error
	for i, f := range j.files {
		errs = append(errs, f.Truncate(0))
		j.size[i] = 0
	}
	return errors.Join(errs...)
}

// waitDurable returns once every record appended so far is on disk: one
// fdatasync serves every record appended before it started (group commit).
func (j *journal) waitDurable() error {
	if !j.full {
		return nil
	}
	target := j.written.Load()
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	if j.synced.Load() >= target {
		return nil
	}
	j.mu.Lock()
	upto := j.written.Load()
	var files []*os.File
	for i, f := range j.files {
		if j.dirty[i] {
			files = append(files, f)
			j.dirty[i] = false
		}
	}
	j.mu.Unlock()
	for _, f := range files {
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			j.out.fail(err)
			j.mu.Lock()
			j.dirty = [2]bool{true, true} // sync them again next time
			j.mu.Unlock()
			return fmt.Errorf("sqlite: fdatasync %s: %w", f.Name(), err)
		}
	}
	j.out.ok()
	j.synced.Store(upto)
	return nil
}

func (j *journal) close() {
	for _, f := range j.files {
		if f != nil {
			f.Close()
		}
	}
}

// remove deletes both (empty) files: the store closed cleanly.
func (j *journal) remove() {
	for _, f := range j.files {
		if f != nil {
			os.Remove(f.Name())
		}
	}
}
