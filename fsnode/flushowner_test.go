package fsnode

import (
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/stretchr/testify/require"
)

// countingFS counts the FLUSHes that reach it.
type countingFS struct {
	fuse.RawFileSystem
	flushes int
}

func (c *countingFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	c.flushes++
	return fuse.OK
}

func (c *countingFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	return uint32(len(data)), fuse.OK
}

func (c *countingFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {}

// TestFlushFilter: a FLUSH reaches the handle from a process that wrote
// through it since its last FLUSH, or when nobody wrote; not from another
// process (a forked child closing its inherited copy).
func TestFlushFilter(t *testing.T) {
	c := &countingFS{RawFileSystem: fuse.NewDefaultRawFileSystem()}
	f := newFlushFilter(c)
	write := func(fh, owner uint64) {
		f.Write(nil, &fuse.WriteIn{Fh: fh, WriteFlags: fuse.WRITE_LOCKOWNER, LockOwner: owner}, []byte("x"))
	}
	flush := func(fh, owner uint64) int {
		before := c.flushes
		f.Flush(nil, &fuse.FlushIn{Fh: fh, LockOwner: owner})
		return c.flushes - before
	}
	require.Equal(t, 1, flush(1, 7), "nothing written: FLUSH goes through")
	write(1, 7)
	require.Equal(t, 0, flush(1, 8), "another process wrote nothing")
	require.Equal(t, 1, flush(1, 7), "the writer's close")
	require.Equal(t, 0, flush(1, 7), "written once, stored: a second close of the writer's has nothing new")
	f.Write(nil, &fuse.WriteIn{Fh: 1}, []byte("x")) // no lock owner
	require.Equal(t, 1, flush(1, 9), "a write without a lock owner lets every FLUSH through")
	f.Release(nil, &fuse.ReleaseIn{Fh: 1})
	require.Equal(t, 1, flush(1, 8), "a released handle number starts afresh")
}
