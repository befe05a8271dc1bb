package fsnode

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/rlfs/rlfs/meter"
)

// requireErrno requires err to carry errno.
func requireErrno(t *testing.T, err error, errno syscall.Errno, what string) {
	t.Helper()
	var got syscall.Errno
	require.True(t, errors.As(err, &got), "%s: %v, want %v", what, err, errno)
	require.Equal(t, errno, got, "%s: %v", what, err)
}

// TestDataErrnos pins the data file errnos that were wrong once: a name
// over 255 bytes is ENAMETOOLONG (was EINVAL); setxattr is ENOTSUP (was
// ENODATA); a chmod or chown that changes nothing is accepted (sed -i and
// cp -p failed with EPERM), one that changes something is EPERM.
func TestDataErrnos(t *testing.T) {
	f := mount(t, map[string]string{"m": "concurrency=1"})
	data := f.dir + "/m/data/"
	require.NoError(t, os.WriteFile(data+strings.Repeat("a", 255), nil, 0o644))
	requireErrno(t, os.WriteFile(data+strings.Repeat("b", 256), nil, 0o644), syscall.ENAMETOOLONG, "create with 256 bytes")
	requireErrno(t, os.WriteFile(data+"bad\xff", nil, 0o644), syscall.EINVAL, "create with invalid UTF-8")
	require.NoError(t, os.WriteFile(data+"f", []byte("x"), 0o644))
	requireErrno(t, unix.Setxattr(data+"f", "user.x", []byte("1"), 0), syscall.ENOTSUP, "setxattr of a file")
	requireErrno(t, unix.Setxattr(data, "user.x", []byte("1"), 0), syscall.ENOTSUP, "setxattr of data/")
	require.NoError(t, os.Chmod(data+"f", 0o644), "chmod to the mode shown")
	require.NoError(t, os.Chown(data+"f", 0, 0), "chown to the owner shown")
	requireErrno(t, os.Chmod(data+"f", 0o600), syscall.EPERM, "chmod to another mode")
}

// TestDataNoSpaceAtWrite: a write that takes a meter's files past 16 MiB
// gets ENOSPC at that write (was: only at close), and the file it created
// does not remain.
func TestDataNoSpaceAtWrite(t *testing.T) {
	f := mount(t, map[string]string{"m": "concurrency=1"})
	m := f.reg.Get("m")
	full := make([]byte, meter.MaxDataFile)
	for i := range meter.MaxDataTotal / meter.MaxDataFile {
		require.NoError(t, m.WriteData(string(rune('a'+i)), full))
	}
	w, err := os.Create(f.dir + "/m/data/new")
	require.NoError(t, err)
	_, err = w.Write([]byte("x"))
	requireErrno(t, err, syscall.ENOSPC, "write past 16 MiB")
	requireErrno(t, w.Close(), syscall.ENOSPC, "its close")
	_, err = m.StatData("new")
	require.ErrorIs(t, err, meter.ErrNotExist, "the refused file does not remain")
}

// TestDataOfRemovedMeter: data/ of a removed meter, still open, gives
// ENOENT and does not list a meter made again under its name.
func TestDataOfRemovedMeter(t *testing.T) {
	f := mount(t, map[string]string{"m": "concurrency=1"})
	dir, err := os.Open(f.dir + "/m/data")
	require.NoError(t, err)
	defer dir.Close()
	require.NoError(t, syscall.Rmdir(f.dir+"/m"))
	require.NoError(t, os.Mkdir(f.dir+"/m", 0o755))
	require.NoError(t, os.WriteFile(f.dir+"/m/data/g", nil, 0o644))
	_, err = dir.Readdirnames(-1)
	requireErrno(t, err, syscall.ENOENT, "readdir of a removed meter's data/")
}
