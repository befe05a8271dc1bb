package test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The bounds and refusals of data files: each with its errno, and with
// everything stored left as it was.

const mib = 1 << 20

// TestDataFileTooBig: a file may hold exactly 1 MiB; one byte more gets
// EFBIG at the write, the close says so too, and the file keeps its
// previous content. truncate(2) past 1 MiB is EFBIG as well.
func TestDataFileTooBig(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	f := d.path("m", "data", "f")
	require.NoError(t, writeData(f, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, repeat('a', mib)))
	requireSize(t, f, mib)

	w, err := os.OpenFile(f, os.O_WRONLY|os.O_TRUNC, 0)
	require.NoError(t, err)
	_, err = w.Write(repeat('b', mib+1))
	requireErrno(t, err, syscall.EFBIG, "write of 1 MiB + 1")
	requireErrno(t, w.Close(), syscall.EFBIG, "close after a refused write")
	requireData(t, f, string(repeat('a', mib)))

	err = writeData(f, os.O_WRONLY|os.O_APPEND, []byte("x"))
	requireErrno(t, err, syscall.EFBIG, "append to a file of 1 MiB")
	requireErrno(t, os.Truncate(f, mib+1), syscall.EFBIG, "truncate(2) to 1 MiB + 1")
	requireData(t, f, string(repeat('a', mib)))
	require.Equal(t, []string{"f"}, d.dataNames(t, "m"))
}

// TestDataMeterFull: a meter's files may hold 16 MiB; a write past that
// gets ENOSPC at the write (not only at close) and stores nothing, neither
// in a new file (which does not remain, even empty) nor in an old one
// (which keeps its content). Once a file is removed, there is room again.
func TestDataMeterFull(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	data := d.path("m", "data")
	for i := range 15 {
		require.NoError(t, writeData(fmt.Sprintf("%s/big%02d", data, i), os.O_WRONLY|os.O_CREATE, repeat(byte('a'+i), mib)))
	}
	require.NoError(t, writeData(data+"/half1", os.O_WRONLY|os.O_CREATE, repeat('y', mib/2)))
	require.NoError(t, writeData(data+"/half2", os.O_WRONLY|os.O_CREATE, repeat('z', mib/2)))
	before := dataDigest(t, data)

	w, err := os.OpenFile(data+"/new", os.O_WRONLY|os.O_CREATE, 0o644)
	require.NoError(t, err)
	_, err = w.Write([]byte("x"))
	requireErrno(t, err, syscall.ENOSPC, "the write of a byte past 16 MiB")
	requireErrno(t, w.Close(), syscall.ENOSPC, "its close")
	err = writeData(data+"/half1", os.O_WRONLY|os.O_APPEND, []byte("x"))
	requireErrno(t, err, syscall.ENOSPC, "an append past 16 MiB")
	require.Equal(t, before, dataDigest(t, data), "a full meter's files are as they were: %s", dataFileList(data))

	require.NoError(t, os.Remove(data+"/big14"))
	require.NoError(t, writeData(data+"/new", os.O_WRONLY|os.O_CREATE, repeat('z', mib)))
	requireSize(t, data+"/new", mib)
}

// TestDataTooManyFiles: a meter holds at most 1,000 files; creating the
// 1,001st gets ENOSPC at the open and leaves the 1,000 as they were, and a
// rename over one of them (no new file) still works.
func TestDataTooManyFiles(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	data := d.path("m", "data")
	for i := range 1000 {
		require.NoError(t, os.WriteFile(fmt.Sprintf("%s/f%04d", data, i), []byte(fmt.Sprint(i)), 0o644))
	}
	_, err := os.OpenFile(data+"/one-more", os.O_WRONLY|os.O_CREATE, 0o644)
	requireErrno(t, err, syscall.ENOSPC, "create of the 1,001st file")
	names := d.dataNames(t, "m")
	require.Len(t, names, 1000)
	require.Equal(t, "f0000", names[0])
	require.Equal(t, "f0999", names[999])
	requireData(t, data+"/f0500", "500")

	require.NoError(t, os.Rename(data+"/f0001", data+"/f0000"))
	requireData(t, data+"/f0000", "1")
	require.NoError(t, os.WriteFile(data+"/one-more", []byte("fits"), 0o644))
	require.Len(t, d.dataNames(t, "m"), 1000)
}

