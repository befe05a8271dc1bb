package fsnode

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rlfs/rlfs/meter"
)

// pauseFile is a meter's `pause` (design §10): read, it says whether the
// meter is paused, until when, by whom and how; a write pauses the meter
// (a duration, whole seconds or an HTTP-date; `0` or `none` lifts it).
// Writing needs the meter's write permission, as `limits` does.
type pauseFile struct {
	fs.Inode
	d *meterDir
}

var (
	_ = (fs.NodeOpener)((*pauseFile)(nil))
	_ = (fs.NodeGetattrer)((*pauseFile)(nil))
	_ = (fs.NodeSetattrer)((*pauseFile)(nil))
)

func (p *pauseFile) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fileAttr(p.d, 0o666, out)
	return 0
}

// Setattr accepts the truncation to zero of `echo 30s > pause`.
func (p *pauseFile) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); !ok || sz != 0 {
		return ToErrno(errNotAllowed)
	}
	if _, ok := in.GetMode(); ok {
		return ToErrno(errNotAllowed)
	}
	fileAttr(p.d, 0o666, out)
	return 0
}

func (p *pauseFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return &pauseHandle{d: p.d, who: callerOf(ctx)}, fuse.FOPEN_DIRECT_IO, 0
	}
	s := p.d.m.Status()
	return &textHandle{data: []byte(s.Pause.Text(s.Now) + "\n")}, fuse.FOPEN_DIRECT_IO, 0
}

// pauseHandle is `pause` open for writing: each write is one pause.
type pauseHandle struct {
	d   *meterDir
	who meter.Holder
	mu  sync.Mutex
}

var _ = (fs.FileWriter)((*pauseHandle)(nil))

func (h *pauseHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(data) > 256 {
		return 0, ToErrno(fmt.Errorf("%w: a pause is one short line", errBadInput))
	}
	if err := h.d.pause(string(data), h.who, "the pause file", true); err != nil {
		return 0, ToErrno(err)
	}
	return uint32(len(data)), 0
}

// pause applies a pause written as text by who, through from: a pause file
// write, or a `retry-after` line on an acquire descriptor, which may set or
// extend a pause but never lift one (`retry-after 0` is no pause: lifting
// needs the meter's write permission, which the pause file asks for). A
// pause beyond the meter's max_pause is capped, and the cap logged.
func (d *meterDir) pause(text string, who meter.Holder, from string, mayLift bool) error {
	until, lift, err := meter.ParsePause(text, time.Now())
	if err != nil {
		d.root.log.Warn("pause write refused", "meter", d.m.Name(), "err", err)
		return fmt.Errorf("%w: %w", errBadInput, err)
	}
	if (lift && !mayLift) || (!lift && !until.After(time.Now())) {
		return nil // retry-after 0 on a descriptor, or an HTTP-date in the past: no pause to set
	}
	who = resolveOn(d.root.reg.Host(), who)
	p := meter.Pause{Until: until, From: from, By: whoText(who, d.root.reg.Host())}
	if lift {
		p = meter.Pause{}
	}
	got, capped, err := d.m.Pause(p)
	switch {
	case err != nil:
		d.root.log.Error("pause failed", "meter", d.m.Name(), "err", err)
		return err
	case capped:
		d.root.log.Warn("pause capped at the meter's max_pause", "meter", d.m.Name(), "asked", until.Format(time.RFC3339),
			"max_pause", meter.MaxPauseOf(d.m.Spec()).String(), "by", p.By, "from", from)
	}
	switch {
	case lift:
		d.root.log.Info("pause lifted", "meter", d.m.Name(), "by", whoText(who, d.root.reg.Host()), "from", from)
	case got.Until.Equal(p.Until):
		d.root.log.Info("meter paused", "meter", d.m.Name(), "until", meter.FormatTime(got.Until), "by", p.By, "from", from)
	}
	return nil
}

// whoText names a process for a pause: its pid, command and host.
func whoText(h meter.Holder, host string) string {
	s := fmt.Sprintf("pid %d", h.PID)
	if h.Cmd != "" {
		cmd := h.Cmd
		if len(cmd) > 64 {
			cmd = cmd[:64] + "…"
		}
		s += " (" + cmd + ")"
	}
	if host != "" {
		s += " on " + host
	}
	return s
}
