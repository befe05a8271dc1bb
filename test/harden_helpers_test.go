package test

// Helpers of the hardening tests (harden_*_test.go), which pin the bugs of
// issue 8: SIGHUP, restart after a crash, rlfs run and signals, a full
// disk, and a database inside the mountpoint.

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// shHold starts a shell that opens acq on descriptor 3, prints "held" and
// holds the call until its stdin closes (or it is killed). A shell starts in
// milliseconds even on a busy machine, unlike an interpreter.
func shHold(t *testing.T, acq string) *proc {
	t.Helper()
	p := startProc(t, "sh", "-c", `exec 3<"$1" && echo held && { read x || :; }`, "sh", acq)
	p.waitOutput(t, "held")
	return p
}

// openNonblock opens acq with O_NONBLOCK from the test process (which does
// not serve the mount, so it may) and closes it at once: one instant call.
func openNonblock(acq string) error {
	fd, err := syscall.Open(acq, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	return syscall.Close(fd)
}

// waitGrant polls until an O_NONBLOCK open of acq is granted and returns
// when that happened.
func waitGrant(t *testing.T, acq string) time.Time {
	t.Helper()
	var last error
	waitFor(t, "an O_NONBLOCK open of "+acq+" is granted", func() bool {
		last = openNonblock(acq)
		return last == nil
	}, func() string { return "last error: " + errString(last) })
	return time.Now()
}

func errString(err error) string {
	if err == nil {
		return "none"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return err.Error() + " (" + unix.ErrnoName(errno) + ")"
	}
	return err.Error()
}

// logLines are the lines of the daemon's log that contain s.
func (d *daemon) logLines(s string) []string {
	var out []string
	for _, l := range strings.Split(d.log.String(), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// waitLog polls the daemon's log until it contains s.
func (d *daemon) waitLog(t *testing.T, s string) {
	t.Helper()
	waitFor(t, "the daemon logs "+s, func() bool { return strings.Contains(d.log.String(), s) }, d.log.String)
}

// newDaemon is startDaemon's set-up without the start: a daemon on db and
// mnt (in t.TempDir() when empty) whose cleanup is registered now, for tests
// that start it themselves or must register cleanups that run after it.
func newDaemon(t *testing.T, db, mnt string, flags []string, meters ...string) *daemon {
	t.Helper()
	requireFUSE(t)
	dir := t.TempDir()
	if db == "" {
		db = filepath.Join(dir, "meters.db")
	}
	if mnt == "" {
		mnt = filepath.Join(dir, "mnt")
	}
	d := &daemon{db: db, mnt: mnt, meters: meters, extra: flags}
	t.Cleanup(func() { d.cleanup(t) })
	return d
}

// alive reports whether the current daemon process still runs.
func (d *daemon) alive() bool {
	select {
	case <-d.run.done:
		return false
	default:
		return true
	}
}

// requireServes requires that the daemon still runs and grants a call.
func (d *daemon) requireServes(t *testing.T, meterName string) {
	t.Helper()
	require.True(t, d.alive(), "the daemon is gone: %v; its output:\n%s", d.run.err, d.log.String())
	waitGrant(t, d.path(meterName, "acquire"))
	_, err := os.ReadDir(d.mnt)
	require.NoError(t, err, "ls %s", d.mnt)
}

// startWith starts the daemon as start does, but with the standard streams
// and process attributes that setup gives its command (the daemon's log is
// then wherever setup sends it).
func (d *daemon) startWith(t *testing.T, setup func(cmd *exec.Cmd)) {
	t.Helper()
	args := []string{"mount", "--db", d.db}
	for _, m := range d.meters {
		args = append(args, "--meter", m)
	}
	args = append(append(args, d.extra...), d.mnt)
	d.runs++
	cmd := exec.Command(rlfsBin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	setup(cmd)
	require.NoError(t, cmd.Start())
	r := &run{cmd: cmd, done: make(chan struct{})}
	go func() { r.err = cmd.Wait(); close(r.done) }()
	d.run = r
	waitFor(t, "rlfs mounts "+d.mnt, func() bool {
		select {
		case <-r.done:
			t.Fatalf("rlfs exited before mounting (%v); its output:\n%s", r.err, d.log.String())
		default:
		}
		dev, ok := mountDev(d.mnt)
		r.dev = dev
		return ok && d.metersVisible()
	}, nil)
}
