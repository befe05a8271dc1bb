package fsnode

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

type fixture struct {
	dir string
	reg *meter.Registry
	mnt *Mount
}

// mount serves a registry with the given meters at a temporary directory.
func mount(t *testing.T, meters map[string]string) *fixture {
	t.Helper()
	requireFUSE(t)
	reg, err := meter.Open(metertest.NewMemStore(), meter.Options{})
	require.NoError(t, err)
	for name, text := range meters {
		spec, err := meter.ParseSpec(text)
		require.NoError(t, err)
		_, err = reg.Create(name, spec, meter.DefaultAttr())
		require.NoError(t, err)
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	require.NoError(t, os.Mkdir(dir, 0o755))
	mnt, err := NewMount(dir, NewRoot(Options{Registry: reg}), MountOptions{Direct: true, Debug: testing.Verbose() && os.Getenv("RLFS_DEBUG") != ""})
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
	require.Equal(t, []string{"acquire", "holders", "limits", "status", "waiters"}, names(t, filepath.Join(f.dir, "email")))
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
	fd, err := os.Open(acq)
	require.NoError(t, err)
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
	require.WithinDuration(t, time.Now(), st.ModTime(), 5*time.Second)
	body, err := os.ReadFile(filepath.Join(f.dir, "m", "holders", hs[0]))
	require.NoError(t, err)
	require.Contains(t, string(body), "pid: "+itoa(os.Getpid())+"\n")

	// A second, non-blocking open gets EAGAIN while the first holds.
	_, err = syscall.Open(acq, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	require.Equal(t, syscall.EAGAIN, err)

	require.NoError(t, fd.Close())
	// RELEASE is asynchronous: poll for the holder to go.
	require.Eventually(t, func() bool { return len(names(t, filepath.Join(f.dir, "m", "holders"))) == 0 }, 5*time.Second, time.Millisecond)
}

func itoa(i int) string { return strconv.Itoa(i) }
