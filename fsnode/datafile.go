package fsnode

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rlfs/rlfs/meter"
)

// dataFile is one file of data/. Its name is its place in the tree (a
// rename moves it), read at each operation.
type dataFile struct {
	fs.Inode
	dir *dataDir
}

var (
	_ = (fs.NodeGetattrer)((*dataFile)(nil))
	_ = (fs.NodeSetattrer)((*dataFile)(nil))
	_ = (fs.NodeOpener)((*dataFile)(nil))
	_ = (fs.NodeSetxattrer)((*dataFile)(nil))
)

// name is the file's current name in data/; "" once it was unlinked.
func (n *dataFile) name() string {
	name, _ := n.Parent()
	return name
}

// Setxattr: a data file holds content only (ENOTSUP), so that tools that
// copy attributes (cp -a, rsync -X) go on without them.
func (n *dataFile) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return ToErrno(errNoXattr)
}

// Getattr shows the copy a writer changed last and has not stored yet
// (its own fstat sees its size), else the stored file. Linux never says
// which descriptor a stat(2) or fstat(2) is about: go-fuse hands in the
// node's first open handle (f, ignored), which may be one whose close
// already stored it and whose RELEASE has not come (the kernel sends it
// after close(2) returns). That copy is stale once another close stored
// the file again: an O_APPEND writer's fstat showed the size before its
// own append (TestDataGoClient), and the kernel kept it.
func (n *dataFile) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if st, ok := n.dir.unstored(n); ok {
		n.dir.fileAttr(st, &out.Attr)
		return 0
	}
	st, err := n.dir.d.m.StatData(n.name())
	if err != nil {
		return ToErrno(err)
	}
	n.dir.fileAttr(st, &out.Attr)
	return 0
}

// truncOpenWindow bounds how long after an open its O_TRUNC may arrive as
// a truncate without a file handle (go-fuse does not negotiate atomic
// O_TRUNC: the kernel opens, then truncates by path).
const truncOpenWindow = time.Second

// Setattr truncates: through a handle (ftruncate), the writable handle its
// thread just opened (O_TRUNC), or else the stored file itself, at once and
// whole (truncate(1)). Times are accepted and ignored (touch works); owner
// and mode are the meter's (see sameOwnerMode).
func (n *dataFile) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if !n.dir.sameOwnerMode(in) {
		return ToErrno(errNotAllowed)
	}
	if size, ok := in.GetSize(); ok {
		// ftruncate(2) comes with its file handle; the kernel sends an
		// O_TRUNC open's truncation without one.
		h, explicit := f.(*dataHandle)
		if h == nil && size == 0 {
			h = n.dir.openedBy(ctx, n)
		}
		if err := n.truncate(h, size, explicit); err != nil {
			return ToErrno(err)
		}
		if h != nil {
			// The reply is the copy it truncated (a SETATTR names its
			// handle, unlike a stat): the kernel takes its size.
			h.mu.Lock()
			st := h.statLocked()
			h.mu.Unlock()
			n.dir.fileAttr(st, &out.Attr)
			return 0
		}
	}
	return n.Getattr(ctx, f, out)
}

// sameOwnerMode reports whether in changes no owner, group or mode of a
// file from what data/ shows (the meter's): such a chmod or chown is
// accepted as the no-op it is, so that `sed -i`, `cp -p` and editors,
// which copy a file's owner and mode onto their temporary file, work.
// Any real change is EPERM: chmod or chown the meter instead.
func (dd *dataDir) sameOwnerMode(in *fuse.SetAttrIn) bool {
	a := dd.d.m.Attr()
	if mode, ok := in.GetMode(); ok && mode&0o7777 != a.Mode&0o666 {
		return false
	}
	if uid, ok := in.GetUID(); ok && uid != a.UID {
		return false
	}
	if gid, ok := in.GetGID(); ok && gid != a.GID {
		return false
	}
	return true
}

