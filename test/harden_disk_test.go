package test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestFullDiskRecovers pins a bug: one full disk broke every meter until a
// restart. After ENOSPC on the grants journal, its first write error was
// sticky, so every open of every meter's acquire got EIO even once space
// was back. Now a failed write changes nothing (the file's size does not
// advance) and the next grant retries it: the database is on a real 2 MB
// tmpfs, filled with dd until ENOSPC, grants fail with EIO, the filler is
// deleted, and grants work again within seconds, without a restart. The
// outage is logged (a Warn line, then an Info line) and counted in the
// metrics, and the stored data stays exact.
func TestFullDiskRecovers(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	disk := smallTmpfs(t, "2m") // registered first: unmounted after the daemon stopped
	addr := freePort(t)
	d := newDaemon(t, filepath.Join(disk, "meters.db"), "", []string{"--metrics", addr}, "m=concurrency=0", "n=concurrency=0")
	d.start(t)
	granted := map[string]int{}
	grant := func(name string) error {
		err := openNonblock(d.path(name, "acquire"))
		if err == nil {
			granted[name]++
		}
		return err
	}
	for range 10 {
		require.NoError(t, grant("m"))
		require.NoError(t, grant("n"))
	}

	filler := filepath.Join(disk, "filler")
	fill(t, filler)
	failed := map[string]int{}
	waitFor(t, "grants on both meters fail with EIO", func() bool {
		for _, name := range []string{"m", "n"} {
			err := grant(name)
			switch {
			case err == nil: // a flush freed journal space: take it too
				fill(t, filler)
			case errors.Is(err, syscall.EIO):
				failed[name]++
			default:
				t.Fatalf("open of %s/acquire on a full disk: %v; want EIO", name, err)
			}
		}
		return failed["m"] >= 3 && failed["n"] >= 3
	}, func() string { return fmt.Sprintf("granted %v, failed %v", granted, failed) })
	require.NoError(t, os.Remove(filler))
	freed := time.Now()
	waitGrant(t, d.path("m", "acquire"))
	granted["m"]++
	took := time.Since(freed)
	for range 20 {
		require.NoError(t, grant("m"), "grants work again")
		require.NoError(t, grant("n"), "grants work again, on every meter")
	}
	t.Logf("FIGURE full disk: %v grants failed with EIO; after the filler was deleted, a grant worked %s later, without a restart", failed, fmtMS(took))
	require.Less(t, took, 5*time.Second, "grants work again within seconds")

	// One line when the grant journal's writes start to fail, one when they
	// work again (SQLite, flushed every 50 ms, may have its own pair).
	d.waitLog(t, `msg="database writes work again" part="grant journal"`)
	// (A flush that freed journal space while the disk was full ends an
	// outage too: then there are several pairs.)
	lines := d.logLines(`part="grant journal"`)
	require.NotEmpty(t, lines)
	require.Zero(t, len(lines)%2, "a line as each outage begins, one as it ends:\n%s", strings.Join(lines, "\n"))
	for i := 0; i < len(lines); i += 2 {
		require.Contains(t, lines[i], "level=WARN")
		require.Contains(t, lines[i], "database writes fail")
		require.Contains(t, lines[i], "no space left on device")
		require.Contains(t, lines[i+1], "level=INFO")
		require.Regexp(t, `failed_writes=[1-9]`, lines[i+1])
		require.Contains(t, lines[i+1], "failed_for=")
	}
	metrics := scrape(t, addr)
	require.GreaterOrEqual(t, metrics["rlfs_store_write_errors_total"], float64(failed["m"]+failed["n"]))
	require.GreaterOrEqual(t, metrics["rlfs_store_outages_total"], float64(len(lines)/2))
	waitFor(t, "the metrics say writes work", func() bool { return scrape(t, addr)["rlfs_store_writes_failing"] == 0 }, nil)

	for _, name := range []string{"m", "n"} {
		d.waitStatus(t, name, "grants_total", strconv.Itoa(granted[name]))
	}
	d.restart(t)
	for _, name := range []string{"m", "n"} {
		require.Equal(t, strconv.Itoa(granted[name]), d.status(t, name)["grants_total"], "after a restart, %s counts every grant and nothing more", name)
	}
	require.NoError(t, grant("m"))
	d.stop(t)
}

// smallTmpfs mounts a tmpfs of the given size (such as "2m") on a new
// directory and returns it; cleanup unmounts it.
func smallTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+size))
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("umount %s: %v (detaching it)", dir, err)
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// fill appends zeros to file with dd until its disk is full.
func fill(t *testing.T, file string) {
	t.Helper()
	out, err := exec.Command("dd", "if=/dev/zero", "of="+file, "bs=4k", "oflag=append", "conv=notrunc").CombinedOutput()
	require.Error(t, err, "dd stops at a full disk")
	require.True(t, strings.Contains(string(out), "No space left on device"), "dd: %s", out)
}
