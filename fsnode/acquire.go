package fsnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rlfs/rlfs/meter"
)

// acquireFile is a meter's `acquire` (a call of cost 1) or `acquire@N` (a
// call of cost N units): open waits for a grant, a decimal written to the
// open descriptor sets the call's actual cost, the last close completes it.
type acquireFile struct {
	fs.Inode
	d    *meterDir
	cost int64
}

var (
	_ = (fs.NodeOpener)((*acquireFile)(nil))
	_ = (fs.NodeGetattrer)((*acquireFile)(nil))
	_ = (fs.NodeSetattrer)((*acquireFile)(nil))
)

// Getattr gives acquire the meter's read bits, and the matching write bits:
// opening it O_RDWR (to write the actual cost) needs the same permission as
// acquiring it.
func (a *acquireFile) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fileAttr(a.d, 0o444, out)
	out.Mode |= (out.Mode & 0o444) >> 1
	return 0
}

// openTruncWindow bounds how long after its grant an O_TRUNC open's
// truncate may take the grant back.
const openTruncWindow = time.Second

// Setattr refuses truncation and chmod: acquire's attributes derive from the
// meter. An open with O_TRUNC reaches rlfs as a plain OPEN, which is granted,
// then as a truncate from the same thread, without the file handle (go-fuse
// does not negotiate atomic O_TRUNC, and the kernel sends no handle for an
// open's truncate). So a truncate takes back the newest grant that its thread
// got on this meter within openTruncWindow: the refused open counts nothing.
func (a *acquireFile) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if _, trunc := in.GetSize(); trunc {
		if g, ok := f.(*grantHandle); ok {
			g.revoke()
		} else if c, ok := fuse.FromContext(ctx); ok {
			if id, ok := a.d.m.LatestGrant(int(c.Pid), c.Uid, openTruncWindow); ok {
				_ = a.d.m.Revoke(id)
			}
		}
	}
	return ToErrno(errNotAllowed)
}

// Open waits in the meter's FIFO queue until it grants a call. An open
// with O_NOFOLLOW is refused at once: cp and mv (coreutils) open every file
// they copy with O_RDONLY|O_NOFOLLOW, and `mv METER /elsewhere` falls back to
// a copy, which must neither wait for nor take a call. (The clients rlfs
// serves, cat, exec 3<, flock(1), Python, Go and Node, do not pass it.)
func (a *acquireFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE == syscall.O_WRONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, ToErrno(errNotAllowed)
	}
	if flags&syscall.O_NOFOLLOW != 0 {
		a.d.root.refuseCopy(ctx, a.d.m.Name())
		return nil, 0, ToErrno(errNotAllowed)
	}
	r := a.d.root
	r.inflight.Add(1)
	defer r.inflight.Done()
	g := &grantHandle{d: a.d, m: a.d.m, host: r.host}
	if errno := g.acquire(ctx, a.cost, flags&syscall.O_NONBLOCK != 0); errno != 0 {
		return nil, 0, errno
	}
	// FOPEN_NOFLUSH: no FLUSH per close (completion is the last close,
	// RELEASE), one round trip less, and only for acquire: data/ files
	// need their FLUSH.
	return g, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_NOFLUSH, 0
}

// acquire waits for g's call. Its frame and Open's are below every open
// that waits: kept small, with the call written into g (see meter's
// enqueueAside).
func (g *grantHandle) acquire(ctx context.Context, cost int64, nonblock bool) syscall.Errno {
	h := callerOf(ctx)
	start := time.Now()
	var err error
	if g.call, err = g.m.AcquireCost(ctx, h, cost, nonblock); err != nil {
		return g.d.root.openFailed(g.m, h, err)
	}
	g.waited = time.Since(start)
	return 0
}

// openFailed is the errno of an open of acquire that failed with err (a
// function of its own: Open's frame stays small, see meter's enqueueAside).
func (r *Root) openFailed(m *meter.Meter, h meter.Holder, err error) syscall.Errno {
	if errors.Is(err, meter.ErrStore) {
		// Debug: on a full disk every open fails alike; the store logs
		// when its writes start to fail and when they work again.
		r.log.Debug("open of acquire failed", "meter", m.Name(), "pid", h.PID, "err", err)
	}
	return ToErrno(err)
}

// grantHandle is an open `acquire`: one granted call.
type grantHandle struct {
	d       *meterDir
	m       *meter.Meter
	call    meter.Call
	waited  time.Duration
	host    string // this daemon's host in a fleet ("" on one host)
	revoked atomic.Bool
}

var (
	_ = (fs.FileReader)((*grantHandle)(nil))
	_ = (fs.FileWriter)((*grantHandle)(nil))
	_ = (fs.FileReleaser)((*grantHandle)(nil))
	_ = (fs.FileFlusher)((*grantHandle)(nil))
)

// Read returns one line about the grant (with its cost for acquire@N). Its
// pid is the process's (the thread group's), on every store: the call's
// holder is this host's, so it resolves here.
func (g *grantHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	line := fmt.Sprintf("granted %s waited %s meter %s call %d pid %d",
		meter.FormatTime(g.call.GrantedAt), g.waited.Round(time.Microsecond), g.m.Name(), g.call.ID, resolveOn(g.host, g.call.Holder).PID)
	if g.call.Cost != 1 {
		line += fmt.Sprintf(" cost %d", g.call.Cost)
	}
	line += "\n"
	return fuse.ReadResultData(sliceAt([]byte(line), off, len(dest))), 0
}

