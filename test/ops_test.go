package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sh runs a shell command line to completion and returns its combined output
// and exit code.
func sh(t *testing.T, script string) (string, int) {
	t.Helper()
	p := startProc(t, posixSh.need(t), "-c", script)
	err := p.wait(t, pollTimeout)
	_ = err
	return p.stdout.String() + p.stderr.String(), p.exitCode()
}

// TestMeterAsFiles is issue 3's first "must show": a meter made with mkdir
// and set up through its limits file, a bad write refused, and both kept
// across a restart.
func TestMeterAsFiles(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	api := d.path("api")
	out, code := sh(t, fmt.Sprintf("mkdir %s && echo '2/1s' > %s/limits", api, api))
	require.Equal(t, 0, code, out)

	// 4 cats on 2/1s take one window (strict, from their grant lines), and
	// about that (loaded(1s)).
	start := time.Now()
	out, code = sh(t, fmt.Sprintf("for i in 1 2 3 4; do cat %s/acquire & done; wait", api))
	elapsed := time.Since(start)
	require.Equal(t, 0, code, out)
	require.GreaterOrEqual(t, elapsed, 950*time.Millisecond, "4 cats on 2/1s take one window")
	grants := grantTimes(t, out)
	require.Len(t, grants, 4, "grant lines of 4 cats:\n%s", out)
	checkSpacing(t, grants, parseLimits(t, "2/1s"), "4 cats on 2/1s")
	require.Less(t, elapsed, loaded(time.Second), "4 cats on 2/1s take about 1 s")

	out, code = sh(t, fmt.Sprintf("bash -c \"echo 'zero/s' > %s/limits\"", api)) // dash says only "I/O error"
	require.NotEqual(t, 0, code)
	require.Contains(t, out, "Invalid argument")
	d.waitLog(t, `zero/s`) // the daemon logs why the write was refused
	limits, err := os.ReadFile(filepath.Join(api, "limits"))
	require.NoError(t, err)
	require.Equal(t, "2/1s\nconcurrency=1\n", string(limits))

	d.restart(t)
	limits, err = os.ReadFile(filepath.Join(api, "limits"))
	require.NoError(t, err)
	require.Equal(t, "2/1s\nconcurrency=1\n", string(limits), "limits written through the mount survive a restart")
	require.Equal(t, "4", d.status(t, "api")["grants_total"], "history survives a restart")

	// rmdir: EBUSY while held, then gone for good.
	holder := pyHold(t, filepath.Join(api, "acquire"))
	d.waitEntries(t, "api", "holders", 1)
	out, code = sh(t, "rmdir "+api)
	require.NotEqual(t, 0, code)
	require.Contains(t, out, "busy")
	holder.release(t)
	waitFor(t, "rmdir of the idle meter succeeds", func() bool { _, c := sh(t, "rmdir "+api); return c == 0 }, nil)
	d.restart(t)
	_, err = os.Stat(api)
	require.ErrorIs(t, err, os.ErrNotExist, "a removed meter stays removed after a restart")
}

// grantTimes is the grant time of every grant line (what a read of acquire
// returns) in out.
func grantTimes(t *testing.T, out string) []time.Time {
	t.Helper()
	var ts []time.Time
	for _, line := range strings.Split(out, "\n") {
		if m := grantedRE.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			at, err := time.Parse(time.RFC3339Nano, m[1])
			require.NoError(t, err, "grant time in %q", line)
			ts = append(ts, at)
		}
	}
	return ts
}

// testUser returns the uid and gid of an unprivileged user made for the
// tests (useradd), creating it if needed.
func testUser(t *testing.T) (name string, uid, gid int) {
	t.Helper()
	name = "rlfs-test"
	if _, err := exec.Command("id", "-u", name).Output(); err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "already exists") {
			t.Fatalf("useradd %s: %v: %s", name, err, out)
		}
	}
	read := func(flag string) int {
		out, err := exec.Command("id", flag, name).Output()
		require.NoError(t, err)
		var n int
		_, err = fmt.Sscanf(string(out), "%d", &n)
		require.NoError(t, err)
		return n
	}
	return name, read("-u"), read("-g")
}

// asUser runs a shell command line as user and returns its output and exit code.
func asUser(t *testing.T, user, script string) (string, int) {
	t.Helper()
	p := startProc(t, "setpriv", "--reuid="+user, "--regid="+user, "--init-groups", "--", posixSh.need(t), "-c", script)
	_ = p.wait(t, pollTimeout)
	return p.stdout.String() + p.stderr.String(), p.exitCode()
}

