package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rlfs/rlfs/meter"
)

const runUsage = `SYNOPSIS
    rlfs run [--wait D | --nonblock] [--conflict-exit-code N] [--cost N]
             [--pause-on-exit CODE=DURATION]... [--pause-from-file PATH]
             METER_DIR -- CMD [ARGS...]

Waits for a grant of the meter at METER_DIR (a meter directory of a mounted
rlfs, such as /mnt/rl/email), runs CMD while holding it, and records the
call's completion when CMD exits. Exits with CMD's exit status (128+N if a
signal N killed it), like flock(1).

A signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT) while rlfs run waits stops the
wait at once: CMD does not run, nothing is counted, and rlfs run exits with
128+N (130 for Ctrl-C, 143 for SIGTERM, so timeout(1) works). Once CMD runs,
those signals are passed on to CMD.

FLAGS
    --wait D                 give up after waiting D (such as 30s, or 2.5
                             seconds as flock -w takes them); 0 means do not
                             wait, as --nonblock (default: wait forever)
    --nonblock               fail at once if the meter cannot grant now
                             (like flock -n) (default: false)
    --conflict-exit-code N   exit status, 0 to 255, when --wait or --nonblock
                             gives up (default: 1)
    --cost N                 a weighted call of N units (acquire@N). CMD gets
                             the call's descriptor as fd 3 ($RLFS_ACQUIRE_FD):
                             writing a decimal to it (echo 412 >&3) sets the
                             actual cost before the call completes
                             (default: a plain call, cost 1, no fd 3)
    --pause-on-exit CODE=DURATION
                             when CMD exits with status CODE (0 to 255; 128+N
                             for signal N), pause the meter for DURATION
                             (30s, 1.5m, or seconds: 120) before the call
                             completes: every caller of the meter waits, on
                             every host (repeatable; default: none)
    --pause-from-file PATH   after CMD exits, pause the meter for the
                             Retry-After that CMD left in PATH: response
                             headers as curl -D PATH writes them (a 429 or
                             503 with Retry-After), or a value CMD wrote
                             (echo 30 > "$RLFS_PAUSE_FILE"). The server's
                             word wins: another response (a 404, a 200)
                             pauses nothing; --pause-on-exit applies when
                             PATH holds no response or a 429 without a
                             Retry-After. rlfs run empties PATH before CMD
                             runs (default: none)

EXAMPLES
    rlfs run /mnt/rl/email -- sendmail -t < message.txt
    rlfs run --wait 10s /mnt/rl/api -- curl -fsS https://api.example.com/
    rlfs run --wait 0 /mnt/rl/backup -- backup.sh || echo "another backup runs"
    rlfs run --cost 1500 /mnt/rl/llm -- sh -c 'n=$(ask-llm --max-tokens 1500); echo "$n" >&3'
    h=$(mktemp); rlfs run --pause-from-file "$h" --pause-on-exit 22=30s /mnt/rl/api -- \
        curl -fsS -D "$h" https://api.example.com/    # a 429 pauses every caller

A pause is said on stderr: "rlfs run: the command exited 22; paused
/mnt/rl/api: retry-after 2 (Retry-After of HTTP 429 in /tmp/tmp.x1)". The
meter's max_pause caps it (default 1h). rlfs run exits with CMD's status
either way.
`

// runSignals are the signals that stop rlfs run's wait, and that it passes
// on to the command once the command runs.
var runSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

// runOptions are rlfs run's parsed command line.
type runOptions struct {
	wait     time.Duration // 0: forever (unless nonblock)
	nonblock bool
	conflict int
	meterDir string
	argv     []string
	cost     int64 // -1: a plain call (acquire); else acquire@cost, passed on as fd 3
	// The pause to set after CMD exits (see runpause.go).
	pauseOnExit pauseOnExit
	pauseFile   string
}

// pausing reports whether rlfs run may pause the meter after CMD exits.
func (o runOptions) pausing() bool { return len(o.pauseOnExit) > 0 || o.pauseFile != "" }

