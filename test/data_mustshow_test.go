package test

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// The "Must show" list of issue 11 (data files), each from real processes
// on a real mount. Helpers for every data_*_test.go are at the end.

// TestDataEchoReadByAnother: `echo hello > MNT/m/data/greeting` is read
// back by another process, and listed.
func TestDataEchoReadByAnother(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	f := d.path("m", "data", "greeting")
	out, code := sh(t, "echo hello > "+f)
	require.Equal(t, 0, code, out)
	out, code = sh(t, "cat "+f)
	require.Equal(t, 0, code, out)
	require.Equal(t, "hello\n", out, "cat in another process reads what echo wrote")
	require.Equal(t, []string{"greeting"}, d.dataNames(t, "m"))
	requireData(t, f, "hello\n")
}

// dataCounterScript is one of the 20 increments: read n, write
// n+1, inside the meter's call (flock opens acquire; concurrency=1).
const dataCounterScript = `n=$(cat "$1" 2>/dev/null || echo 0); echo $((n+1)) > "$1"`

// TestDataCounter20 is the second must-show: 20 processes run
// `flock MNT/m/acquire sh -c '…read n, write n+1…'` at once; the meter
// lets one in at a time, and each sees the last one's write, so data/n
// ends at 20. It is still 20 after kill -9 of the daemon and a restart.
func TestDataCounter20(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	n := d.path("m", "data", "n")
	incrementUnderFlock(t, d.path("m", "acquire"), n, 20)
	requireData(t, n, "20\n")
	require.Equal(t, "20", d.status(t, "m")["grants_total"], "one call per increment")

	d.kill9(t)
	d.start(t)
	requireData(t, n, "20\n")
}

// incrementUnderFlock starts procs flock(1) processes at once, each
// incrementing the counter in file under acq, and waits for all.
func incrementUnderFlock(t *testing.T, acq, file string, procs int) {
	t.Helper()
	ps := make([]*proc, procs)
	for i := range ps {
		ps[i] = startProc(t, "flock", acq, posixSh.need(t), "-c", dataCounterScript, "sh", file)
	}
	for _, p := range ps {
		p.requireSuccess(t, pollTimeout)
	}
}

// TestDataTooLargeMkdirRmdir is the third must-show: a 2 MB write
// fails with "File too large" and stores nothing (not even an empty file,
// and an existing file keeps its content); `mkdir data/sub` fails; a meter
// removed and made again has an empty data/.
func TestDataTooLargeMkdirRmdir(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	data := d.path("m", "data")
	out, code := sh(t, "head -c 2000000 /dev/zero > "+data+"/big")
	require.NotEqual(t, 0, code)
	require.Contains(t, out, "File too large")
	_, err := os.Stat(data + "/big")
	require.ErrorIs(t, err, syscall.ENOENT, "a refused 2 MB write stores nothing")

	require.NoError(t, os.WriteFile(data+"/kept", []byte("old"), 0o644))
	out, code = sh(t, "head -c 2000000 /dev/zero > "+data+"/kept")
	require.NotEqual(t, 0, code)
	require.Contains(t, out, "File too large")
	requireData(t, data+"/kept", "old")

	out, code = sh(t, "mkdir "+data+"/sub")
	require.NotEqual(t, 0, code)
	require.Contains(t, out, "Operation not permitted")
	require.Equal(t, []string{"kept"}, d.dataNames(t, "m"))

	out, code = sh(t, "rmdir "+d.path("m")+" && mkdir "+d.path("m"))
	require.Equal(t, 0, code, out)
	require.Empty(t, d.dataNames(t, "m"), "a meter removed and made again has an empty data/")
	_, err = os.Stat(data + "/kept")
	require.ErrorIs(t, err, syscall.ENOENT)
}

// --- helpers for the data_*_test.go files ---

// dataNames lists meter's data/, sorted.
func (d *daemon) dataNames(t *testing.T, meterName string) []string {
	t.Helper()
	names := d.entries(t, meterName, "data")
	if names == nil {
		names = []string{}
	}
	return names
}

// requireData requires file to hold want.
func requireData(t *testing.T, file, want string) {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err, "read %s", file)
	if len(want) > 200 || len(b) > 200 { // say how they differ, briefly
		require.True(t, string(b) == want, "content of %s: %d bytes %q…, want %d bytes %q…", file, len(b), b[:min(len(b), 20)], len(want), want[:min(len(want), 20)])
		return
	}
	require.Equal(t, want, string(b), "content of %s", file)
}

// requireErrno requires err to carry errno.
func requireErrno(t *testing.T, err error, errno syscall.Errno, what string) {
	t.Helper()
	require.Error(t, err, "%s: want %v", what, errno)
	var got syscall.Errno
	require.True(t, errors.As(err, &got), "%s: %v carries no errno, want %v", what, err, errno)
	require.Equal(t, errno, got, "%s: got %v (%v), want %v", what, got, err, errno)
}

// writeData opens file with flags, writes content, and closes it; it
// returns the first error (the close's too, where a data file's content is
// stored).
func writeData(file string, flags int, content []byte) error {
	f, err := os.OpenFile(file, flags, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// repeat is n bytes of c.
func repeat(c byte, n int) []byte { return []byte(strings.Repeat(string(c), n)) }