// TestPermissions proves access control with a real unprivileged user: the
// meter directory's mode decides who may acquire and who may change limits,
// and chmod persists across a restart.
func TestPermissions(t *testing.T) {
	t.Parallel()
	user, uid, _ := testUser(t)
	d := startDaemonFlags(t, []string{"--allow-other"}, "mail=concurrency=0")
	// The user must be able to reach the mountpoint.
	for dir := filepath.Dir(d.mnt); dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		require.NoError(t, os.Chmod(dir, 0o755))
	}
	acq, limits := d.path("mail", "acquire"), d.path("mail", "limits")

	require.NoError(t, os.Chmod(d.path("mail"), 0o700))
	out, code := asUser(t, user, "cat "+acq)
	require.NotEqual(t, 0, code, "uid %d acquired a 0700 meter of root's: %s", uid, out)
	require.Contains(t, out, "Permission denied")

	require.NoError(t, os.Chmod(d.path("mail"), 0o755))
	out, code = asUser(t, user, "cat "+acq)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "granted ")

	// 0755: limits is rw-r--r--, so only root may change it.
	out, code = asUser(t, user, "echo 1/s > "+limits)
	require.NotEqual(t, 0, code)
	require.Contains(t, out, "Permission denied")
	require.NoError(t, os.Chmod(d.path("mail"), 0o777))
	out, code = asUser(t, user, "echo 5/s > "+limits)
	require.Equal(t, 0, code, out)
	require.Equal(t, "5/1s", strings.Split(d.status(t, "mail")["limits"], ",")[0])

	// Ownership works the same way: a meter the user owns, 0700.
	require.NoError(t, os.Chown(d.path("mail"), uid, 0))
	require.NoError(t, os.Chmod(d.path("mail"), 0o700))
	out, code = asUser(t, user, "cat "+acq)
	require.Equal(t, 0, code, out)

	d.restart(t)
	st, err := os.Stat(d.path("mail"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm(), "chmod survives a restart")
	require.Equal(t, uint32(uid), st.Sys().(*syscall.Stat_t).Uid, "chown survives a restart")
}

// TestStatusJSON: rlfs status --json is valid JSON that says what the
// status files say; --db reads the same database beside the daemon.
func TestStatusJSON(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "api=2/1s,10/1h,concurrency=2", "idle=concurrency=0")
	holder := pyHold(t, d.path("api", "acquire"))
	d.waitEntries(t, "api", "holders", 1)

	var got struct {
		Meters []struct {
			Meter      string `json:"meter"`
			Limits     string `json:"limits"`
			InProgress int    `json:"in_progress"`
			Waiting    *int   `json:"waiting"`
			Windows    []struct {
				Limit string `json:"limit"`
				Used  int    `json:"used"`
			} `json:"windows"`
			Counters map[string]int `json:"counters"`
		} `json:"meters"`
	}
	out, err := exec.Command(rlfsBin, "status", "--json", d.mnt).Output()
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(out, &got), "status --json output:\n%s", out)
	require.Len(t, got.Meters, 2)
	api := got.Meters[0]
	st := d.status(t, "api")
	require.Equal(t, "api", api.Meter)
	require.Equal(t, st["limits"], api.Limits)
	require.Equal(t, st["in_progress"], fmt.Sprintf("%d of 2", api.InProgress))
	require.Equal(t, st["waiting"], fmt.Sprint(*api.Waiting))
	require.Equal(t, st["window 2/1s"], fmt.Sprintf("%d used, %d free", api.Windows[0].Used, 2-api.Windows[0].Used))
	require.Equal(t, st["grants_total"], fmt.Sprint(api.Counters["grants_total"]))
	require.Equal(t, 1, api.InProgress)

	table, err := exec.Command(rlfsBin, "status", d.mnt).Output()
	require.NoError(t, err)
	require.Regexp(t, `(?m)^api\s+2/1s,10/1h,concurrency=2\s+1 of 2/1s, 1 of 10/1h\s+1 of 2\s+0\s+now$`, string(table))

	byDB, err := exec.Command(rlfsBin, "status", "--json", "--db", d.db).Output()
	require.NoError(t, err, "status --db beside a running daemon")
	require.Contains(t, string(byDB), `"in_progress": 1`)
	require.Contains(t, string(byDB), `"waiting": null`)
	holder.release(t)
}

