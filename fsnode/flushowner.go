package fsnode

import (
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// flushFilter is the raw filesystem the kernel talks to: go-fuse's node
// bridge, with one rule of its own. A FLUSH (every close(2) of every copy
// of a descriptor) reaches the file handle only when the closing process
// wrote through the descriptor since its last FLUSH, or when nothing was
// ever written through it. A data file's writer stores its copy at FLUSH;
// without the rule, a child that merely inherited the descriptor (a fork
// that exits, or execs and so closes a close-on-exec descriptor) stored
// the writer's half-written copy whenever it closed it.
//
// Processes are told apart by the kernel's lock owner, which WRITE and
// FLUSH both carry: one per file descriptor table, so the threads of a
// process share it and a forked child has its own. A WRITE without one
// (FUSE_WRITE_LOCKOWNER unset) lets every FLUSH through, as before.
//
// It is safe for concurrent use.
type flushFilter struct {
	fuse.RawFileSystem

	mu      sync.Mutex
	writers map[uint64]map[uint64]bool // by file handle: lock owners that wrote and have not flushed since (0: unknown)
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
	f.mu.Lock()
	defer f.mu.Unlock()
	owners := f.writers[in.Fh]
	if owners == nil {
		owners = map[uint64]bool{}
		f.writers[in.Fh] = owners
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

func (f *flushFilter) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	if !f.mayFlush(in.Fh, in.LockOwner) {
		return fuse.OK // a process that wrote nothing closed its copy
	}
	return f.RawFileSystem.Flush(cancel, in)
}

func (f *flushFilter) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	f.mu.Lock()
	delete(f.writers, in.Fh) // before go-fuse may hand the number out again
	f.mu.Unlock()
	f.RawFileSystem.Release(cancel, in)
}
