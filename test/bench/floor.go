package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sync"
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
//   - leased (with -redis ADDR): typical, but the file asks that Redis for
//     grants in blocks of leaseBlock: the open that finds its block used
//     up makes one GCRA decision (for the next block) before it returns,
//     the others none; every leaseBlock-th close reports the block's
//     closes with one more decision, in the background (as a RELEASE is).
//     The floor of a design where the store leases blocks of grants to
//     hosts and each host decides locally (row r4): a waiter on another
//     host would then wait behind grants made from a block, which rlfs's
//     strict FIFO across hosts forbids.
//
// Open returns FOPEN_DIRECT_IO like rlfs's acquire; Release does nothing.
//
//	bench floor -kind typical|minimal|gcra|leased [-redis ADDR] MOUNTPOINT
//
// prints "ready" once mounted and unmounts on SIGTERM or SIGINT.
func floorMain(args []string) error {
	fset := flag.NewFlagSet("floor", flag.ContinueOnError)
	kind := fset.String("kind", "typical", "typical, minimal, gcra or leased")
	addr := fset.String("redis", "", "the Redis of -kind gcra or leased (HOST:PORT)")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() != 1 {
		return errors.New("floor: want one MOUNTPOINT")
	}
	if *kind != "typical" && *kind != "minimal" && *kind != "gcra" && *kind != "leased" {
		return fmt.Errorf("floor: -kind %q: want typical, minimal, gcra or leased", *kind)
	}
	asks := *kind == "gcra" || *kind == "leased"
	if asks != (*addr != "") {
		return errors.New("floor: -redis ADDR goes with -kind gcra or leased, and only with them")
	}
	dir := fset.Arg(0)
	sec := time.Second
	root := &floorRoot{minimal: *kind == "minimal"}
	if asks {
		g, err := newFloorGCRA(*addr)
		if err != nil {
			return err
		}
		defer g.c.Close()
		root.gcra = g
		if *kind == "leased" {
			root.lease = &floorLease{g: g}
		}
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
	gcra    *floorGCRA  // kinds gcra and leased
	lease   *floorLease // kind leased
}

var _ = (fs.NodeOnAdder)((*floorRoot)(nil))

func (r *floorRoot) OnAdd(ctx context.Context) {
	f := r.NewPersistentInode(ctx, &floorFile{minimal: r.minimal, gcra: r.gcra, lease: r.lease}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: 2})
	r.AddChild("file", f, false)
}

type floorFile struct {
	fs.Inode
	minimal bool
	gcra    *floorGCRA
	lease   *floorLease
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
	if f.lease != nil {
		if err := f.lease.take(ctx); err != nil {
			log.Printf("floor: %v", err)
			return nil, 0, syscall.EIO
		}
		return &leasedHandle{l: f.lease}, fuse.FOPEN_DIRECT_IO, 0
	}
	if f.gcra != nil {
		if err := f.gcra.decide(ctx); err != nil {
			log.Printf("floor: %v", err)
			return nil, 0, syscall.EIO
		}
	}
	return &typicalHandle{}, fuse.FOPEN_DIRECT_IO, 0
}

// leaseBlock is how many grants (and closes) the leased floor asks for
// (reports) at once.
const leaseBlock = 16

// floorLease is the leased floor's block: grants left in it, and closes
// not reported yet.
type floorLease struct {
	g      *floorGCRA
	mu     sync.Mutex
	left   int
	closes int
}

// take takes a grant from the block, asking the store for the next block
// when it is used up.
func (l *floorLease) take(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.left == 0 {
		if err := l.g.decide(ctx); err != nil {
			return err
		}
		l.left = leaseBlock
	}
	l.left--
	return nil
}

// closed counts a close; every leaseBlock-th reports the block's closes
// in the background.
func (l *floorLease) closed() {
	l.mu.Lock()
	l.closes++
	report := l.closes == leaseBlock
	if report {
		l.closes = 0
	}
	l.mu.Unlock()
	if report {
		go func() {
			if err := l.g.decide(context.Background()); err != nil {
				log.Printf("floor: %v", err)
			}
		}()
	}
}

// leasedHandle is a typicalHandle whose RELEASE counts a close.
type leasedHandle struct {
	typicalHandle
	l *floorLease
}

var (
	_ = (fs.FileFlusher)((*leasedHandle)(nil))
	_ = (fs.FileReleaser)((*leasedHandle)(nil))
)

func (h *leasedHandle) Release(ctx context.Context) syscall.Errno {
	h.l.closed()
	return 0
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