// freePort returns a loopback address with a free TCP port.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// TestMetrics: --metrics serves rlfs_ series for every meter.
func TestMetrics(t *testing.T) {
	t.Parallel()
	addr := freePort(t)
	d := startDaemonFlags(t, []string{"--metrics", addr}, "email=1/s,75/h", "api=concurrency=0")
	_, code := sh(t, "cat "+d.path("email", "acquire"))
	require.Equal(t, 0, code)
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	text := string(body)
	for _, m := range []string{"email", "api"} {
		for _, series := range []string{"rlfs_grants_total", "rlfs_waiters", "rlfs_holders", "rlfs_timeouts_total", "rlfs_interrupts_total", "rlfs_max_hold_expirations_total"} {
			require.Contains(t, text, fmt.Sprintf(`%s{meter=%q}`, series, m))
		}
	}
	require.Contains(t, text, `rlfs_grants_total{meter="email"} 1`)
	require.Contains(t, text, `rlfs_wait_seconds_count{meter="email"} 1`)
	require.Contains(t, text, `rlfs_window_limit_calls{meter="email",window="75/1h"} 75`)
	require.Contains(t, text, "go_goroutines ")
}

// TestRunCommand: rlfs run holds the meter for the command and passes its
// exit status through, like flock(1).
func TestRunCommand(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	m := d.path("m")

	out, code := sh(t, fmt.Sprintf("%s run %s -- sh -c 'ls %s/holders | wc -l; exit 3'", rlfsBin, m, m))
	require.Equal(t, 3, code, out)
	require.Equal(t, "1", strings.TrimSpace(out), "the command runs while holding the meter")

	holder := pyHold(t, d.path("m", "acquire"))
	d.waitEntries(t, "m", "holders", 1)
	out, code = sh(t, fmt.Sprintf("%s run --nonblock %s -- true", rlfsBin, m))
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "cannot grant a call right now")

	start := time.Now()
	out, code = sh(t, fmt.Sprintf("%s run --wait 300ms --conflict-exit-code 75 %s -- true", rlfsBin, m))
	require.Equal(t, 75, code, out)
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	require.Contains(t, out, "gave up")
	d.waitStatus(t, "m", "waiting", "0")
	require.Equal(t, "2", d.status(t, "m")["grants_total"], "a waiter that gave up is not counted (the run and the holder are)")

	waiter := startProc(t, rlfsBin, "run", m, "--", "echo", "ran")
	d.waitEntries(t, "m", "waiters", 1)
	holder.release(t)
	waiter.requireSuccess(t, pollTimeout)
	require.Equal(t, "ran\n", waiter.stdout.String())
}

// TestConfigSourceOfTruth: a config file creates meters; once stored, the
// database's limits win over it unless --reconfigure.
func TestConfigSourceOfTruth(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "rlfs.toml")
	require.NoError(t, os.WriteFile(cfg, []byte("[meters]\nemail = \"1/s\"\n[meters.api]\nlimits = [\"10/s\"]\nconcurrency = 4\n"), 0o644))
	d := startDaemonFlags(t, []string{"--config", cfg})
	waitFor(t, "the config's meters are served", func() bool {
		_, err := os.Stat(d.path("api", "acquire"))
		return err == nil
	}, nil)
	require.Equal(t, "1/1s,concurrency=1", d.status(t, "email")["limits"])
	require.Equal(t, "10/1s,concurrency=4", d.status(t, "api")["limits"])

	_, code := sh(t, "echo 5/s > "+d.path("email", "limits"))
	require.Equal(t, 0, code)
	d.restart(t)
	require.Equal(t, "5/1s,concurrency=1", d.status(t, "email")["limits"], "the stored limits win over the config file")
	waitFor(t, "the daemon logs that the stored limits were kept", func() bool {
		return strings.Contains(d.log.String(), "keeps its stored limits")
	}, d.log.String)

	d.extra = append(d.extra, "--reconfigure")
	d.restart(t)
	require.Equal(t, "1/1s,concurrency=1", d.status(t, "email")["limits"], "--reconfigure makes the file win")
}

// TestSystemdUnit checks docs/rlfs.service with systemd-analyze verify.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is needed in CI to verify docs/rlfs.service")
		}
		t.Skip("no systemd-analyze")
	}
	unit, err := os.ReadFile("../docs/rlfs.service")
	require.NoError(t, err)
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/rlfs", rlfsBin)
	path := filepath.Join(t.TempDir(), "rlfs.service")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	require.NoError(t, err, "systemd-analyze verify:\n%s", out)
	require.NotContains(t, string(out), "rlfs.service:", "warnings about the unit:\n%s", out)
}
