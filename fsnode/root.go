package fsnode

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rlfs/rlfs/meter"
)

// Options configure a filesystem.
type Options struct {
	Registry *meter.Registry
	Logger   *slog.Logger // default slog.Default()
	// StaticTimeout is how long the kernel may cache entries and attributes
	// of nodes that do not change by themselves (meters, acquire, limits,
	// status). Default 1s; dynamic entries (holders/, waiters/) are never cached.
	StaticTimeout time.Duration
}

// Root is the mount's root directory: one subdirectory per meter. It is safe
// for concurrent use.
type Root struct {
	fs.Inode
	reg    *meter.Registry
	log    *slog.Logger
	static time.Duration

	mu       sync.Mutex
	inos     map[*meter.Meter]uint64 // stable inode numbers of meter directories
	next     uint64
	dataNext uint64 // inode numbers of data files, from dataBase

	inflight    sync.WaitGroup // opens of acquire being handled
	copyRefused atomic.Bool    // an O_NOFOLLOW open of acquire was refused and logged

	host     string    // this daemon's host in a fleet ("" on one host)
	started  time.Time // mtime of the root, meters and their files
	uid, gid uint32    // owner of the root: the daemon's user
}

var (
	_ = (fs.NodeLookuper)((*Root)(nil))
	_ = (fs.NodeReaddirer)((*Root)(nil))
	_ = (fs.NodeGetattrer)((*Root)(nil))
	_ = (fs.NodeMkdirer)((*Root)(nil))
	_ = (fs.NodeRmdirer)((*Root)(nil))
	_ = (fs.NodeCreater)((*Root)(nil))
	_ = (fs.NodeUnlinker)((*Root)(nil))
	_ = (fs.NodeRenamer)((*Root)(nil))
)

// NewRoot returns the root node of an rlfs filesystem over opt.Registry.
func NewRoot(opt Options) *Root {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.StaticTimeout == 0 {
		opt.StaticTimeout = time.Second
	}
	return &Root{reg: opt.Registry, log: opt.Logger, static: opt.StaticTimeout, host: opt.Registry.Host(),
		inos: map[*meter.Meter]uint64{}, next: 1,
		started: time.Now(), uid: uint32(os.Geteuid()), gid: uint32(os.Getegid())}
}

// times sets a static node's times to when the filesystem was mounted.
func (r *Root) times(out *fuse.Attr) {
	out.SetTimes(&r.started, &r.started, &r.started)
}

// Inode numbers: 1 is the root; each meter directory takes a block of
// inoBlock numbers for itself and its files; data files live above
// dataBase, holders/ and waiters/ entries above dynamicBase.
const (
	inoBlock    = 16
	dataBase    = 1 << 61
	dynamicBase = 1 << 62
)

// nextDataIno numbers a data file for its life.
func (r *Root) nextDataIno() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dataNext++
	return dataBase + r.dataNext
}

func (r *Root) inoOf(m *meter.Meter) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	ino, ok := r.inos[m]
	if !ok {
		ino = r.next * inoBlock
		r.next++
		r.inos[m] = ino
	}
	return ino
}

func (r *Root) forget(m *meter.Meter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.inos, m)
}

// invalidate makes the kernel forget what it caches of meter name (its
// entry in the root, the attributes of its directory and files), so that a
// change made on another host of a fleet shows at once rather than when
// the cache times out (StaticTimeout). It does not wait: the kernel may
// first finish an operation on the root that is being answered.
func (r *Root) invalidate(name string) {
	go func() {
		_ = r.NotifyEntry(name)
		ch := r.GetChild(name)
		if ch == nil {
			return
		}
		_ = ch.NotifyContent(0, 0)
		for _, c := range ch.Children() {
			_ = c.NotifyContent(0, 0)
		}
	}()
}

// Getattr reports the root as a world-readable directory.
func (r *Root) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o755
	out.Nlink = 2
	out.Uid, out.Gid = r.uid, r.gid // the daemon's user may mkdir meters
	r.times(&out.Attr)
	out.SetTimeout(r.static)
	return 0
}

// Lookup finds a meter directory by name.
func (r *Root) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	m := r.reg.Get(name)
	if m == nil {
		return nil, ToErrno(errNoEntry)
	}
	return r.meterInode(ctx, m, out), 0
}

func (r *Root) meterInode(ctx context.Context, m *meter.Meter, out *fuse.EntryOut) *fs.Inode {
	d := &meterDir{root: r, m: m, ino: r.inoOf(m)}
	ch := r.NewInode(ctx, d, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: d.ino})
	dirAttr(m.Attr(), &out.Attr)
	r.times(&out.Attr)
	out.Ino = d.ino
	out.SetEntryTimeout(r.static)
	out.SetAttrTimeout(r.static)
	return ch
}

// Readdir lists the meters.
func (r *Root) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	names := r.reg.Names()
	entries := make([]fuse.DirEntry, 0, len(names))
	for _, n := range names {
		if m := r.reg.Get(n); m != nil {
			entries = append(entries, fuse.DirEntry{Name: n, Mode: syscall.S_IFDIR, Ino: r.inoOf(m)})
		}
	}
	return fs.NewListDirStream(entries), 0
}

// Mkdir creates a meter with the default spec, owned by the caller.
func (r *Root) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if err := meter.ValidName(name); err != nil {
		r.log.Warn("mkdir refused", "meter", name, "err", err)
		if len(name) > meter.MaxNameLen {
			return nil, ToErrno(errNameTooLong)
		}
		return nil, ToErrno(fmt.Errorf("%w: %w", errBadInput, err))
	}
	attr := meter.Attr{Mode: mode & 0o7777}
	if c, ok := fuse.FromContext(ctx); ok {
		attr.UID, attr.GID = c.Uid, c.Gid
	}
	m, err := r.reg.Create(name, meter.DefaultSpec(), attr)
	if err != nil {
		r.log.Warn("mkdir failed", "meter", name, "err", err)
		return nil, ToErrno(err)
	}
	r.log.Info("meter created", "meter", name, "limits", m.Spec().String(), "mode", octal(attr.Mode), "uid", attr.UID)
	return r.meterInode(ctx, m, out), 0
}

// Rmdir removes an idle meter; EBUSY while it has holders or waiters.
func (r *Root) Rmdir(ctx context.Context, name string) syscall.Errno {
	m := r.reg.Get(name)
	if m == nil {
		return ToErrno(errNoEntry)
	}
	if err := r.reg.Remove(name); err != nil {
		r.log.Warn("rmdir refused", "meter", name, "err", err)
		return ToErrno(err)
	}
	r.forget(m)
	r.log.Info("meter removed", "meter", name)
	return 0
}

// Create refuses: the root holds only meter directories (use mkdir).
func (r *Root) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, ToErrno(errNotAllowed)
}

// Unlink refuses: there are no files in the root.
func (r *Root) Unlink(ctx context.Context, name string) syscall.Errno {
	return ToErrno(errNotAllowed)
}

// Rename refuses: a meter's name is its identity in the database.
func (r *Root) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return ToErrno(errNotAllowed)
}

func dirAttr(a meter.Attr, out *fuse.Attr) {
	out.Mode = syscall.S_IFDIR | a.Mode&0o7777
	out.Uid, out.Gid = a.UID, a.GID
	out.Nlink = 4
}

// octal is a mode as logs show it, as chmod(1) takes it: 0755.
func octal(mode uint32) string { return fmt.Sprintf("%04o", mode&0o7777) }
