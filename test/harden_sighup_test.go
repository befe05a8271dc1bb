package test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestSIGHUPKeepsServing pins a bug: SIGHUP (the terminal running
// `rlfs mount` closed, or `systemctl reload`) killed the daemon without a
// log line and left a dead mount. SIGHUP now reloads: without --config the
// daemon logs that there is nothing to reload and goes on serving, with its
// holders and waiters as they were.
func TestSIGHUPKeepsServing(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	holder := shHold(t, d.path("m", "acquire"))
	waiter := startProc(t, "sh", "-c", `exec 3<"$1" && echo granted`, "sh", d.path("m", "acquire"))
	d.waitEntries(t, "m", "waiters", 1)

	for i := range 2 {
		require.NoError(t, d.run.cmd.Process.Signal(syscall.SIGHUP))
		waitFor(t, "the daemon logs the SIGHUP", func() bool { return len(d.logLines(`msg="SIGHUP`)) == i+1 }, d.log.String)
	}
	for _, l := range d.logLines(`msg="SIGHUP`) {
		require.Contains(t, l, "nothing to reload", "without --config")
	}
	require.True(t, d.alive(), "rlfs must survive SIGHUP; its output:\n%s", d.log.String())
	_, mounted := mountDev(d.mnt)
	require.True(t, mounted)
	require.Equal(t, []string{"m"}, d.entries(t, "", ""), "ls of the mount")
	require.False(t, waiter.exited(), "the waiter keeps waiting: %s", waiter.state())
	require.Len(t, d.entries(t, "m", "holders"), 1)

	holder.stdin.Close()
	holder.requireSuccess(t, pollTimeout)
	waiter.requireSuccess(t, pollTimeout)
	require.Equal(t, "granted\n", waiter.stdout.String())
	d.requireServes(t, "m")
	require.Equal(t, "3", d.status(t, "m")["grants_total"])
	d.stop(t)
}

// TestSIGHUPReloadsConfig: SIGHUP re-reads --config. A meter added to the
// file is created; a changed one keeps its stored limits and the daemon logs
// the difference, as at start-up; a broken file is logged as an error and
// the daemon keeps serving with what it had.
func TestSIGHUPReloadsConfig(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "rlfs.toml")
	writeCfg := func(text string) { require.NoError(t, os.WriteFile(cfg, []byte(text), 0o644)) }
	writeCfg("[meters]\na = \"1/s\"\n")
	d := startDaemonFlags(t, []string{"--config", cfg}, "m=concurrency=0")
	d.waitLog(t, "mounted")
	require.Equal(t, []string{"a", "m"}, d.entries(t, "", ""))

	writeCfg("[meters]\na = \"5/s\"\nb = \"2/1s,concurrency=3\"\n")
	require.NoError(t, d.run.cmd.Process.Signal(syscall.SIGHUP))
	waitFor(t, "meter b from the edited config is served", func() bool {
		_, err := os.Stat(d.path("b", "acquire"))
		return err == nil
	}, d.log.String)
	d.waitLog(t, "keeps its stored limits") // logged after "SIGHUP: reloading"
	require.Len(t, d.logLines("SIGHUP: reloading"), 1)
	require.Equal(t, "2/1s,concurrency=3", d.status(t, "b")["limits"])
	require.Equal(t, "1/1s,concurrency=1", d.status(t, "a")["limits"], "the stored limits win, as at start-up")
	require.Equal(t, []string{"a", "b", "m"}, d.entries(t, "", ""))

	for i, bad := range []string{"[meters\n", "[meters]\nc = \"0/s\"\n", "[meters]\nc = \"1/s\"\nbogus = 1\n"} {
		writeCfg(bad)
		require.NoError(t, d.run.cmd.Process.Signal(syscall.SIGHUP))
		waitFor(t, "the daemon logs the bad config", func() bool {
			return len(d.logLines("config not reloaded")) == i+1
		}, d.log.String)
		line := d.logLines("config not reloaded")[i]
		require.Contains(t, line, "level=ERROR")
		require.Contains(t, line, cfg)
		d.requireServes(t, "a")
		require.Equal(t, []string{"a", "b", "m"}, d.entries(t, "", ""), "nothing changed")
	}
	require.Equal(t, "2/1s,concurrency=3", d.status(t, "b")["limits"])
	d.stop(t)
}

// TestSIGHUPTerminalClosed: `rlfs mount` in the foreground of a terminal
// that goes away (the terminal emulator closed, an ssh session dropped)
// gets SIGHUP from the kernel, and every later write to its stderr fails
// with EIO. It must go on serving. The terminal here is a pseudo-terminal
// whose master the test closes.
func TestSIGHUPTerminalClosed(t *testing.T) {
	t.Parallel()
	master, slave := openPTY(t)
	d := newDaemon(t, "", "", nil, "m=concurrency=0")
	d.startWith(t, func(cmd *exec.Cmd) {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		// A session of its own with the terminal as its controlling
		// terminal, as a shell starts a foreground job.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	})
	require.NoError(t, slave.Close())
	logged := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(master)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `msg=mounted`) {
				logged <- true
				return
			}
		}
		logged <- false
	}()
	require.True(t, <-logged, "the daemon logs to its terminal")

	require.NoError(t, master.Close()) // hang up
	// The hang-up's SIGHUP makes the daemon log, into a terminal that is gone.
	waitFor(t, "the daemon's terminal is hung up", func() bool { return !hasTTY(d.pid()) }, nil)
	_, err := os.Stat(d.path("m", "limits"))
	require.NoError(t, err)
	_, code := sh(t, "echo 0/s > "+d.path("m", "limits")) // a refused write: one more log line
	require.NotEqual(t, 0, code)
	d.requireServes(t, "m")
	d.stop(t)
}

// TestDaemonSurvivesClosedStderr pins a bug: `rlfs mount … 2>&1 | head -1`
// killed the daemon with SIGPIPE at its second log line (Go exits on EPIPE
// to descriptors 1 and 2 unless SIGPIPE is notified), leaving a dead mount.
func TestDaemonSurvivesClosedStderr(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	d := newDaemon(t, "", "", nil, "m=concurrency=0")
	d.startWith(t, func(cmd *exec.Cmd) { cmd.Stdout, cmd.Stderr = w, w })
	require.NoError(t, w.Close())
	line, err := bufio.NewReader(r).ReadString('\n') // head -1
	require.NoError(t, err)
	require.NoError(t, r.Close())
	t.Logf("first log line: %s", strings.TrimSpace(line))

	for range 3 { // refused limits writes: log lines into the closed pipe
		_, code := sh(t, "echo 0/s > "+d.path("m", "limits"))
		require.NotEqual(t, 0, code)
	}
	d.requireServes(t, "m")
	d.stop(t)
}

// openPTY opens a pseudo-terminal pair; cleanup closes both ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { master.Close() })
	require.NoError(t, unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

// hasTTY reports whether process pid still has a controlling terminal
// (field tty_nr of /proc/PID/stat); a hang-up takes it away.
func hasTTY(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 4 && fields[4] != "0"
}
