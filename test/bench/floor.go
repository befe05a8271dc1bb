package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/redis/rueidis"

	"github.com/rlfs/rlfs/test/gcra"
)

// The floors are do-nothing go-fuse filesystems: a root with one file,
// "file", whose open and close cost nothing but the FUSE round trips.
//
//   - typical: 1 s entry and attr timeouts (so an open of a known file sends
//     no LOOKUP), FLUSH answered OK: OPEN, FLUSH, RELEASE per cycle.
//   - minimal: the same, but the handle's Flush answers ENOSYS, after which
//     the kernel stops sending FLUSH: OPEN, RELEASE per cycle.
//   - gcra (with -redis ADDR): typical, but each open first makes one bare
//     GCRA decision (test/gcra's function) on that Redis, through a rueidis
//     client set up as rlfs's store sets up its own (no client-side cache,
//     no retries, a deadline on each call): the floor of any fleet design
//     that asks the store once per grant (row r3).
//
// Open returns FOPEN_DIRECT_IO like rlfs's acquire; Release does nothing.
//
//	bench floor -kind typical|minimal|gcra [-redis ADDR] MOUNTPOINT
//
// prints "ready" once mounted and unmounts on SIGTERM or SIGINT.
func floorMain(args []string) error {
	fset := flag.NewFlagSet("floor", flag.ContinueOnError)
	kind := fset.String("kind", "typical", "typical, minimal or gcra")
	addr := fset.String("redis", "", "the Redis of -kind gcra (HOST:PORT)")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() != 1 {
		return errors.New("floor: want one MOUNTPOINT")
	}
	if *kind != "typical" && *kind != "minimal" && *kind != "gcra" {
		return fmt.Errorf("floor: -kind %q: want typical, minimal or gcra", *kind)
	}
	if (*kind == "gcra") != (*addr != "") {
		return errors.New("floor: -redis ADDR goes with -kind gcra, and only with it")
	}
	dir := fset.Arg(0)
	sec := time.Second
	root := &floorRoot{minimal: *kind == "minimal"}
	if *kind == "gcra" {
		g, err := newFloorGCRA(*addr)
		if err != nil {
			return err
		}
		defer g.c.Close()
		root.gcra = g
	}
	server, err := fs.Mount(dir, root, &fs.Options{
		EntryTimeout: &sec,
		AttrTimeout:  &sec,
		MountOptions: fuse.MountOptions{
			DirectMountStrict: true,
			FsName:            "benchfloor",
			Name:              "benchfloor-" + *kind,
		},
	})
	if err != nil {
		return fmt.Errorf("floor: mount %s: %w", dir, err)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-waitChan(server):
		return nil
	}
	if err := server.Unmount(); err != nil {
		// A client still holds the file: detach lazily.
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	return nil
}

func waitChan(s *fuse.Server) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		s.Wait()
		close(ch)
	}()
	return ch
}

type floorRoot struct {
	fs.Inode
	minimal bool
	gcra    *floorGCRA // kind gcra
}

var _ = (fs.NodeOnAdder)((*floorRoot)(nil))

func (r *floorRoot) OnAdd(ctx context.Context) {
	f := r.NewPersistentInode(ctx, &floorFile{minimal: r.minimal, gcra: r.gcra}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: 2})
	r.AddChild("file", f, false)
}

type floorFile struct {
	fs.Inode
	minimal bool
	gcra    *floorGCRA
}

var (
	_ = (fs.NodeOpener)((*floorFile)(nil))
	_ = (fs.NodeGetattrer)((*floorFile)(nil))
)

func (f *floorFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o444
	out.Nlink = 1
	return 0
}

func (f *floorFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if f.minimal {
		return &minimalHandle{}, fuse.FOPEN_DIRECT_IO, 0
	}
	if f.gcra != nil {
		if err := f.gcra.decide(ctx); err != nil {
			log.Printf("floor: %v", err)
			return nil, 0, syscall.EIO
		}
	}
	return &typicalHandle{}, fuse.FOPEN_DIRECT_IO, 0
}

// typicalHandle answers FLUSH and RELEASE with OK.
type typicalHandle struct{}

var (
	_ = (fs.FileFlusher)((*typicalHandle)(nil))
	_ = (fs.FileReleaser)((*typicalHandle)(nil))
)

func (*typicalHandle) Flush(ctx context.Context) syscall.Errno   { return 0 }
func (*typicalHandle) Release(ctx context.Context) syscall.Errno { return 0 }

// minimalHandle answers FLUSH with ENOSYS, so the kernel stops sending it.
type minimalHandle struct{}

var (
	_ = (fs.FileFlusher)((*minimalHandle)(nil))
	_ = (fs.FileReleaser)((*minimalHandle)(nil))
)

func (*minimalHandle) Flush(ctx context.Context) syscall.Errno   { return syscall.ENOSYS }
func (*minimalHandle) Release(ctx context.Context) syscall.Errno { return 0 }

// floorGCRA makes the gcra floor's decisions.
type floorGCRA struct {
	c   rueidis.Client
	key string
}

func newFloorGCRA(addr string) (*floorGCRA, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true,
		DisableRetry: true, ConnWriteTimeout: 3 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("floor: connect to %s: %w", addr, err)
	}
	ctx := context.Background()
	if err := c.Do(ctx, c.B().FunctionLoad().Replace().FunctionCode(gcra.Library).Build()).Error(); err != nil {
		c.Close()
		return nil, fmt.Errorf("floor: load the GCRA function into %s: %w", addr, err)
	}
	return &floorGCRA{c: c, key: "{bench}:tat:floor"}, nil
}

// decide makes one GCRA decision, within a deadline as rlfs's calls are.
func (g *floorGCRA) decide(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cmd := g.c.B().Fcall().Function(gcra.Function).Numkeys(1).Key(g.key).Arg(gcra.Args...).Build()
	return g.c.Do(cctx, cmd).Error()
}