func parseRun(args []string, stdout io.Writer) (runOptions, error) {
	var o runOptions
	var wait waitFlag
	fs := newFlagSet("rlfs run")
	fs.Var(&wait, "wait", "")
	fs.BoolVar(&o.nonblock, "nonblock", false, "")
	fs.IntVar(&o.conflict, "conflict-exit-code", 1, "")
	cost := fs.String("cost", "", "")
	fs.Var(&o.pauseOnExit, "pause-on-exit", "")
	fs.StringVar(&o.pauseFile, "pause-from-file", "", "")
	if err := parse(fs, args, runUsage, stdout); err != nil {
		return o, err
	}
	o.cost = -1
	if *cost != "" {
		n, err := meter.ParseCost(*cost)
		if err != nil {
			return o, &usageError{msg: fmt.Sprintf("--cost %q: want a whole number of units from 0 to 2^50", *cost), hint: "rlfs run --cost 1500 /mnt/rl/llm -- CMD"}
		}
		o.cost = n
	}
	rest := fs.Args()
	if len(rest) < 3 || rest[1] != "--" {
		return o, &usageError{msg: "want METER_DIR -- CMD [ARGS...]", hint: "rlfs run /mnt/rl/email -- sendmail -t"}
	}
	if o.conflict < 0 || o.conflict > 255 {
		return o, &usageError{msg: fmt.Sprintf("--conflict-exit-code %d: want 0 to 255 (an exit status)", o.conflict), hint: "rlfs run --conflict-exit-code 75 --wait 10s METER_DIR -- CMD"}
	}
	if wait.set && wait.d > 0 && o.nonblock {
		return o, &usageError{msg: "--wait and --nonblock exclude each other; pick one", hint: "rlfs run --help"}
	}
	if wait.set && wait.d == 0 {
		o.nonblock = true // flock -w 0: do not wait
	}
	if o.pauseFile != "" {
		// Absolute, for $RLFS_PAUSE_FILE: CMD may change directory.
		abs, err := filepath.Abs(o.pauseFile)
		if err != nil {
			return o, fmt.Errorf("--pause-from-file %s: %w", o.pauseFile, err)
		}
		o.pauseFile = abs
	}
	o.wait, o.meterDir, o.argv = wait.d, rest[0], rest[2:]
	return o, nil
}

// waitFlag is --wait: not given (wait forever), 0 (do not wait), or how
// long to wait.
type waitFlag struct {
	set bool
	d   time.Duration
}

func (w *waitFlag) String() string {
	if !w.set {
		return ""
	}
	return w.d.String()
}

// Set takes a Go duration (30s, 1.5m) or, as flock -w, seconds (2.5, 0).
func (w *waitFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || math.IsNaN(f) || math.Abs(f) > math.MaxInt64/float64(time.Second) {
			return errors.New("want a duration such as 30s or 1.5m, or seconds such as 10")
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < 0 {
		return errors.New("must not be negative")
	}
	w.set, w.d = true, d
	return nil
}

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// From the start, so that no signal meets its default action: one that
	// arrives while waiting stops the wait, later ones go to the command.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, runSignals...)
	defer signal.Stop(sigs)
	o, err := parseRun(args, stdout)
	if err != nil {
		return err
	}
	if o.pauseFile != "" {
		if err := prepPauseFile(o.pauseFile); err != nil {
			return err
		}
	}
	acquire := o.meterDir
	if fi, err := os.Stat(acquire); err == nil && fi.IsDir() {
		acquire = filepath.Join(acquire, "acquire")
		if o.cost >= 0 {
			acquire += "@" + strconv.FormatInt(o.cost, 10)
		}
	}
	// O_RDWR to write the actual cost (CMD, through fd 3) or a pause.
	fd, err := openAcquire(acquire, o.cost >= 0 || o.pausing(), o.nonblock, o.wait, sigs)
	var se signalError
	switch {
	case errors.As(err, &se):
		return se.exit(o.meterDir)
	case errors.Is(err, syscall.EAGAIN):
		return &codeError{code: o.conflict, err: fmt.Errorf("%s cannot grant a call right now (busy or limited)", o.meterDir)}
	case errors.Is(err, syscall.ETIMEDOUT):
		return &codeError{code: o.conflict, err: fmt.Errorf("gave up on %s after waiting %s", o.meterDir, o.wait)}
	case errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("%s: no such meter; check the path (ls the mountpoint) or create it with mkdir", o.meterDir)
	case errors.Is(err, syscall.E2BIG):
		return fmt.Errorf("%s can never admit a call of %d units (%s); lower --cost or raise the limit", o.meterDir, o.cost, unitLimits(o.meterDir))
	case err != nil:
		return fmt.Errorf("acquire %s: %w", acquire, err)
	}
	select {
	case s := <-sigs: // it came with the grant: give the grant back, run nothing
		syscall.Close(fd)
		return signalError{s.(syscall.Signal)}.exit(o.meterDir)
	default:
	}
	// The last close completes the call.
	var pass *os.File
	if o.cost >= 0 {
		pass = os.NewFile(uintptr(fd), acquire) // the command's fd 3
		defer pass.Close()
	} else {
		defer syscall.Close(fd)
	}
	err = runHolding(o.argv, pass, o.pauseFile, sigs, stdout, stderr)
	if o.pausing() {
		pauseAfter(o, fd, exitStatus(err), stderr) // before the close completes the call
	}
	return err
}

