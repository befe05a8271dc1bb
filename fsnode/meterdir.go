package fsnode

import (
	"context"
	"sort"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rlfs/rlfs/meter"
)

// meterDir is one meter's directory. Its owner and mode are the meter's
// access control.
type meterDir struct {
	fs.Inode
	fixedDir
	root *Root
	m    *meter.Meter
	ino  uint64
}

var (
	_ = (fs.NodeLookuper)((*meterDir)(nil))
	_ = (fs.NodeReaddirer)((*meterDir)(nil))
	_ = (fs.NodeGetattrer)((*meterDir)(nil))
	_ = (fs.NodeSetattrer)((*meterDir)(nil))
	_ = (fs.NodeCreater)((*meterDir)(nil))
	_ = (fs.NodeMkdirer)((*meterDir)(nil))
	_ = (fs.NodeUnlinker)((*meterDir)(nil))
	_ = (fs.NodeRmdirer)((*meterDir)(nil))
	_ = (fs.NodeRenamer)((*meterDir)(nil))
)

// The files of a meter directory, with their inode offsets from the directory's.
type child struct {
	name   string
	off    uint64
	mode   uint32 // S_IFREG or S_IFDIR
	hidden bool   // looked up but not listed
}

var children = []child{
	{"acquire", 1, syscall.S_IFREG, false},
	{"limits", 2, syscall.S_IFREG, false},
	{"status", 3, syscall.S_IFREG, false},
	{"holders", 4, syscall.S_IFDIR, false},
	{"waiters", 5, syscall.S_IFDIR, false},
	// status.json is status for programs (rlfs status reads it). Not
	// listed, so that ls shows the files people use.
	{"status.json", 6, syscall.S_IFREG, true},
	{"data", 7, syscall.S_IFDIR, false},
	{"pause", 8, syscall.S_IFREG, false},
}

func (d *meterDir) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(d.m.Attr(), &out.Attr)
	d.root.times(&out.Attr)
	out.SetTimeout(d.root.static)
	return 0
}

// Setattr handles chmod and chown of the meter, which persist.
func (d *meterDir) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	a := d.m.Attr()
	if m, ok := in.GetMode(); ok {
		a.Mode = m & 0o7777
	}
	if u, ok := in.GetUID(); ok {
		a.UID = u
	}
	if g, ok := in.GetGID(); ok {
		a.GID = g
	}
	if _, ok := in.GetSize(); ok {
		return ToErrno(errIsDir)
	}
	if a != d.m.Attr() {
		if err := d.m.SetAttr(a); err != nil {
			d.root.log.Error("chmod/chown failed", "meter", d.m.Name(), "err", err)
			return ToErrno(err)
		}
		d.root.log.Info("meter owner/mode changed", "meter", d.m.Name(), "mode", octal(a.Mode), "uid", a.UID, "gid", a.GID)
		// The files' modes and owners derive from the directory's: those
		// the kernel knows, acquire@N ones included, must be looked at again.
		for _, ch := range d.Children() {
			_ = ch.NotifyContent(0, 0)
		}
	}
	dirAttr(a, &out.Attr)
	d.root.times(&out.Attr)
	out.SetTimeout(d.root.static)
	return 0
}

func (d *meterDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n, ok := strings.CutPrefix(name, "acquire@"); ok {
		return d.lookupCost(ctx, n, out)
	}
	for _, c := range children {
		if c.name != name {
			continue
		}
		var node fs.InodeEmbedder
		switch name {
		case "acquire":
			node = &acquireFile{d: d, cost: 1}
		case "limits":
			node = &limitsFile{d: d}
		case "status":
			node = &statusFile{d: d}
		case "status.json":
			node = &statusFile{d: d, json: true}
		case "holders":
			node = &listDir{d: d, waiters: false}
		case "waiters":
			node = &listDir{d: d, waiters: true}
		case "data":
			node = &dataDir{d: d, inos: map[string]uint64{}}
		case "pause":
			node = &pauseFile{d: d}
		}
		ch := d.NewInode(ctx, node, fs.StableAttr{Mode: c.mode, Ino: d.ino + c.off})
		if ch.Operations() != node {
			node = ch.Operations() // the inode existed: keep its node (data/ keeps its inode numbers)
		}
		var a fuse.AttrOut
		node.(fs.NodeGetattrer).Getattr(ctx, nil, &a)
		out.Attr = a.Attr
		out.SetEntryTimeout(d.root.static)
		out.SetAttrTimeout(d.root.static)
		return ch, 0
	}
	return nil, ToErrno(errNoEntry)
}

// lookupCost finds acquire@N, a call of cost N units (N a decimal from 0 to
// 2^50; anything else does not exist). Looked up, never listed.
func (d *meterDir) lookupCost(ctx context.Context, n string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	cost, err := meter.ParseCost(n)
	if err != nil {
		return nil, ToErrno(errNoEntry)
	}
	node := &acquireFile{d: d, cost: cost}
	ch := d.NewInode(ctx, node, fs.StableAttr{Mode: syscall.S_IFREG}) // an automatic inode number
	var a fuse.AttrOut
	node.Getattr(ctx, nil, &a)
	out.Attr = a.Attr
	out.Ino = ch.StableAttr().Ino
	out.SetEntryTimeout(d.root.static)
	out.SetAttrTimeout(d.root.static)
	return ch, 0
}

func (d *meterDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	entries := make([]fuse.DirEntry, 0, len(children))
	for _, c := range children {
		if !c.hidden {
			entries = append(entries, fuse.DirEntry{Name: c.name, Mode: c.mode, Ino: d.ino + c.off})
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	return fs.NewListDirStream(entries), 0
}

// fixedDir gives a directory whose entries are not the user's to change:
// creating, removing or renaming anything in it fails with EPERM. Embed it.
type fixedDir struct{}

func (fixedDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, ToErrno(errNotAllowed)
}

func (fixedDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, ToErrno(errNotAllowed)
}

func (fixedDir) Unlink(ctx context.Context, name string) syscall.Errno { return ToErrno(errNotAllowed) }

func (fixedDir) Rmdir(ctx context.Context, name string) syscall.Errno { return ToErrno(errNotAllowed) }

func (fixedDir) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return ToErrno(errNotAllowed)
}

// fileAttr fills a meter file's attributes: owned like the directory, with
// the directory's permission bits masked by mask.
func fileAttr(d *meterDir, mask uint32, out *fuse.AttrOut) {
	a := d.m.Attr()
	out.Mode = syscall.S_IFREG | a.Mode&mask
	out.Uid, out.Gid = a.UID, a.GID
	out.Nlink = 1
	d.root.times(&out.Attr)
	out.SetTimeout(d.root.static)
}
