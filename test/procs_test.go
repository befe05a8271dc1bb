package test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// proc is a client process started by a test, in its own process group.
// Cleanup kills the group (SIGKILL) and reaps it.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout syncBuffer
	stderr syncBuffer
	done   chan struct{} // closed when it exited
	err    error         // from Wait, valid after done
	endAt  time.Time     // when Wait returned, valid after done
}

// startProc starts name with args. Its stdin is a pipe the test may close.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startProcIn(t, "", nil, name, args...)
}

// startProcIn is startProc in directory dir ("": the current one) with env
// added to the environment.
func startProcIn(t *testing.T, dir string, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name + " " + strings.Join(args, " "), cmd: exec.Command(name, args...), done: make(chan struct{})}
	p.cmd.Dir = dir
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var err error
	p.stdin, err = p.cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start(), "start %s", p.name)
	go func() {
		p.err = p.cmd.Wait()
		p.endAt = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(stopTimeout):
				t.Errorf("%s (pid %d) did not die of SIGKILL within %v: stuck in the mount?", p.name, p.pid(), stopTimeout)
			}
		}
		if t.Failed() {
			t.Logf("%s (pid %d) %s\nstdout:\n%sstderr:\n%s", p.name, p.pid(), p.state(), p.stdout.String(), p.stderr.String())
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// wait waits for the process to exit and returns its exit error.
func (p *proc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s (pid %d) still running after %v\nstdout:\n%sstderr:\n%s", p.name, p.pid(), timeout, p.stdout.String(), p.stderr.String())
		return nil
	}
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitCode is the process's exit status, or -1 if a signal ended it.
func (p *proc) exitCode() int {
	var ee *exec.ExitError
	if p.err == nil {
		return 0
	}
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// requireSuccess waits for the process and requires exit status 0.
func (p *proc) requireSuccess(t *testing.T, timeout time.Duration) {
	t.Helper()
	err := p.wait(t, timeout)
	require.NoError(t, err, "%s\nstdout:\n%sstderr:\n%s", p.name, p.stdout.String(), p.stderr.String())
}

// client describes one client process making calls on a meter; each call
// is logged as "<id> <grant_ns> <release_ns> <call-id|->" to logDir/<id>.log.
type client struct {
	kind    string // cat, exec, flock (sh); python; go; node
	id      string
	calls   int
	threads int           // python only: threads, each making calls
	hold    time.Duration // how long each call holds (not for cat)
}

// startClient starts c against the acquire file acq.
func startClient(t *testing.T, acq, logDir string, c client) *proc {
	t.Helper()
	log := filepath.Join(logDir, c.id+".log")
	calls := strconv.Itoa(c.calls)
	hold := strconv.FormatFloat(c.hold.Seconds(), 'f', 3, 64)
	switch c.kind {
	case "cat", "exec", "flock":
		return startProc(t, bash.need(t), filepath.Join(clientsDir, "client.sh"), c.kind, acq, c.id, calls, hold, log)
	case "python":
		threads := strconv.Itoa(max(c.threads, 1))
		return startProc(t, python3.need(t), filepath.Join(clientsDir, "client.py"), "calls", acq, c.id, threads, calls, hold, log)
	case "go":
		return startProc(t, goClientBin, "-acquire", acq, "-id", c.id, "-calls", calls, "-hold", c.hold.String(), "-log", log)
	case "node":
		return startProc(t, node.need(t), filepath.Join(clientsDir, "client.js"), acq, c.id, calls, hold, log)
	}
	t.Fatalf("unknown client kind %q", c.kind)
	return nil
}

// pyOpen runs client.py open: threads threads each open acq once (with
// O_NONBLOCK if nonblock) and print "ok SECONDS LINE" or
// "err ERRNO NAME EXCEPTION SECONDS".
func pyOpen(t *testing.T, acq string, threads int, nonblock bool) *proc {
	t.Helper()
	args := []string{filepath.Join(clientsDir, "client.py"), "open", acq, strconv.Itoa(threads)}
	if nonblock {
		args = append(args, "nonblock")
	}
	return startProc(t, python3.need(t), args...)
}

// pyHold starts client.py hold: it opens acq, prints "held LINE", holds the
// call until its stdin closes, then prints "released NS" and exits.
func pyHold(t *testing.T, acq string) *proc {
	t.Helper()
	return startProc(t, python3.need(t), filepath.Join(clientsDir, "client.py"), "hold", acq)
}

// startPy starts a Python script of clients/ (client.py, faults.py) with
// the resolved python3.
func startPy(t *testing.T, script string, args ...string) *proc {
	t.Helper()
	return startProc(t, python3.need(t), append([]string{script}, args...)...)
}

// waitOutput polls until the process's stdout contains s. The deadline is
// startTimeout: what it waits for includes the process's start.
func (p *proc) waitOutput(t *testing.T, s string) {
	t.Helper()
	waitWithin(t, startTimeout, fmt.Sprintf("%s prints %q", p.name, s), func() bool {
		return strings.Contains(p.stdout.String(), s) || p.exited()
	}, nil)
	require.Contains(t, p.stdout.String(), s, "%s %s\nstderr:\n%s", p.name, p.state(), p.stderr.String())
}

// state says whether the process runs or how it exited.
func (p *proc) state() string {
	select {
	case <-p.done:
		return fmt.Sprintf("exited: %v", p.err)
	default:
		return "is running"
	}
}

// release closes the stdin of a pyHold process, which then releases its
// call, and returns the release time it logged.
func (p *proc) release(t *testing.T) time.Time {
	t.Helper()
	require.NoError(t, p.stdin.Close())
	p.requireSuccess(t, pollTimeout)
	for _, line := range strings.Split(p.stdout.String(), "\n") {
		if ns, ok := strings.CutPrefix(line, "released "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(ns), 10, 64)
			require.NoError(t, err)
			return time.Unix(0, n)
		}
	}
	t.Fatalf("%s printed no release time: %q", p.name, p.stdout.String())
	return time.Time{}
}
