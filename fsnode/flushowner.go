package fsnode

import (
	"sync"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// flushFilter is the raw filesystem the kernel talks to: go-fuse's node
// bridge, with one rule of its own. A FLUSH (every close(2) of every copy
// of a descriptor) reaches the file handle only when the closing process
// wrote (or ftruncated) through the descriptor since its last FLUSH, or
// when nothing was ever written through it. A data file's writer stores its copy at FLUSH;
// without the rule, a child that merely inherited the descriptor (a fork
// that exits, or execs and so closes a close-on-exec descriptor) stored
// the writer's half-written copy whenever it closed it.
//
// Processes are told apart by the kernel's lock owner, which WRITE, a
// SETATTR of the size and FLUSH all carry: one per file descriptor table, so the threads of a
// process share it and a forked child has its own. A WRITE without one
// (FUSE_WRITE_LOCKOWNER unset) lets every FLUSH through, as before.
//
// It is safe for concurrent use.
type flushFilter struct {
	fuse.RawFileSystem

	mu      sync.Mutex
	writers map[uint64]map[uint64]bool // by file handle: lock owners that wrote and have not flushed since (0: unknown)
	handles atomic.Int64               // len(writers): RELEASE of an acquire, the hot path, skips the lock at 0
}

func newFlushFilter(raw fuse.RawFileSystem) *flushFilter {
	return &flushFilter{RawFileSystem: raw, writers: map[uint64]map[uint64]bool{}}
}

// wrote records the writer of in before the write is answered, so that
// its close, which cannot come before the answer, finds it.
func (f *flushFilter) wrote(in *fuse.WriteIn) {
	owner := uint64(0)
	if in.WriteFlags&fuse.WRITE_LOCKOWNER != 0 {
		owner = in.LockOwner
	}
	f.changed(in.Fh, owner)
}

// changed records that owner changed the copy of file handle fh.
func (f *flushFilter) changed(fh, owner uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	owners := f.writers[fh]
	if owners == nil {
		owners = map[uint64]bool{}
		f.writers[fh] = owners
		f.handles.Add(1)
	}
	owners[owner] = true
}

// mayFlush reports whether a FLUSH of fh by owner reaches the handle, and
// forgets owner's writes if so (they are about to be stored).
func (f *flushFilter) mayFlush(fh, owner uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	owners, ok := f.writers[fh]
	if !ok {
		return true // nothing was written through it
	}
	if !owners[owner] && !owners[0] {
		return false
	}
	delete(owners, owner)
	return true
}

func (f *flushFilter) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	f.wrote(in)
	return f.RawFileSystem.Write(cancel, in, data)
}

func (f *flushFilter) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	f.wrote(in)
	return f.RawFileSystem.Writev(cancel, in, data)
}

// SetAttr: an ftruncate (a size change through a file handle) changes the
// copy as a write does, and the kernel says whose it is in the same way.
func (f *flushFilter) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.Valid&fuse.FATTR_FH != 0 && in.Valid&fuse.FATTR_SIZE != 0 {
		owner := uint64(0)
		if in.Valid&fuse.FATTR_LOCKOWNER != 0 {
			owner = in.LockOwner
		}
		f.changed(in.Fh, owner)
	}
	return f.RawFileSystem.SetAttr(cancel, in, out)
}

func (f *flushFilter) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	if !f.mayFlush(in.Fh, in.LockOwner) {
		return fuse.OK // a process that wrote nothing closed its copy
	}
	return f.RawFileSystem.Flush(cancel, in)
}

func (f *flushFilter) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	if f.handles.Load() > 0 {
		f.mu.Lock()
		if _, ok := f.writers[in.Fh]; ok {
			delete(f.writers, in.Fh) // before go-fuse may hand the number out again
			f.handles.Add(-1)
		}
		f.mu.Unlock()
	}
	f.RawFileSystem.Release(cancel, in)
}