// unitLimits says what bounds the cost of one call of the meter at
// meterDir, from its limits file: "its limits allow at most 100 units a
// call: units:100/1h".
func unitLimits(meterDir string) string {
	b, err := os.ReadFile(filepath.Join(meterDir, "limits"))
	if err != nil {
		return "a units limit of the meter is smaller"
	}
	spec, err := meter.ParseSpec(string(b))
	if err != nil || spec.MaxCost() < 0 {
		return "a units limit of the meter is smaller"
	}
	var items []string
	for _, item := range strings.Split(spec.String(), ",") {
		if strings.HasPrefix(item, "units:") {
			items = append(items, item)
		}
	}
	return fmt.Sprintf("its limits allow at most %d units a call: %s", spec.MaxCost(), strings.Join(items, ","))
}

// signalError is a wait stopped by a signal.
type signalError struct{ sig syscall.Signal }

func (e signalError) Error() string { return unix.SignalName(e.sig) }

// exit is rlfs run's exit after the signal: 128+N, as a shell reports a
// command the signal killed, and as flock(1) exits.
func (e signalError) exit(meterDir string) error {
	return &codeError{code: 128 + int(e.sig), err: fmt.Errorf("%s while waiting for %s: nothing ran", unix.SignalName(e.sig), meterDir)}
}

// runHolding runs the command, passing the signals that arrive on sigs on
// to it, and maps its exit. A call's descriptor pass, if not nil, becomes the
// command's fd 3 (and $RLFS_ACQUIRE_FD says so); a pause file, if not "",
// is named in $RLFS_PAUSE_FILE.
func runHolding(argv []string, pass *os.File, pauseFile string, sigs <-chan os.Signal, stdout, stderr io.Writer) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	var env []string
	if pass != nil {
		cmd.ExtraFiles = []*os.File{pass}
		env = append(env, "RLFS_ACQUIRE_FD=3")
	}
	if pauseFile != "" {
		env = append(env, "RLFS_PAUSE_FILE="+pauseFile)
	}
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
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

// openAcquire opens path for a grant. It interrupts its own blocked open(2)
// with a signal to its thread once wait (if > 0) has passed, or as soon as
// a signal arrives on sigs: the daemon answers an interrupted open with EINTR
// and takes the waiter out of the queue. After wait, a grant that won the
// race is kept; after a signal, it is closed (the call completes at once)
// and the error is a signalError.
func openAcquire(path string, rdwr, nonblock bool, wait time.Duration, sigs <-chan os.Signal) (int, error) {
	flags := syscall.O_RDONLY | syscall.O_CLOEXEC
	if rdwr {
		flags = syscall.O_RDWR | syscall.O_CLOEXEC // to set the actual cost
	}
	if nonblock {
		flags |= syscall.O_NONBLOCK
	}
	var stopping atomic.Bool
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
			if errors.Is(err, syscall.EINTR) && !stopping.Load() {
				continue // a stray signal (the runtime's own), not ours
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
	var stopErr error
	select {
	case r := <-results:
		return r.fd, r.err
	case <-timeout:
		stopErr = syscall.ETIMEDOUT
	case s := <-sigs:
		stopErr = signalError{s.(syscall.Signal)}
	}
	stopping.Store(true)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		_ = unix.Tgkill(os.Getpid(), tid, syscall.SIGURG)
		select {
		case r := <-results:
			var se signalError
			switch {
			case errors.Is(r.err, syscall.EINTR):
				r.err = stopErr
			case r.err == nil && errors.As(stopErr, &se):
				syscall.Close(r.fd) // the grant won the race with the signal
				r.fd, r.err = -1, stopErr
			}
			return r.fd, r.err // after a timeout, a grant that won the race is kept
		case <-tick.C:
		}
	}
}
