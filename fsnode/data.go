package fsnode

import (
	"context"
	"errors"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/rlfs/rlfs/meter"
)

// dataDir is a meter's `data/`: small regular files kept in the store with
// the meter (design §8). A writer works on its own copy of the file; the
// copy replaces the stored file whole when the writer's descriptor is
// closed (FLUSH, which close(2) waits for), so readers see the old or the
// new content, never a mix, and the new content survives a crash of the
// daemon once close returned. Nothing is cached by the kernel: every open
// and stat asks the store, so another process (or, in a fleet, another
// host) sees a change at once.
type dataDir struct {
	fs.Inode
	d *meterDir

	mu      sync.Mutex
	inos    map[string]uint64         // stable inode numbers, by name
	writers map[*dataHandle]time.Time // open writable handles, with when they were opened
}

var (
	_ = (fs.NodeLookuper)((*dataDir)(nil))
	_ = (fs.NodeReaddirer)((*dataDir)(nil))
	_ = (fs.NodeGetattrer)((*dataDir)(nil))
	_ = (fs.NodeSetattrer)((*dataDir)(nil))
	_ = (fs.NodeCreater)((*dataDir)(nil))
	_ = (fs.NodeUnlinker)((*dataDir)(nil))
	_ = (fs.NodeRenamer)((*dataDir)(nil))
	_ = (fs.NodeMkdirer)((*dataDir)(nil))
	_ = (fs.NodeRmdirer)((*dataDir)(nil))
	_ = (fs.NodeSymlinker)((*dataDir)(nil))
	_ = (fs.NodeLinker)((*dataDir)(nil))
	_ = (fs.NodeMknoder)((*dataDir)(nil))
	_ = (fs.NodeSetxattrer)((*dataDir)(nil))
)

// dataIno is the inode number of data file name, kept for its life.
func (dd *dataDir) dataIno(name string) uint64 {
	dd.mu.Lock()
	defer dd.mu.Unlock()
	if ino, ok := dd.inos[name]; ok {
		return ino
	}
	ino := dd.d.root.nextDataIno()
	dd.inos[name] = ino
	return ino
}

// Getattr: data/ takes the meter's owner and mode.
func (dd *dataDir) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	a := dd.d.m.Attr()
	out.Mode = syscall.S_IFDIR | a.Mode&0o777
	out.Uid, out.Gid = a.UID, a.GID
	out.Nlink = 2
	dd.d.root.times(&out.Attr)
	return 0 // no caching: files come and go from other processes and hosts
}

// Setattr: data/'s owner and mode are the meter's (chmod the meter).
func (dd *dataDir) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return ToErrno(errNotAllowed)
}

func (dd *dataDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	files, err := dd.d.m.ListData()
	if err != nil {
		return nil, ToErrno(err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	entries := make([]fuse.DirEntry, 0, len(files))
	for _, f := range files {
		entries = append(entries, fuse.DirEntry{Name: f.Name, Mode: syscall.S_IFREG, Ino: dd.dataIno(f.Name)})
	}
	return fs.NewListDirStream(entries), 0
}

func (dd *dataDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	f, err := dd.d.m.StatData(name)
	if err != nil {
		return nil, ToErrno(err)
	}
	return dd.fileInode(ctx, name, f, out), 0
}

// fileInode makes the inode of data file name and fills out.
func (dd *dataDir) fileInode(ctx context.Context, name string, f meter.DataFile, out *fuse.EntryOut) *fs.Inode {
	n := &dataFile{dir: dd}
	ch := dd.NewInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFREG, Ino: dd.dataIno(name)})
	dd.fileAttr(f, &out.Attr)
	out.Ino = ch.StableAttr().Ino
	return ch // entry and attr timeouts 0
}

// fileAttr: a data file is readable and writable as the meter is.
func (dd *dataDir) fileAttr(f meter.DataFile, out *fuse.Attr) {
	a := dd.d.m.Attr()
	out.Mode = syscall.S_IFREG | a.Mode&0o666
	out.Uid, out.Gid = a.UID, a.GID
	out.Nlink = 1
	out.Size = uint64(f.Size)
	out.Blocks = (out.Size + 511) / 512
	t := f.MTime
	out.SetTimes(&t, &t, &t)
}

// Create makes an empty file at once (as open(O_CREAT) does), then hands a
// writable copy to the caller; its content replaces it at close. The kernel
// creates only after a lookup found nothing (holding data/'s lock, so no
// two creates of one host race), but in a fleet another host may have made
// the file since: then it is opened as it is (EEXIST with O_EXCL), not
// emptied.
func (dd *dataDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	m := dd.d.m
	if st, err := m.StatData(name); err == nil {
		return dd.createExisting(ctx, name, st, flags, out)
	} else if !errors.Is(err, meter.ErrNotExist) {
		return nil, nil, 0, ToErrno(err)
	}
	if err := m.WriteData(name, nil); err != nil {
		return nil, nil, 0, ToErrno(err)
	}
	f := meter.DataFile{Name: name, MTime: time.Now()}
	ch := dd.fileInode(ctx, name, f, out)
	h := dd.newHandle(ch.Operations().(*dataFile), nil, flags)
	h.created, h.pid = true, callerOf(ctx).PID
	return ch, h, fuse.FOPEN_DIRECT_IO, 0
}

// createExisting answers a create of a file that exists: as an open, with
// O_TRUNC applied to the copy (the kernel does not truncate what it thinks
// it created).
func (dd *dataDir) createExisting(ctx context.Context, name string, st meter.DataFile, flags uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_EXCL != 0 {
		return nil, nil, 0, ToErrno(errFileExists)
	}
	ch := dd.fileInode(ctx, name, st, out)
	fh, fuseFlags, errno := ch.Operations().(*dataFile).Open(ctx, flags)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if h := fh.(*dataHandle); h.writable && flags&syscall.O_TRUNC != 0 {
		h.buf, h.changed = nil, true
	}
	return ch, fh, fuseFlags, 0
}

func (dd *dataDir) Unlink(ctx context.Context, name string) syscall.Errno {
	if err := dd.d.m.DeleteData(name); err != nil {
		return ToErrno(err)
	}
	dd.mu.Lock()
	delete(dd.inos, name)
	dd.mu.Unlock()
	return 0
}

// Rename moves a file within data/ (replacing the target); nowhere else.
func (dd *dataDir) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if np, ok := newParent.(*dataDir); !ok || np != dd {
		return ToErrno(errCrossDir)
	}
	if flags&fs.RENAME_EXCHANGE != 0 {
		return ToErrno(errBadInput)
	}
	if flags&unix.RENAME_NOREPLACE != 0 {
		if _, err := dd.d.m.StatData(newName); err == nil {
			return ToErrno(errFileExists)
		}
	}
	if err := dd.d.m.RenameData(name, newName); err != nil {
		return ToErrno(err)
	}
	dd.mu.Lock()
	if ino, ok := dd.inos[name]; ok {
		dd.inos[newName] = ino
		delete(dd.inos, name)
	}
	dd.mu.Unlock()
	return 0
}

// Setxattr: data/ holds no extended attributes (ENOTSUP).
func (dd *dataDir) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return ToErrno(errNoXattr)
}

// data/ holds regular files only.
func (dd *dataDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, ToErrno(errNotAllowed)
}

func (dd *dataDir) Rmdir(ctx context.Context, name string) syscall.Errno { return ToErrno(errNotDir) }

func (dd *dataDir) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, ToErrno(errNotAllowed)
}

func (dd *dataDir) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, ToErrno(errNotAllowed)
}

func (dd *dataDir) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, ToErrno(errNotAllowed)
}
