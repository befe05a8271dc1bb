package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a daemon the bench started: rlfs or a floor. Each serves one
// mount, which stop takes down.
type proc struct {
	name string
	cmd  *exec.Cmd
	mnt  string
	log  string // stderr, kept for the report

	exited  chan struct{}
	exitErr error
	stopped bool // stop has run: a later stop does nothing
}

// daemons tracks every proc started, so that stopAll can end them all.
type daemons struct {
	mu    sync.Mutex
	procs []*proc
}

func (d *daemons) add(p *proc) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.procs = append(d.procs, p)
}

// stopAll stops every daemon still running, newest first, and returns
// what went wrong.
func (d *daemons) stopAll() []error {
	d.mu.Lock()
	ps := d.procs
	d.procs = nil
	d.mu.Unlock()
	var errs []error
	for i := len(ps) - 1; i >= 0; i-- {
		if err := ps[i].stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 15 * time.Second
)

// start runs argv with stderr logged to p.log and waits until ready sees
// a line of stdout or stderr. It returns the time from exec to that line.
func (d *daemons) start(p *proc, env []string, argv []string, ready func(line string) bool) (time.Duration, error) {
	if err := os.MkdirAll(p.mnt, 0o755); err != nil {
		return 0, err
	}
	logf, err := os.Create(p.log)
	if err != nil {
		return 0, err
	}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(os.Environ(), env...)
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return 0, err
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return 0, err
	}
	p.exited = make(chan struct{})
	readyCh := make(chan time.Time, 1)
	var logMu sync.Mutex
	scan := func(r io.Reader) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			at := time.Now()
			logMu.Lock()
			fmt.Fprintln(logf, sc.Text())
			logMu.Unlock()
			if ready(sc.Text()) {
				select {
				case readyCh <- at:
				default:
				}
			}
		}
	}
	var pipes sync.WaitGroup
	pipes.Go(func() { scan(stdout) })
	pipes.Go(func() { scan(stderr) })
	t0 := time.Now()
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return 0, err
	}
	d.add(p)
	go func() {
		pipes.Wait()
		p.exitErr = p.cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	select {
	case at := <-readyCh:
		return at.Sub(t0), nil
	case <-p.exited:
		return 0, fmt.Errorf("%s exited before it was ready (%v); see %s", p.name, p.exitErr, p.log)
	case <-time.After(readyTimeout):
		return 0, fmt.Errorf("%s not ready after %s; see %s", p.name, readyTimeout, p.log)
	}
}

// startRlfs runs `BIN mount --db DB ARGS... MNT` (without --db when db is
// "", as for a daemon of a fleet) and waits for its "msg=mounted" line; it
// returns the time from exec to that line.
func (d *daemons) startRlfs(name, bin, db, mnt, logDir string, env []string, args ...string) (*proc, time.Duration, error) {
	p := &proc{name: name, mnt: mnt, log: filepath.Join(logDir, name+".log")}
	argv := []string{bin, "mount"}
	if db != "" {
		argv = append(argv, "--db", db)
	}
	argv = append(argv, args...)
	argv = append(argv, mnt)
	took, err := d.start(p, env, argv, func(l string) bool { return strings.Contains(l, "msg=mounted") })
	if err != nil {
		_ = p.stop()
		return nil, 0, err
	}
	return p, took, nil
}

// startFloor runs the bench binary's floor subcommand (extra: its flags
// before the mountpoint).
func (d *daemons) startFloor(self, kind, mnt, logDir string, extra ...string) (*proc, error) {
	p := &proc{name: "floor-" + kind, mnt: mnt, log: filepath.Join(logDir, "floor-"+kind+".log")}
	argv := append([]string{self, "floor", "-kind", kind}, extra...)
	_, err := d.start(p, nil, append(argv, mnt), func(l string) bool { return l == "ready" })
	if err != nil {
		_ = p.stop()
		return nil, err
	}
	return p, nil
}

// stop sends SIGTERM and waits; a daemon that does not exit is killed and
// its mount detached. It returns an error when the daemon did not exit 0 by
// itself or left its mount behind.
func (p *proc) stop() error {
	if p.stopped || p.cmd == nil || p.cmd.Process == nil {
		return nil
	}
	p.stopped = true
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	var problem error
	select {
	case <-p.exited:
		if p.exitErr != nil {
			problem = fmt.Errorf("%s exited with %v", p.name, p.exitErr)
		}
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		problem = fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.name, stopTimeout)
	}
	if mounted(p.mnt) {
		_ = syscall.Unmount(p.mnt, syscall.MNT_DETACH)
		problem = errors.Join(problem, fmt.Errorf("%s left %s mounted; detached it", p.name, p.mnt))
	}
	return problem
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// mounted reports whether dir is a mount point, from /proc/self/mountinfo.
func mounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.ReplaceAll(f[4], `\040`, " ") == dir {
			return true
		}
	}
	return false
}

// rssKB reads VmRSS of pid, in KiB.
func rssKB(pid int) int {
	return procStatusKB(pid, "VmRSS")
}

func procStatusKB(pid int, key string) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	_, rest, ok := bytes.Cut(b, []byte("\n"+key+":"))
	if !ok {
		return -1
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) == 0 {
		return -1
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// clientTimeout bounds any client run, so a hung daemon cannot hang the bench.
const clientTimeout = 90 * time.Second

// clientEnv is the environment of client processes. Go clients run with
// GODEBUG=asyncpreemptoff=1: the runtime's preemption signal (SIGURG) would
// otherwise interrupt blocked FUSE opens (EINTR), and a retried open joins
// the back of the queue.
var clientEnv = append(os.Environ(), "GODEBUG=asyncpreemptoff=1")

// runClients starts n processes of argv at once and returns each one's
// stdout. A process that fails or outlives clientTimeout is an error.
func runClients(n int, argv ...string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmds := make([]*exec.Cmd, n)
	outs := make([]bytes.Buffer, n)
	errs := make([]bytes.Buffer, n)
	for i := range n {
		c := exec.CommandContext(ctx, argv[0], argv[1:]...)
		c.Env = clientEnv
		c.Stdout, c.Stderr = &outs[i], &errs[i]
		if err := c.Start(); err != nil {
			for _, s := range cmds[:i] {
				_ = s.Process.Kill()
				_ = s.Wait()
			}
			return nil, err
		}
		cmds[i] = c
	}
	var failed error
	res := make([]string, n)
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			failed = errors.Join(failed, fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(errs[i].String())))
		}
		res[i] = strings.TrimSpace(outs[i].String())
	}
	return res, failed
}
