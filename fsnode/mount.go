package fsnode

import (
	"fmt"
	"log"
	"os/exec"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// MountOptions say how to mount.
type MountOptions struct {
	// Direct mounts with mount(2) (needs root); otherwise fusermount3 does it.
	Direct bool
	// AllowOther lets users other than the mounter in (needs
	// user_allow_other in /etc/fuse.conf unless root).
	AllowOther bool
	// Debug logs every FUSE request.
	Debug bool
	// SelfAccess is for a process that opens files in its own mount (tests
	// of this package, the Example): it runs go-fuse's poll hack at mount,
	// without which Go's netpoller can deadlock registering such a file
	// (the kernel's POLL request then waits for a thread that is not
	// there). The daemon never opens its own files, and must not: see
	// NewMount.
	SelfAccess bool
}

// Mount is a mounted rlfs filesystem. Safe for concurrent use.
type Mount struct {
	Dir    string
	root   *Root
	server *fuse.Server
	direct bool
	done   chan struct{}
}

// NewMount mounts root at dir and serves it in the background. Permissions
// are enforced by the kernel (default_permissions).
func NewMount(dir string, root *Root, opt MountOptions) (*Mount, error) {
	mo := fuse.MountOptions{
		AllowOther:        opt.AllowOther,
		FsName:            "rlfs",
		Name:              "rlfs",
		DirectMountStrict: opt.Direct,
		Options:           []string{"default_permissions"},
		Debug:             opt.Debug,
		MaxBackground:     1024,
	}
	if opt.Debug {
		mo.Logger = log.Default()
	}
	server, err := fuse.NewServer(newFlushFilter(fs.NewNodeFS(root, &fs.Options{MountOptions: mo})), dir, &mo)
	if err != nil {
		return nil, fmt.Errorf("fsnode: mount %s: %w", dir, err)
	}
	// NewServer returns once the kernel's INIT is answered: the mount
	// serves. server.WaitMount is called only with SelfAccess: besides
	// waiting for that, it opens and closes a file in the mount (go-fuse's
	// poll hack), and a daemon must never call into its own mount: a
	// kill -9 while that close's FLUSH is being answered leaves the
	// process unkillable (the kernel waits for an answer its dead threads
	// cannot give) and the mount dead until its connection is aborted. The
	// hack teaches the kernel that POLL is not implemented, which matters
	// only to a process that polls its own files; rlfs answers POLL from
	// anyone else with ENOSYS anyway.
	go server.Serve()
	if opt.SelfAccess {
		if err := server.WaitMount(); err != nil {
			return nil, fmt.Errorf("fsnode: mount %s: %w", dir, err)
		}
	}
	m := &Mount{Dir: dir, root: root, server: server, direct: opt.Direct, done: make(chan struct{})}
	if root.reg.Shared() {
		root.reg.OnChange(root.invalidate) // mounted: the kernel can be told now
	}
	go func() {
		server.Wait()
		close(m.done)
	}()
	return m, nil
}

// Done is closed when the kernel connection ends (unmounted or aborted
// from outside, or after Shutdown).
func (m *Mount) Done() <-chan struct{} { return m.done }

// replyGrace is how long Shutdown waits, after the last open handler has
// returned, for go-fuse to write the replies before the mount goes away.
const replyGrace = 100 * time.Millisecond

// detachGrace is how long Shutdown waits, after detaching, for the
// connection to end by itself; it does not while holders keep files open.
const detachGrace = 500 * time.Millisecond

// Shutdown ends the filesystem: every waiter gets EIO (the caller has closed
// the registry, which fails them), their replies are written, then the mount
// is detached even while some process still holds `acquire` open.
func (m *Mount) Shutdown(timeout time.Duration) error {
	handled := make(chan struct{})
	go func() {
		m.root.inflight.Wait()
		close(handled)
	}()
	select {
	case <-handled:
	case <-time.After(timeout):
	}
	time.Sleep(replyGrace)
	select {
	case <-m.done:
		return nil // already gone
	default:
	}
	var err error
	if m.direct {
		err = syscall.Unmount(m.Dir, syscall.MNT_DETACH)
	} else {
		err = exec.Command("fusermount3", "-u", "-z", m.Dir).Run()
	}
	if err != nil {
		return fmt.Errorf("fsnode: unmount %s: %w", m.Dir, err)
	}
	select {
	case <-m.done:
	case <-time.After(detachGrace):
		// Holders still have files open; exiting closes /dev/fuse, which
		// ends the connection for them.
	}
	return nil
}

// Detach lazily unmounts a mount whose connection ended from outside (its
// FUSE connection aborted), so the mountpoint is not left dead
// ("transport endpoint is not connected") for the next start.
func (m *Mount) Detach() {
	if m.direct {
		_ = syscall.Unmount(m.Dir, syscall.MNT_DETACH)
	} else {
		_ = exec.Command("fusermount3", "-u", "-z", m.Dir).Run()
	}
}
