package fsnode

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

// requireFUSE skips without /dev/fuse or root, except under CI, where it fails.
func requireFUSE(t *testing.T) {
	t.Helper()
	_, err := os.Stat("/dev/fuse")
	if err == nil && os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("FUSE is required in CI: /dev/fuse: %v, euid %d", err, os.Geteuid())
	}
	t.Skip("needs /dev/fuse and root")
}

// settleTimeout bounds how long the tests poll for what follows a close
// (RELEASE is asynchronous): generous, as it only bounds a broken node tree
// on a loaded machine.
const settleTimeout = 30 * time.Second

type fixture struct {
	dir string
	reg *meter.Registry
	mnt *Mount
}

// mount serves a registry with the given meters at a temporary directory.
func mount(t *testing.T, meters map[string]string) *fixture {
	t.Helper()
	requireFUSE(t)
	reg, err := meter.OpenLocal(metertest.NewMemStore(), meter.Options{})
	require.NoError(t, err)
	for name, text := range meters {
		spec, err := meter.ParseSpec(text)
		require.NoError(t, err)
		_, err = reg.Create(name, spec, meter.DefaultAttr())
		require.NoError(t, err)
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	require.NoError(t, os.Mkdir(dir, 0o755))
	mnt, err := NewMount(dir, NewRoot(Options{Registry: reg}), MountOptions{Direct: true, SelfAccess: true, Debug: testing.Verbose() && os.Getenv("RLFS_DEBUG") != ""})
	require.NoError(t, err)
	t.Cleanup(func() {
		reg.Close()
		require.NoError(t, mnt.Shutdown(time.Second))
	})
	return &fixture{dir: dir, reg: reg, mnt: mnt}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func TestLayout(t *testing.T) {
	f := mount(t, map[string]string{"email": "1/s,75/h", "api": "concurrency=4"})
	require.Equal(t, []string{"api", "email"}, names(t, f.dir))
	require.Equal(t, []string{"acquire", "data", "holders", "limits", "pause", "status", "waiters"}, names(t, filepath.Join(f.dir, "email")))
	b, err := os.ReadFile(filepath.Join(f.dir, "email", "limits"))
	require.NoError(t, err)
	require.Equal(t, "1/1s\n75/1h\nconcurrency=1\n", string(b))
	b, err = os.ReadFile(filepath.Join(f.dir, "email", "status"))
	require.NoError(t, err)
	require.Contains(t, string(b), "meter: email\n")
	require.Contains(t, string(b), "in_progress: 0 of 1\n")
	_, err = os.Stat(filepath.Join(f.dir, "nosuch"))
	require.True(t, errors.Is(err, os.ErrNotExist), "stat of a missing meter = %v, want ENOENT", err)
}

func TestAcquireHoldersAndRelease(t *testing.T) {
	f := mount(t, map[string]string{"m": "concurrency=1"})
	acq := filepath.Join(f.dir, "m", "acquire")
	asked := time.Now()
	fd, err := os.Open(acq)
	require.NoError(t, err)
	granted := time.Now()
	// Close before the unmount even if the test fails: a process that exits
	// holding a file of its own mount deadlocks in FLUSH.
	t.Cleanup(func() { fd.Close() })
	line := make([]byte, 200)
	n, _ := fd.Read(line)
	require.True(t, strings.HasPrefix(string(line[:n]), "granted "), "read of acquire = %q", line[:n])

	hs := names(t, filepath.Join(f.dir, "m", "holders"))
	require.Len(t, hs, 1)
	require.True(t, strings.HasSuffix(hs[0], "."+itoa(os.Getpid())), "holder entry %q does not name pid %d", hs[0], os.Getpid())
	st, err := os.Stat(filepath.Join(f.dir, "m", "holders", hs[0]))
	require.NoError(t, err)
	// By order, not by closeness to now, which load stretches: the mtime
	// is the grant time, between the open's call and its return (less 1 ms:
	// times may be kept in ms).
	require.WithinRange(t, st.ModTime(), asked.Add(-time.Millisecond), granted.Add(time.Millisecond), "mtime of the holder entry")
	body, err := os.ReadFile(filepath.Join(f.dir, "m", "holders", hs[0]))
	require.NoError(t, err)
	require.Contains(t, string(body), "pid: "+itoa(os.Getpid())+"\n")
	require.ErrorIs(t, os.Remove(filepath.Join(f.dir, "m", "holders", hs[0])), syscall.EPERM, "rm of a holder entry")
	require.ErrorIs(t, os.WriteFile(filepath.Join(f.dir, "m", "holders", "x"), nil, 0o644), syscall.EPERM, "create in holders/")

	// A second, non-blocking open gets EAGAIN while the first holds.
	_, err = syscall.Open(acq, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	require.Equal(t, syscall.EAGAIN, err)

	require.NoError(t, fd.Close())
	// RELEASE is asynchronous: poll for the holder to go.
	require.Eventually(t, func() bool { return len(names(t, filepath.Join(f.dir, "m", "holders"))) == 0 }, settleTimeout, time.Millisecond)
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestMkdirLimitsRmdir(t *testing.T) {
	f := mount(t, nil)
	api := filepath.Join(f.dir, "api")
	require.NoError(t, os.Mkdir(api, 0o750))
	st, err := os.Stat(api)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o750)|os.ModeDir, st.Mode())
	b, err := os.ReadFile(filepath.Join(api, "limits"))
	require.NoError(t, err)
	require.Equal(t, "concurrency=1\n", string(b), "a new meter is a mutex")

	// echo '2/1s' > limits: truncate, then write; applied at once.
	require.NoError(t, os.WriteFile(filepath.Join(api, "limits"), []byte("2/1s\nconcurrency=0\n"), 0o644))
	b, _ = os.ReadFile(filepath.Join(api, "limits"))
	require.Equal(t, "2/1s\nconcurrency=0\n", string(b))
	require.Equal(t, "2/1s,concurrency=0", f.reg.Get("api").Spec().String())

	// A bad write fails with EINVAL and changes nothing.
	err = os.WriteFile(filepath.Join(api, "limits"), []byte("zero/s\n"), 0o644)
	require.ErrorIs(t, err, syscall.EINVAL)
	require.Equal(t, "2/1s,concurrency=0", f.reg.Get("api").Spec().String())

	// rmdir refuses a busy meter, then removes an idle one.
	fd, err := os.Open(filepath.Join(api, "acquire"))
	require.NoError(t, err)
	t.Cleanup(func() { fd.Close() })
	require.ErrorIs(t, os.Remove(api), syscall.EBUSY)
	require.NoError(t, fd.Close())
	require.Eventually(t, func() bool { return os.Remove(api) == nil }, settleTimeout, time.Millisecond)
	require.Empty(t, names(t, f.dir))
	require.Nil(t, f.reg.Get("api"))
}

func TestBadNamesAndForbiddenOperations(t *testing.T) {
	f := mount(t, map[string]string{"m": ""})
	for _, name := range []string{".hidden", "tab\there", " lead"} {
		require.ErrorIs(t, os.Mkdir(filepath.Join(f.dir, name), 0o755), syscall.EINVAL, "mkdir %q", name)
	}
	require.ErrorIs(t, os.Mkdir(filepath.Join(f.dir, strings.Repeat("x", 256)), 0o755), syscall.ENAMETOOLONG)
	require.ErrorIs(t, os.Mkdir(filepath.Join(f.dir, "m"), 0o755), syscall.EEXIST)

	m := filepath.Join(f.dir, "m")
	for what, err := range map[string]error{
		"open acquire O_WRONLY": openErr(filepath.Join(m, "acquire"), os.O_WRONLY),
		"open acquire O_TRUNC":  openErr(filepath.Join(m, "acquire"), os.O_RDONLY|os.O_TRUNC),
		"open status O_WRONLY":  openErr(filepath.Join(m, "status"), os.O_WRONLY),
		"create a file":         openErr(filepath.Join(m, "new"), os.O_RDWR|os.O_CREATE),
		"create in root":        openErr(filepath.Join(f.dir, "new"), os.O_RDWR|os.O_CREATE),
		"unlink acquire":        os.Remove(filepath.Join(m, "acquire")),
		"rename acquire":        os.Rename(filepath.Join(m, "acquire"), filepath.Join(m, "x")),
		"rename a meter":        os.Rename(m, filepath.Join(f.dir, "n")),
		"truncate acquire":      os.Truncate(filepath.Join(m, "acquire"), 0),
		"truncate status":       os.Truncate(filepath.Join(m, "status"), 0),
		"mkdir in a meter":      os.Mkdir(filepath.Join(m, "sub"), 0o755),
	} {
		require.ErrorIs(t, err, syscall.EPERM, what)
	}
	require.NotNil(t, f.reg.Get("m"))
	require.Equal(t, []string{"acquire", "data", "holders", "limits", "pause", "status", "waiters"}, names(t, m))
	// The O_TRUNC open was granted (the kernel sends OPEN without O_TRUNC,
	// then a truncate), and revoked: nothing counts, nothing is held.
	require.Eventually(t, func() bool { return f.reg.Get("m").Snapshot().HoldersN == 0 }, settleTimeout, time.Millisecond)
	s := f.reg.Get("m").Snapshot()
	require.Equal(t, uint64(0), s.Grants, "refused opens counted nothing")
	require.Equal(t, uint64(0), s.Stats.Releases, "a revoked grant is not released")
}

func openErr(path string, flag int) error {
	f, err := os.OpenFile(path, flag, 0o644)
	if err == nil {
		f.Close()
	}
	return err
}

// TestChmodChownPersist: chmod and chown of a meter reach the store, its
// files follow them, and after a restart (the mount shut down, the registry
// closed, a new registry loaded from the same store and mounted again) the
// meter still has that owner and mode. The test once checked only the
// running registry, which holds without persisting anything.
func TestChmodChownPersist(t *testing.T) {
	requireFUSE(t)
	store := metertest.NewMemStore()
	dir := filepath.Join(t.TempDir(), "mnt")
	require.NoError(t, os.Mkdir(dir, 0o755))
	first := serveStore(t, store, dir, map[string]string{"m": ""})
	m := filepath.Join(dir, "m")
	require.NoError(t, os.Chmod(m, 0o700))
	require.NoError(t, os.Chown(m, 1234, 5678))
	requireOwnerMode(t, m, 0o700, 1234, 5678)
	stored, err := store.Load()
	require.NoError(t, err)
	require.Len(t, stored, 1)
	require.Equal(t, meter.Attr{Mode: 0o700, UID: 1234, GID: 5678}, stored[0].Attr, "the store holds the new owner and mode")

	first.stop(t)
	serveStore(t, store, dir, nil)
	requireOwnerMode(t, m, 0o700, 1234, 5678)
}

// requireOwnerMode checks a meter directory's mode and owner and those its
// files take from it.
func requireOwnerMode(t *testing.T, m string, mode os.FileMode, uid, gid uint32) {
	t.Helper()
	for _, f := range []struct {
		name string
		mask os.FileMode
	}{{"", 0o7777}, {"acquire", 0o444}, {"status", 0o444}, {"limits", 0o666}} {
		st, err := os.Stat(filepath.Join(m, f.name))
		require.NoError(t, err)
		want := mode & f.mask
		if f.name == "acquire" {
			want |= want >> 1 // writable where readable: O_RDWR to write a call's actual cost
		}
		require.Equal(t, want, st.Mode().Perm(), "mode of %s/%s", m, f.name)
		sys := st.Sys().(*syscall.Stat_t)
		require.Equal(t, uid, sys.Uid, "owner of %s/%s", m, f.name)
		require.Equal(t, gid, sys.Gid, "group of %s/%s", m, f.name)
	}
}

// served is a registry over a store, mounted at a directory.
type served struct {
	reg  *meter.Registry
	mnt  *Mount
	once sync.Once
}

// serveStore opens a registry over store, creates the given meters, and
// mounts it at dir. Cleanup (or stop, once) unmounts it.
func serveStore(t *testing.T, store meter.LocalStore, dir string, meters map[string]string) *served {
	t.Helper()
	reg, err := meter.OpenLocal(store, meter.Options{})
	require.NoError(t, err)
	for name, text := range meters {
		spec, err := meter.ParseSpec(text)
		require.NoError(t, err)
		_, err = reg.Create(name, spec, meter.DefaultAttr())
		require.NoError(t, err)
	}
	mnt, err := NewMount(dir, NewRoot(Options{Registry: reg, Logger: discard()}), MountOptions{Direct: true, SelfAccess: true})
	require.NoError(t, err)
	s := &served{reg: reg, mnt: mnt}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *served) stop(t *testing.T) {
	s.once.Do(func() {
		s.reg.Close()
		require.NoError(t, s.mnt.Shutdown(time.Second))
		select {
		case <-s.mnt.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("the mount at %s did not end after Shutdown", s.mnt.Dir)
		}
	})
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestChmodReachesAcquireAtN pins a bug: chmod of a meter told the kernel
// about its named files only, so an acquire@N looked up before kept its old
// mode in the kernel's attribute cache for up to a second, and, with
// default_permissions, its old access: a user refused by chmod 0700 could
// still open acquire@N meanwhile.
func TestChmodReachesAcquireAtN(t *testing.T) {
	f := mount(t, map[string]string{"m": "units:100/1h,concurrency=0"})
	m := filepath.Join(f.dir, "m")
	acq := filepath.Join(m, "acquire@5")
	for _, mode := range []os.FileMode{0o750, 0o755, 0o700} {
		require.NoError(t, os.Chmod(m, mode))
		st, err := os.Stat(acq)
		require.NoError(t, err)
		want := mode & 0o444
		require.Equal(t, want|want>>1, st.Mode().Perm(), "mode of acquire@5 right after chmod %o of its meter", mode)
	}
}
