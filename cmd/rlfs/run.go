package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const runUsage = `SYNOPSIS
    rlfs run [--wait D | --nonblock] [--conflict-exit-code N] METER_DIR -- CMD [ARGS...]

Waits for a grant of the meter at METER_DIR (a meter directory of a mounted
rlfs, such as /mnt/rl/email), runs CMD while holding it, and records the
call's completion when CMD exits. Exits with CMD's exit status (128+N if a
signal N killed it), like flock(1). SIGINT and SIGTERM are passed on to CMD.

FLAGS
    --wait D                 give up after waiting D (such as 30s; like
                             flock -w) (default: wait forever)
    --nonblock               fail at once if the meter cannot grant now
                             (like flock -n) (default: false)
    --conflict-exit-code N   exit status when --wait or --nonblock gives up
                             (default: 1)

EXAMPLES
    rlfs run /mnt/rl/email -- sendmail -t < message.txt
    rlfs run --wait 10s /mnt/rl/api -- curl -fsS https://api.example.com/
`

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rlfs run")
	wait := fs.Duration("wait", 0, "")
	nonblock := fs.Bool("nonblock", false, "")
	conflict := fs.Int("conflict-exit-code", 1, "")
	if err := parse(fs, args, runUsage, stdout); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) < 3 || rest[1] != "--" {
		return &usageError{msg: "want METER_DIR -- CMD [ARGS...]", hint: "rlfs run /mnt/rl/email -- sendmail -t"}
	}
	if *wait < 0 {
		return &usageError{msg: "--wait must not be negative", hint: "rlfs run --wait 10s /mnt/rl/api -- CMD"}
	}
	if *wait > 0 && *nonblock {
		return &usageError{msg: "--wait and --nonblock exclude each other; pick one", hint: "rlfs run --help"}
	}
	acquire := rest[0]
	if fi, err := os.Stat(acquire); err == nil && fi.IsDir() {
		acquire = filepath.Join(acquire, "acquire")
	}
	fd, err := openAcquire(acquire, *nonblock, *wait)
	switch {
	case errors.Is(err, syscall.EAGAIN):
		return &codeError{code: *conflict, err: fmt.Errorf("%s cannot grant a call right now (busy or limited)", rest[0])}
	case errors.Is(err, syscall.ETIMEDOUT):
		return &codeError{code: *conflict, err: fmt.Errorf("gave up on %s after waiting %s", rest[0], *wait)}
	case errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("%s: no such meter; check the path (ls the mountpoint) or create it with mkdir", rest[0])
	case err != nil:
		return fmt.Errorf("acquire %s: %w", acquire, err)
	}
	defer syscall.Close(fd) // the last close completes the call
	return runHolding(ctx, rest[2:], stdout, stderr)
}

// runHolding runs the command, passing signals on, and maps its exit.
func runHolding(ctx context.Context, argv []string, stdout, stderr io.Writer) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return &codeError{code: 127, err: fmt.Errorf("run %s: %v", argv[0], err)}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return &codeError{code: 128 + int(ws.Signal())}
				}
				return &codeError{code: ee.ExitCode()}
			}
			return err
		}
	}
}

// openAcquire opens path for a grant. With wait > 0 it interrupts its own
// blocked open(2) with a signal once wait has passed: the daemon answers an
// interrupted open with EINTR and takes the waiter out of the queue.
func openAcquire(path string, nonblock bool, wait time.Duration) (int, error) {
	flags := syscall.O_RDONLY | syscall.O_CLOEXEC
	if nonblock {
		flags |= syscall.O_NONBLOCK
	}
	var expired atomic.Bool
	type result struct {
		fd  int
		err error
	}
	results := make(chan result, 1)
	tids := make(chan int, 1)
	go func() {
		runtime.LockOSThread() // the thread exits with the goroutine
		tids <- unix.Gettid()
		for {
			fd, err := syscall.Open(path, flags, 0)
			if errors.Is(err, syscall.EINTR) && !expired.Load() {
				continue // a stray signal, not our deadline
			}
			results <- result{fd, err}
			return
		}
	}()
	tid := <-tids
	var timeout <-chan time.Time
	if wait > 0 {
		timeout = time.After(wait)
	}
	select {
	case r := <-results:
		return r.fd, r.err
	case <-timeout:
	}
	expired.Store(true)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		_ = unix.Tgkill(os.Getpid(), tid, syscall.SIGURG)
		select {
		case r := <-results:
			if errors.Is(r.err, syscall.EINTR) {
				r.err = syscall.ETIMEDOUT
			}
			return r.fd, r.err // a grant that won the race is kept
		case <-tick.C:
		}
	}
}