// TestDataRegularFilesOnly: no directories, links or special files in
// data/ (EPERM), no rename out of it (EXDEV), no extended attributes
// (ENOTSUP), no chmod or chown of a file (EPERM: the meter's decide).
func TestDataRegularFilesOnly(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1", "other=concurrency=1")
	data := d.path("m", "data")
	f := data + "/f"
	require.NoError(t, os.WriteFile(f, []byte("x"), 0o644))
	requireErrno(t, os.Mkdir(data+"/sub", 0o755), syscall.EPERM, "mkdir in data/")
	requireErrno(t, os.Symlink("f", data+"/sym"), syscall.EPERM, "symlink in data/")
	requireErrno(t, os.Link(f, data+"/hard"), syscall.EPERM, "link in data/")
	requireErrno(t, syscall.Mknod(data+"/fifo", syscall.S_IFIFO|0o644, 0), syscall.EPERM, "mknod of a fifo in data/")
	requireErrno(t, os.Rename(f, d.path("m", "f")), syscall.EXDEV, "rename into the meter directory")
	requireErrno(t, os.Rename(f, d.path("other", "data", "f")), syscall.EXDEV, "rename into another meter's data/")
	requireErrno(t, os.Rename(f, t.TempDir()+"/f"), syscall.EXDEV, "rename out of the mount")
	requireErrno(t, unix.Setxattr(f, "user.x", []byte("1"), 0), syscall.ENOTSUP, "setxattr of a data file")
	requireErrno(t, os.Chmod(f, 0o600), syscall.EPERM, "chmod of a data file")
	requireErrno(t, os.Chown(f, 1, 1), syscall.EPERM, "chown of a data file")
	requireErrno(t, syscall.Rmdir(f), syscall.ENOTDIR, "rmdir of a data file")
	require.Equal(t, []string{"f"}, d.dataNames(t, "m"))
	require.Empty(t, d.dataNames(t, "other"))
	requireData(t, f, "x")
}

// TestDataRemovedMeter: a meter with data files is removable only when
// idle (EBUSY while held, its files kept); once removed, a descriptor
// still open on its data/ or on one of its files gets ENOENT and never
// reaches the files of a meter made again under its name.
func TestDataRemovedMeter(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	data := d.path("m", "data")
	require.NoError(t, os.WriteFile(data+"/f", []byte("old"), 0o644))
	holder := pyHold(t, d.path("m", "acquire"))
	d.waitEntries(t, "m", "holders", 1)
	requireErrno(t, syscall.Rmdir(d.path("m")), syscall.EBUSY, "rmdir of a held meter")
	requireData(t, data+"/f", "old")
	holder.release(t)

	dir, err := os.Open(data)
	require.NoError(t, err)
	defer dir.Close()
	w, err := os.OpenFile(data+"/f", os.O_WRONLY|os.O_TRUNC, 0)
	require.NoError(t, err)
	waitFor(t, "rmdir of the idle meter succeeds", func() bool { return syscall.Rmdir(d.path("m")) == nil }, nil)
	require.NoError(t, os.Mkdir(d.path("m"), 0o755))
	require.NoError(t, os.WriteFile(data+"/g", []byte("new meter"), 0o644))

	_, err = dir.Readdirnames(-1)
	requireErrno(t, err, syscall.ENOENT, "readdir of a removed meter's data/")
	_, err = w.Write([]byte("late"))
	requireErrno(t, err, syscall.ENOENT, "write to a removed meter's file")
	requireErrno(t, w.Close(), syscall.ENOENT, "close of a removed meter's file")
	require.Equal(t, []string{"g"}, d.dataNames(t, "m"), "nothing of the removed meter reached the new one")
	requireData(t, data+"/g", "new meter")
	// the daemon's log reaches the harness through a pipe, a moment after
	// the rmdir returned
	waitFor(t, "the daemon logs the removal", func() bool {
		return strings.Contains(d.log.String(), `msg="meter removed" meter=m`)
	}, d.log.String)
}

// requireSize requires file to be size bytes long.
func requireSize(t *testing.T, file string, size int64) {
	t.Helper()
	st, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, size, st.Size(), "size of %s", file)
}

// dataDigest is "name sha256" of every file of dir, for comparing before
// and after.
func dataDigest(t *testing.T, dir string) string {
	t.Helper()
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	var b strings.Builder
	for _, de := range des {
		content, err := os.ReadFile(dir + "/" + de.Name())
		require.NoError(t, err)
		fmt.Fprintf(&b, "%s %x\n", de.Name(), sha256.Sum256(content))
	}
	return b.String()
}