// Write sets the call's actual cost, or pauses the meter, or both: the
// write is lines, one decimal number of units (a settlement: spaces around
// it are fine, from 0 to 2^50) and/or one `retry-after X` (X a duration,
// whole seconds or an HTTP-date, as for the pause file: the meter pauses,
// capped at its max_pause). Less than the estimate frees units at once;
// more is debt. A write with anything else fails with EINVAL and changes
// nothing. The descriptor must be open for writing (O_RDWR: exec
// 3<>acquire@N; open(p, "r+")).
func (g *grantHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	cost, pause, err := parseGrantWrite(string(data))
	if err != nil {
		return 0, ToErrno(err)
	}
	if cost >= 0 {
		if err := g.m.Settle(g.call.ID, cost); err != nil {
			if errors.Is(err, meter.ErrNotExist) {
				return 0, ToErrno(errBadInput) // no longer a call in progress (revoked)
			}
			return 0, ToErrno(err)
		}
	}
	if pause != "" {
		if err := g.d.pause(pause, callerOf(ctx), "an acquire descriptor", false); err != nil {
			return 0, ToErrno(err)
		}
	}
	return uint32(len(data)), 0
}

// parseGrantWrite reads a write to an acquire descriptor: the cost it
// settles (-1: none) and the text after its retry-after (""; none).
func parseGrantWrite(text string) (cost int64, pause string, err error) {
	cost = -1
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if _, _, isPause, perr := meter.PauseLine(line, time.Now()); isPause {
			if perr != nil || pause != "" {
				return -1, "", fmt.Errorf("%w: %q", errBadInput, line)
			}
			pause = strings.TrimLeft(strings.TrimSpace(line)[len("retry-after"):], " \t:")
			continue
		}
		n, perr := meter.ParseCost(line)
		if perr != nil || cost >= 0 {
			return -1, "", fmt.Errorf("%w: %q", errBadInput, line)
		}
		cost = n
	}
	if cost < 0 && pause == "" {
		return -1, "", fmt.Errorf("%w: empty write", errBadInput)
	}
	return cost, pause, nil
}

// Flush is not sent for acquire (FOPEN_NOFLUSH). It must not answer ENOSYS:
// the kernel would stop sending FLUSH for every file of the mount, and the
// data/ files commit at FLUSH.
func (g *grantHandle) Flush(ctx context.Context) syscall.Errno { return 0 }

// Release completes the call, unless it was revoked.
func (g *grantHandle) Release(ctx context.Context) syscall.Errno {
	if g.revoked.Load() {
		return 0
	}
	_ = g.m.Release(g.call.ID) // a store error is counted in the meter's stats
	return 0
}

// revoke takes the grant back: its open is failing.
func (g *grantHandle) revoke() {
	if g.revoked.CompareAndSwap(false, true) {
		_ = g.m.Revoke(g.call.ID)
	}
}

func sliceAt(b []byte, off int64, n int) []byte {
	if off >= int64(len(b)) {
		return nil
	}
	b = b[off:]
	if len(b) > n {
		b = b[:n]
	}
	return b
}

// refuseCopy logs, once per daemon, why an O_NOFOLLOW open of acquire fails.
func (r *Root) refuseCopy(ctx context.Context, name string) {
	if r.copyRefused.Swap(true) {
		return
	}
	h := resolve(callerOf(ctx))
	r.log.Warn("open of acquire with O_NOFOLLOW refused (EPERM): cp and mv open files so, and copying a meter must not take a call; open it without O_NOFOLLOW to acquire (logged once)",
		"meter", name, "pid", h.PID, "cmd", h.Cmd)
}

// callerOf says who is opening, from the request alone: its PID is the
// calling thread's id, and Cmd is left empty. Reading /proc here would cost
// more than the rest of an open; holders/ and waiters/ resolve the process
// and its command line when they are listed (see resolve).
func callerOf(ctx context.Context) meter.Holder {
	var h meter.Holder
	if c, ok := fuse.FromContext(ctx); ok {
		h.PID, h.UID, h.GID = int(c.Pid), c.Uid, c.Gid
	}
	return h
}

// resolve turns a holder as callerOf recorded it into its process id and
// command line, while the thread still exists. A holder on another host of a
// fleet (Holder.Host not local) is left as it is: its process is not here.
func resolve(h meter.Holder) meter.Holder {
	return resolveOn("", h)
}

// resolveOn is resolve on a daemon that is host local in a fleet.
func resolveOn(local string, h meter.Holder) meter.Holder {
	if h.Cmd != "" || h.PID <= 0 || (h.Host != "" && h.Host != local) {
		return h
	}
	h.PID = tgid(h.PID)
	h.Cmd = cmdline(h.PID)
	return h
}

// ProcessID maps the id of the thread an open came from (what FUSE
// reports) to its process id, the thread group's, while the thread exists;
// else it returns tid. It reads /proc/TID/status: a fleet's store calls it
// once per open, so that other hosts see the process id.
func ProcessID(tid int) int { return tgid(tid) }

// tgid maps the thread id that FUSE reports to its process id. It reads
// only the head of /proc/TID/status, where Tgid is (after Name, at most 64
// bytes escaped, Umask and State), with plain system calls: about 11 µs
// against 20 for os.ReadFile of the whole file.
func tgid(tid int) int {
	fd, err := syscall.Open("/proc/"+strconv.Itoa(tid)+"/status", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return tid
	}
	var buf [512]byte
	n, err := syscall.Read(fd, buf[:])
	_ = syscall.Close(fd)
	if err != nil || n <= 0 {
		return tid
	}
	_, rest, ok := bytes.Cut(buf[:n], []byte("\nTgid:"))
	if !ok {
		return tid
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	if pid, err := strconv.Atoi(string(bytes.TrimSpace(line))); err == nil && pid > 0 {
		return pid
	}
	return tid
}

const maxCmd = 1024

func cmdline(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	b = bytes.TrimRight(b, "\x00")
	if len(b) > maxCmd {
		b = b[:maxCmd]
	}
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}