// truncate sets the size of h's copy, or of the stored file when h is nil.
func (n *dataFile) truncate(h *dataHandle, size uint64, explicit bool) error {
	if size > meter.MaxDataFile {
		return meter.ErrFileTooBig
	}
	if h != nil {
		if !h.writable {
			return errNotOpenForIt
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		h.touched = true
		if int(size) > len(h.buf) {
			if err := h.fitsLocked(int64(size)); err != nil {
				return err // the copy is unchanged, and may still be stored
			}
		}
		h.buf = resize(h.buf, int(size))
		h.changed, h.mtime = true, time.Now()
		// An ftruncate is stored at the close, as a write is (truncate(1)
		// opens and ftruncates); an O_TRUNC alone waits for the last close,
		// so that a shell's `> file` is not stored empty at the close of
		// a dup before its content is written.
		h.wrote = h.wrote || explicit
		return nil
	}
	m := n.dir.d.m
	content, _, err := m.ReadData(n.name())
	if err != nil {
		return err
	}
	return m.WriteData(n.name(), resize(content, int(size)))
}

func resize(b []byte, size int) []byte {
	if size <= len(b) {
		return b[:size:size]
	}
	return append(b, make([]byte, size-len(b))...)
}

// Open hands out a copy of the file: the reader's snapshot, or the writer's
// copy that replaces the file at close.
func (n *dataFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	content, _, err := n.dir.d.m.ReadData(n.name())
	if err != nil {
		return nil, 0, ToErrno(err)
	}
	h := n.dir.newHandle(n, content, flags)
	if h.writable {
		h.pid = callerOf(ctx).PID
	}
	return h, fuse.FOPEN_DIRECT_IO, 0
}

// newHandle makes a handle on node n with content, for flags.
func (dd *dataDir) newHandle(n *dataFile, content []byte, flags uint32) *dataHandle {
	h := &dataHandle{node: n, buf: content, mtime: time.Now(), room: -1,
		writable: flags&syscall.O_ACCMODE != syscall.O_RDONLY, appending: flags&syscall.O_APPEND != 0}
	if h.writable {
		dd.mu.Lock()
		if dd.writers == nil {
			dd.writers = map[*dataHandle]time.Time{}
		}
		dd.writers[h] = time.Now()
		dd.mu.Unlock()
	}
	return h
}

// unstored is the size and time of the copy of n that a writer changed
// last and has not stored (ok false: every writer's copy is stored, or
// there is no writer).
func (dd *dataDir) unstored(n *dataFile) (st meter.DataFile, ok bool) {
	dd.mu.Lock()
	defer dd.mu.Unlock()
	for h := range dd.writers {
		if h.node != n {
			continue
		}
		h.mu.Lock()
		if h.changed && (!ok || h.mtime.After(st.MTime)) {
			st, ok = h.statLocked(), true
		}
		h.mu.Unlock()
	}
	return st, ok
}

// openedBy finds the writable handle on n that the calling thread opened
// last, within truncOpenWindow, and has not written or truncated since:
// the target of its O_TRUNC, which the kernel sends as a truncation to 0
// without a file handle. (A truncate(2) to 0 by path in that instant, by
// that thread, cannot be told from it; to any other size it is stored at
// once.)
func (dd *dataDir) openedBy(ctx context.Context, n *dataFile) *dataHandle {
	pid := callerOf(ctx).PID
	dd.mu.Lock()
	defer dd.mu.Unlock()
	var best *dataHandle
	var at time.Time
	for h, opened := range dd.writers {
		if h.node == n && h.pid == pid && time.Since(opened) < truncOpenWindow && opened.After(at) && h.fresh() {
			best, at = h, opened
		}
	}
	return best
}

// dataHandle is an open data file: a snapshot to read, or a copy to write.
type dataHandle struct {
	node      *dataFile
	writable  bool
	appending bool
	pid       int // the thread that opened it (writable handles)

	mu sync.Mutex
	// buf is the copy; changed says it differs from what was stored (a
	// truncate or a write), wrote that a write changed it: the FLUSH of a
	// close stores it only then, so that the close of a descriptor dup'd
	// right after an O_TRUNC open (a shell's `> file`) does not store the
	// file empty before its content is written.
	buf     []byte
	changed bool
	wrote   bool
	refused error // a write was refused (EFBIG, ENOSPC): the copy is never stored
	touched bool  // a write or a truncation came through it, ever
	created bool  // this open made the file (empty): a refused copy takes it away again
	mtime   time.Time
	room    int64 // bytes the copy may hold within the meter's bounds, as last asked; -1: not asked yet
}

var (
	_ = (fs.FileReader)((*dataHandle)(nil))
	_ = (fs.FileWriter)((*dataHandle)(nil))
	_ = (fs.FileFlusher)((*dataHandle)(nil))
	_ = (fs.FileFsyncer)((*dataHandle)(nil))
	_ = (fs.FileReleaser)((*dataHandle)(nil))
)

// statLocked is the size and time of h's copy (h.mu held).
func (h *dataHandle) statLocked() meter.DataFile {
	return meter.DataFile{Size: int64(len(h.buf)), MTime: h.mtime}
}

// fresh reports whether nothing changed the copy since the open.
func (h *dataHandle) fresh() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.touched
}

