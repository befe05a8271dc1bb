package fsnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rlfs/rlfs/meter"
)

// textHandle serves a snapshot taken at open; reads are consistent with
// each other and never stale with respect to the open.
type textHandle struct{ data []byte }

var _ = (fs.FileReader)((*textHandle)(nil))

func (t *textHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return fuse.ReadResultData(sliceAt(t.data, off, len(dest))), 0
}

// statusFile is a meter's `status`, a `key: value` snapshot, or with json
// its `status.json`, the same snapshot as a meter.Report.
type statusFile struct {
	fs.Inode
	d    *meterDir
	json bool
}

var (
	_ = (fs.NodeOpener)((*statusFile)(nil))
	_ = (fs.NodeGetattrer)((*statusFile)(nil))
	_ = (fs.NodeSetattrer)((*statusFile)(nil))
)

func (s *statusFile) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fileAttr(s.d, 0o444, out)
	return 0
}

func (s *statusFile) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return ToErrno(errNotAllowed)
}

func (s *statusFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, ToErrno(errNotAllowed)
	}
	snap := s.d.m.Status()
	if !s.json {
		return &textHandle{data: []byte(snap.Text())}, fuse.FOPEN_DIRECT_IO, 0
	}
	b, err := json.Marshal(snap.Report())
	if err != nil {
		return nil, 0, ToErrno(err)
	}
	return &textHandle{data: append(b, '\n')}, fuse.FOPEN_DIRECT_IO, 0
}

// limitsFile is a meter's `limits`: its spec, one item per line. A write
// replaces the spec: validated, persisted and applied at once.
type limitsFile struct {
	fs.Inode
	d *meterDir
}

var (
	_ = (fs.NodeOpener)((*limitsFile)(nil))
	_ = (fs.NodeGetattrer)((*limitsFile)(nil))
	_ = (fs.NodeSetattrer)((*limitsFile)(nil))
)

func (l *limitsFile) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fileAttr(l.d, 0o666, out)
	return 0
}

// Setattr accepts truncation to zero, which the kernel sends before the
// write of `echo x > limits`; the write itself replaces the spec.
func (l *limitsFile) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); !ok || sz != 0 {
		return ToErrno(errNotAllowed)
	}
	if _, ok := in.GetMode(); ok {
		return ToErrno(errNotAllowed)
	}
	fileAttr(l.d, 0o666, out)
	return 0
}

func (l *limitsFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	h := &limitsHandle{d: l.d, data: []byte(strings.Join(l.d.m.Spec().Items(), "\n") + "\n")}
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		h.writable = true
		h.data = nil
	}
	return h, fuse.FOPEN_DIRECT_IO, 0
}

type limitsHandle struct {
	d        *meterDir
	mu       sync.Mutex
	data     []byte
	writable bool
	held     error // why what was written is not applied yet
}

var (
	_ = (fs.FileReader)((*limitsHandle)(nil))
	_ = (fs.FileWriter)((*limitsHandle)(nil))
	_ = (fs.FileReleaser)((*limitsHandle)(nil))
)

// Release logs a write that never became a whole spec: nothing changed.
func (h *limitsHandle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held != nil {
		h.d.root.log.Warn("limits write closed incomplete; nothing changed", "meter", h.d.m.Name(), "err", h.held)
	}
	return 0
}

func (h *limitsHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fuse.ReadResultData(sliceAt(h.data, off, len(dest))), 0
}

// maxLimits bounds what a write to `limits` may hold.
const maxLimits = 64 << 10

// Write validates everything written so far through this descriptor and,
// if it is a valid spec, applies it; otherwise EINVAL and nothing changes.
func (h *limitsHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	name := h.d.m.Name()
	if !h.writable {
		return 0, ToErrno(errNotOpenForIt)
	}
	if off < 0 || off+int64(len(data)) > maxLimits {
		h.d.root.log.Warn("limits write refused", "meter", name, "err", fmt.Sprintf("more than %d bytes", maxLimits))
		return 0, ToErrno(meter.ErrFileTooBig)
	}
	buf := h.data
	if need := int(off) + len(data); need > len(buf) {
		buf = append(buf, make([]byte, need-len(buf))...)
	}
	copy(buf[off:], data)
	spec, err := meter.ParseSpec(string(buf))
	if err != nil {
		if errors.Is(err, meter.ErrNeedsRate) {
			// Each item is fine but the spec is not yet whole (burst=
			// before its rate=, written in pieces): hold it for the next
			// write, change nothing.
			h.data, h.held = buf, err
			return uint32(len(data)), 0
		}
		h.d.root.log.Warn("limits write refused", "meter", name, "err", err)
		return 0, ToErrno(fmt.Errorf("%w: %w", errBadInput, err))
	}
	h.held = nil
	old := h.d.m.Spec()
	if err := h.d.m.SetSpec(spec); err != nil {
		h.d.root.log.Error("limits write failed", "meter", name, "err", err)
		return 0, ToErrno(err)
	}
	h.data = buf
	if !old.Equal(spec) {
		h.d.root.log.Info("limits changed", "meter", name, "from", old.String(), "to", spec.String())
	}
	return uint32(len(data)), 0
}
