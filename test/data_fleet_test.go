package test

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Data files in a fleet (design §8, §9): kept in the shared store, so every
// host reads what any host wrote, at once (nothing is cached).

// TestDataFleetShared: a write, a rename and an unlink on one host are what
// the other host sees right after; a write too big is refused there too.
func TestDataFleetShared(t *testing.T) {
	t.Parallel()
	_, ds := fleet(t, 2, nil, "m=concurrency=1")
	a, b := ds[0], ds[1]
	out, code := sh(t, "echo hello > "+a.path("m", "data", "greeting"))
	require.Equal(t, 0, code, out)
	requireData(t, b.path("m", "data", "greeting"), "hello\n")

	out, code = sh(t, "echo more >> "+b.path("m", "data", "greeting")+" && mv "+b.path("m", "data", "greeting")+" "+b.path("m", "data", "g2"))
	require.Equal(t, 0, code, out)
	require.Equal(t, []string{"g2"}, a.dataNames(t, "m"))
	requireData(t, a.path("m", "data", "g2"), "hello\nmore\n")

	require.NoError(t, os.Remove(a.path("m", "data", "g2")))
	require.Empty(t, b.dataNames(t, "m"))

	out, code = sh(t, "head -c 2000000 /dev/zero > "+b.path("m", "data", "big"))
	require.NotEqual(t, 0, code)
	require.Contains(t, out, "File too large")
	require.Empty(t, a.dataNames(t, "m"))
}

// TestDataFleetCounter20: the counter across two hosts: 10 flock
// processes on each increment data/n under the fleet's one concurrency=1
// meter, and it ends at 20 on both.
func TestDataFleetCounter20(t *testing.T) {
	t.Parallel()
	_, ds := fleet(t, 2, nil, "m=concurrency=1")
	ps := make([]*proc, 0, 20)
	for i := range 20 {
		d := ds[i%2]
		ps = append(ps, startProc(t, "flock", d.path("m", "acquire"), posixSh.need(t), "-c", dataCounterScript, "sh", d.path("m", "data", "n")))
	}
	for _, p := range ps {
		p.requireSuccess(t, pollTimeout)
	}
	for _, d := range ds {
		requireData(t, d.path("m", "data", "n"), "20\n")
	}
}

// TestDataFleetRmdir: rmdir of a meter on one host deletes its data for
// the fleet: the other host's open data/ gets ENOENT once it has seen the
// meter go, and the meter made again there has an empty data/.
func TestDataFleetRmdir(t *testing.T) {
	t.Parallel()
	_, ds := fleet(t, 2, nil, "m=concurrency=1")
	a, b := ds[0], ds[1]
	require.NoError(t, os.WriteFile(a.path("m", "data", "f"), []byte("x"), 0o644))
	dir, err := os.Open(b.path("m", "data"))
	require.NoError(t, err)
	defer dir.Close()

	since := time.Now()
	require.NoError(t, syscall.Rmdir(a.path("m")))
	visibleOn(t, []*daemon{b}, since, "m removed", func(d *daemon) bool {
		_, err := os.Stat(d.path("m"))
		return errors.Is(err, fs.ErrNotExist)
	})
	_, err = dir.Readdirnames(-1)
	requireErrno(t, err, syscall.ENOENT, "readdir on h2 of data/ of a meter removed on h1")
	require.NoError(t, os.Mkdir(b.path("m"), 0o755))
	require.Empty(t, b.dataNames(t, "m"))
	waitFor(t, "m made again on h2 shows on h1", func() bool { _, err := os.Stat(a.path("m", "data")); return err == nil }, nil)
	require.Empty(t, a.dataNames(t, "m"))
}
