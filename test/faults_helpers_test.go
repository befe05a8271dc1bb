package test

// Helpers of the fault-injection tests (faults_*_test.go), which prove the
// rows of docs/reliability.md.
//
// Two of those tests are heavy: 1,000 blocked waiters answered at SIGTERM,
// and 100,000 open/close cycles from 16 processes (both saturate the two
// cores for a while). They do not call t.Parallel: Go runs every test's
// sequential part before any parallel test resumes, so they run one after
// the other, alone, and neither starves the other nor the timing-sensitive
// parallel tests of the suite (capacity, spacing), and their figures are
// measured on a quiet machine. Every other fault test runs in parallel.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// faultsPy is clients/faults.py, the Python client of the fault tests.
func faultsPy() string { return filepath.Join(clientsDir, "faults.py") }

// waitExit waits up to timeout for the current daemon process to exit and
// reports whether it did.
func (d *daemon) waitExit(timeout time.Duration) bool {
	select {
	case <-d.run.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// grantLineRE matches the time in a grant line: "granted 2026-...Z waited ...".
var grantLineRE = regexp.MustCompile(`granted (\S+) `)

// daemonGrantTime is the grant time (ms precision, truncated) the daemon
// printed in the grant line found in out.
func daemonGrantTime(t *testing.T, out string) time.Time {
	t.Helper()
	m := grantLineRE.FindStringSubmatch(out)
	require.NotNil(t, m, "no grant line in %q", out)
	at, err := time.Parse(time.RFC3339Nano, m[1])
	require.NoError(t, err, "grant time in %q", out)
	return at
}

// scrape reads the daemon's Prometheus text at http://addr/metrics into
// series -> value, for series without labels or with labels as written
// (`rlfs_grants_total{meter="m"}`). Each scrape uses a new connection, so
// that no kept-alive connection of the test adds a goroutine to the count.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// fileState is what "untouched" means for a file: its size, mode, mtime
// and bytes.
type fileState struct {
	name  string
	size  int64
	mode  os.FileMode
	mtime time.Time
	data  string
}

// dirState lists the files of dir (not recursively) with their state, so a
// test can prove that a refused start created, changed or removed nothing.
func dirState(t *testing.T, dir string) []fileState {
	t.Helper()
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []fileState
	for _, de := range des {
		fi, err := os.Lstat(filepath.Join(dir, de.Name()))
		require.NoError(t, err)
		st := fileState{name: de.Name(), size: fi.Size(), mode: fi.Mode(), mtime: fi.ModTime()}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(filepath.Join(dir, de.Name()))
			require.NoError(t, err)
			st.data = string(b)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// percentile is the p-th percentile (0..100) of ds, which it sorts.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(float64(len(ds)-1) * p / 100)
	return ds[i]
}

// unixNS parses a time printed as unix nanoseconds by a client.
func unixNS(t *testing.T, s string) time.Time {
	t.Helper()
	ns, err := strconv.ParseInt(s, 10, 64)
	require.NoError(t, err, "unix ns %q", s)
	return time.Unix(0, ns)
}

// fmtMS formats d in milliseconds for logs and messages.
func fmtMS(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}

// runBadMountCmd is runBadMount (badinput_test.go) for an rlfs run through a
// prefix, such as setpriv with an unprivileged user and a copy of the
// binary that user may run; no prefix runs rlfsBin. rlfs mount args must fail
// before mounting: exit status non-zero, one "rlfs: " line on stderr (and at
// most a "Try: " hint), nothing on stdout, mnt not mounted.
func runBadMountCmd(t *testing.T, mnt string, prefix []string, args ...string) failedMount {
	t.Helper()
	for try := 1; ; try++ {
		f, signaled := runBadMountOnce(t, mnt, prefix, args...)
		if !signaled || try == 3 {
			return f.check(t)
		}
		// Pdeathsig fires when the OS thread that started the process
		// ends, and the Go runtime may end that thread: the process was
		// killed before it could say anything. Run it again.
		t.Logf("rlfs mount %q was killed by a signal before it failed (try %d); again", args, try)
	}
}

// runBadMountOnce runs the bad mount once; signaled says it was killed by a
// signal (then f is not checked).
func runBadMountOnce(t *testing.T, mnt string, prefix []string, args ...string) (f failedMount, signaled bool) {
	t.Helper()
	argv := []string{rlfsBin}
	if len(prefix) > 0 {
		argv = append([]string(nil), prefix...)
	}
	argv = append(append(argv, "mount"), args...)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(mountTimeout):
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(stopTimeout):
			_ = cmd.Process.Kill()
			<-done
		}
		dev, _ := mountDev(mnt)
		detach(t, mnt, dev)
		t.Fatalf("%q did not fail: it ran for %v\nstderr:\n%s", argv, mountTimeout, stderr.String())
	}
	_, mounted := mountDev(mnt)
	require.False(t, mounted, "%q failed but left %s mounted", argv, mnt)
	f = failedMount{code: cmd.ProcessState.ExitCode(), stderr: stderr.String(), stdout: stdout.String(), argv: argv}
	require.Error(t, err, "%q must fail; stderr:\n%s", argv, f.stderr)
	return f, !cmd.ProcessState.Exited()
}

// check requires of a failed mount one "rlfs: " line on stderr (and at
// most a "Try: " hint), and nothing on stdout.
func (f failedMount) check(t *testing.T) failedMount {
	t.Helper()
	argv := f.argv
	var rlfsLines, other []string
	for _, l := range strings.Split(strings.TrimRight(f.stderr, "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "rlfs: "):
			rlfsLines = append(rlfsLines, l)
		case strings.HasPrefix(l, "Try: "):
		default:
			other = append(other, l)
		}
	}
	require.Len(t, rlfsLines, 1, "%q: want one line starting \"rlfs: \" on stderr, got:\n%s", argv, f.stderr)
	require.Empty(t, other, "%q: stderr has more than the rlfs: line (and a Try: hint):\n%s", argv, f.stderr)
	require.Empty(t, f.stdout, "%q: an error prints nothing on stdout", argv)
	f.rlfs = rlfsLines[0]
	return f
}