func (h *dataHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fuse.ReadResultData(sliceAt(h.buf, off, len(dest))), 0
}

// Write changes the copy. A file past 1 MiB gets EFBIG, and one that
// would take the meter's files past 16 MiB ENOSPC, at the write that
// crosses the bound; the copy is then not stored: the file keeps its
// previous content.
func (h *dataHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.writable {
		return 0, ToErrno(errNotOpenForIt)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.touched = true
	if h.appending {
		off = int64(len(h.buf))
	}
	end := off + int64(len(data))
	if end > int64(len(h.buf)) {
		if err := h.fitsLocked(end); err != nil {
			h.refused = err
			return 0, ToErrno(err)
		}
	}
	if end > int64(len(h.buf)) {
		h.buf = resize(h.buf, int(end))
	}
	copy(h.buf[off:], data)
	h.changed, h.wrote, h.mtime = true, true, time.Now()
	return uint32(len(data)), 0
}

// fitsLocked checks that the copy may grow to size bytes: EFBIG past
// MaxDataFile, ENOSPC past the room the meter's other files leave (asked
// of the store again only when the last answer is too small, since other
// files may have shrunk meanwhile).
func (h *dataHandle) fitsLocked(size int64) error {
	if size > meter.MaxDataFile {
		return meter.ErrFileTooBig
	}
	if size <= h.room {
		return nil
	}
	room, err := h.node.dir.d.m.DataRoom(h.node.name())
	if err != nil {
		return err
	}
	if h.room = room; size > room {
		return meter.ErrNoSpace
	}
	return nil
}

// Flush stores the copy, whole, when a write changed it: close(2) returns
// once the new content is durable, or with the error that kept it out
// (EFBIG, ENOSPC: the file keeps its previous content).
func (h *dataHandle) Flush(ctx context.Context) syscall.Errno { return ToErrno(h.commit(false)) }

// Fsync stores the copy when it changed.
func (h *dataHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return ToErrno(h.commit(true))
}

// commit stores the copy if a write changed it, or with any it changed at
// all (a truncate alone is stored at the last close, or at fsync).
func (h *dataHandle) commit(any bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.writable {
		return nil
	}
	m, name := h.node.dir.d.m, h.node.name()
	if h.refused != nil {
		// Every close says so (that of a child that inherited the
		// descriptor as well as the writer's own); the copy, which may
		// hold part of the refused write, is never stored.
		h.changed, h.wrote = false, false
		h.uncreate(m, name)
		if name == "" {
			return nil
		}
		return h.refused
	}
	if !h.changed || (!any && !h.wrote) {
		return nil
	}
	if name == "" {
		h.changed, h.wrote = false, false // unlinked meanwhile: its content goes with it
		return nil
	}
	err := m.WriteData(name, h.buf)
	if err != nil {
		if errors.Is(err, meter.ErrNoSpace) || errors.Is(err, meter.ErrFileTooBig) {
			h.changed, h.wrote = false, false // refused for good: nothing is stored
			h.uncreate(m, name)
		}
		return err
	}
	h.changed, h.wrote, h.created = false, false, false
	return nil
}

// uncreate removes the empty file this open made, when what was written to
// it is refused: a refused write stores nothing, not even an empty file.
func (h *dataHandle) uncreate(m *meter.Meter, name string) {
	if !h.created {
		return
	}
	h.created = false
	if f, err := m.StatData(name); err == nil && f.Size == 0 {
		_ = m.DeleteData(name)
	}
}

// Release stores a change no FLUSH stored (a truncate without writes:
// `: > file`), then forgets the handle.
func (h *dataHandle) Release(ctx context.Context) syscall.Errno {
	if err := h.commit(true); err != nil && !errors.Is(err, meter.ErrFileTooBig) && !errors.Is(err, meter.ErrNoSpace) {
		h.node.dir.d.root.log.Warn("a data file's change was not stored at its last close", "meter", h.node.dir.d.m.Name(), "file", h.node.name(), "err", err)
	}
	if h.writable {
		dd := h.node.dir
		dd.mu.Lock()
		delete(dd.writers, h)
		dd.mu.Unlock()
	}
	return 0
}
