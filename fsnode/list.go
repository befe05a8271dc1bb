package fsnode

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rlfs/rlfs/meter"
)

// listDir is a meter's `holders/` or `waiters/`: one entry per call in
// progress or per blocked open, named SEQ.PID with SEQ zero-padded so that
// `ls` lists them in grant or queue order. Never cached by the kernel.
type listDir struct {
	fs.Inode
	fixedDir
	d       *meterDir
	waiters bool
}

var (
	_ = (fs.NodeLookuper)((*listDir)(nil))
	_ = (fs.NodeReaddirer)((*listDir)(nil))
	_ = (fs.NodeGetattrer)((*listDir)(nil))
	_ = (fs.NodeSetattrer)((*listDir)(nil))
	_ = (fs.NodeCreater)((*listDir)(nil))
	_ = (fs.NodeMkdirer)((*listDir)(nil))
	_ = (fs.NodeUnlinker)((*listDir)(nil))
	_ = (fs.NodeRmdirer)((*listDir)(nil))
	_ = (fs.NodeRenamer)((*listDir)(nil))
)

// holders/ and waiters/ are views: nothing in them can be created, removed,
// renamed or changed (EPERM). A holder ends by closing acquire.
func (l *listDir) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return ToErrno(errNotAllowed)
}

// entry is one holder or waiter as listed.
type entry struct {
	seq     uint64
	holder  meter.Holder
	since   time.Time
	now     time.Time
	state   string // "holding", "expired" or "waiting"
	pos     int    // queue position, 1-based (waiters)
	cost    int64  // units the call costs (or asks for)
	actual  int64  // its settled cost, when settled
	settled bool
}

// name is SEQ.PID, or SEQ.PID@HOST in a fleet (see entryName).
func (e entry) name() string {
	return entryName(fmt.Sprintf("%06d.%d", e.seq, e.holder.PID), e.holder.Host)
}

// text is the entry's content: one `key: value` per line, each key once.
// The values taken from the caller or the store (cmd, host) are escaped
// (meter.Escape), so that a command line cannot add lines of its own.
func (e entry) text() string {
	var b strings.Builder
	if e.holder.Host != "" {
		fmt.Fprintf(&b, "host: %s\n", meter.Escape(e.holder.Host))
	}
	cmd := meter.Escape(e.holder.Cmd)
	if cmd == "" && e.holder.Host != "" {
		cmd = "-" // on another host: its command line is not known here
	}
	fmt.Fprintf(&b, "pid: %d\nuid: %d\ngid: %d\ncmd: %s\nstate: %s\nsince: %s\n",
		e.holder.PID, e.holder.UID, e.holder.GID, cmd, e.state, meter.FormatTime(e.since))
	if e.state == "waiting" {
		fmt.Fprintf(&b, "position: %d\nwaited: %s\n", e.pos, e.now.Sub(e.since).Round(time.Millisecond))
	} else {
		fmt.Fprintf(&b, "call: %d\nheld: %s\n", e.seq, e.now.Sub(e.since).Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "cost: %d\n", e.cost)
	if e.settled {
		fmt.Fprintf(&b, "actual: %d\n", e.actual)
	}
	return b.String()
}

// entries lists the holders or waiters; their holders are not resolved yet.
func (l *listDir) entries() []entry {
	s := l.d.m.Snapshot()
	var out []entry
	if l.waiters {
		for i, w := range s.Waiters {
			out = append(out, entry{seq: w.Seq, holder: w.Holder, since: w.Since, now: s.Now, state: "waiting", pos: i + 1, cost: w.Cost})
		}
		return out
	}
	for _, c := range s.Holders {
		out = append(out, entry{seq: c.ID, holder: c.Holder, since: c.GrantedAt, now: s.Now, state: "holding", cost: c.Cost, actual: c.Actual, settled: c.Settled})
	}
	for _, c := range s.Expired {
		out = append(out, entry{seq: c.ID, holder: c.Holder, since: c.GrantedAt, now: s.Now, state: "expired", cost: c.Cost, actual: c.Actual, settled: c.Settled})
	}
	return out
}

func (l *listDir) find(name string) (entry, bool) {
	seqText, _, ok := strings.Cut(name, ".")
	if !ok {
		return entry{}, false
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return entry{}, false
	}
	m := l.d.m
	e := entry{seq: seq, now: m.Now()}
	if l.waiters {
		w, pos, ok := m.Waiting(seq)
		if !ok {
			return entry{}, false
		}
		e.holder, e.since, e.state, e.pos, e.cost = w.Holder, w.Since, "waiting", pos, w.Cost
	} else {
		c, expired, ok := m.Held(seq)
		if !ok {
			return entry{}, false
		}
		e.holder, e.since, e.state = c.Holder, c.GrantedAt, "holding"
		e.cost, e.actual, e.settled = c.Cost, c.Actual, c.Settled
		if expired {
			e.state = "expired"
		}
	}
	e.holder = resolveOn(l.d.root.host, e.holder)
	return e, e.name() == name
}

func (l *listDir) entryIno(seq uint64) uint64 {
	kind := uint64(0)
	if l.waiters {
		kind = 1
	}
	return dynamicBase | l.d.ino<<32 | kind<<31 | seq&(1<<31-1)
}

func (l *listDir) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	a := l.d.m.Attr()
	out.Mode = syscall.S_IFDIR | a.Mode&0o555
	out.Uid, out.Gid = a.UID, a.GID
	out.Nlink = 2
	l.d.root.times(&out.Attr)
	return 0 // attr timeout 0: the listing changes by itself
}

func (l *listDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	es := l.entries()
	out := make([]fuse.DirEntry, 0, len(es))
	for _, e := range es {
		e.holder = resolveOn(l.d.root.host, e.holder)
		out = append(out, fuse.DirEntry{Name: e.name(), Mode: syscall.S_IFREG, Ino: l.entryIno(e.seq)})
	}
	return fs.NewListDirStream(out), 0
}

func (l *listDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	e, ok := l.find(name)
	if !ok {
		return nil, ToErrno(errNoEntry)
	}
	n := &entryFile{list: l, name: name}
	ch := l.NewInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFREG, Ino: l.entryIno(e.seq)})
	entryAttr(e, &out.Attr)
	return ch, 0 // entry and attr timeouts 0
}

func entryAttr(e entry, out *fuse.Attr) {
	out.Mode = syscall.S_IFREG | 0o444
	out.Uid, out.Gid = e.holder.UID, e.holder.GID
	out.Nlink = 1
	t := e.since
	out.SetTimes(&t, &t, &t)
}

// entryFile is one holder or waiter; it reads as `key: value` lines.
type entryFile struct {
	fs.Inode
	list *listDir
	name string
}

var (
	_ = (fs.NodeOpener)((*entryFile)(nil))
	_ = (fs.NodeGetattrer)((*entryFile)(nil))
	_ = (fs.NodeSetattrer)((*entryFile)(nil))
)

func (n *entryFile) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return ToErrno(errNotAllowed)
}

func (n *entryFile) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	e, ok := n.list.find(n.name)
	if !ok {
		return ToErrno(errNoEntry)
	}
	entryAttr(e, &out.Attr)
	return 0
}

func (n *entryFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, ToErrno(errNotAllowed)
	}
	e, ok := n.list.find(n.name)
	if !ok {
		return nil, 0, ToErrno(errNoEntry)
	}
	return &textHandle{data: []byte(e.text())}, fuse.FOPEN_DIRECT_IO, 0
}
