// Package test is rlfs's end-to-end suite. TestMain builds the rlfs binary;
// every scenario mounts real meters with that binary, running as its own
// process, and drives them from real processes written in sh, Python, Go and
// JavaScript (node), which log their own grant and release times. The checker
// (checker_test.go) then proves the window rule, the concurrency cap, FIFO
// order and that no capacity was lost.
//
// The test process itself never serves a mount, so it may open files of the
// mount (it does so only with O_NONBLOCK or for status, holders/ and
// waiters/); blocking opens are done by child processes.
package test

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	rlfsBin     string // the daemon, built by TestMain (with -race when the tests are)
	rlfsPlain   string // the daemon without -race, for measuring its memory
	goClientBin string // clients/goclient, built by TestMain
	clientsDir  string // absolute path of clients/ (client.sh, client.py, client.js)
)

// Deadlines. They bound how long a broken daemon (or client) can stall the
// suite, nothing else: a healthy one meets them in milliseconds on an idle
// machine, and in seconds on a loaded one, where starting a process (the
// race-enabled daemon, a Python) can take several. So they are generous;
// what the product promises about time is asserted separately (timing_test.go).
const (
	mountTimeout = 90 * time.Second // rlfs mount serves its meters
	startTimeout = 90 * time.Second // a client process starts and reports (held, ready)
	stopTimeout  = 30 * time.Second // rlfs exits after SIGTERM; a process after SIGKILL
	pollTimeout  = 60 * time.Second // a condition polled for (status, listings, logs)
	pollEvery    = 5 * time.Millisecond
)

// parallel is how many tests run at once unless -test.parallel says
// otherwise: they mostly wait on meters, so more than GOMAXPROCS.
const parallel = 16

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", strconv.Itoa(parallel))
	}
	dir, err := os.MkdirTemp("", "rlfs-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "test: ", err)
		return 1
	}
	defer os.RemoveAll(dir)
	rlfsBin = filepath.Join(dir, "rlfs")
	goClientBin = filepath.Join(dir, "goclient")
	daemonBuild := []string{"build", "-o", rlfsBin}
	if raceEnabled {
		daemonBuild = append(daemonBuild, "-race")
	}
	builds := [][]string{
		append(daemonBuild, "github.com/rlfs/rlfs/cmd/rlfs"),
		{"build", "-o", goClientBin, "github.com/rlfs/rlfs/test/clients/goclient"},
	}
	rlfsPlain = rlfsBin
	if raceEnabled {
		rlfsPlain = filepath.Join(dir, "rlfs-plain")
		builds = append(builds, []string{"build", "-o", rlfsPlain, "github.com/rlfs/rlfs/cmd/rlfs"})
	}
	for _, args := range builds {
		out, err := exec.Command(goTool(), args...).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "test: go %s: %v\n%s", strings.Join(args, " "), err, out)
			return 1
		}
	}
	if clientsDir, err = filepath.Abs("clients"); err != nil {
		fmt.Fprintln(os.Stderr, "test: ", err)
		return 1
	}
	resolveInterpreters()
	_, ctlBefore := mountDev(fusectlDir)
	code := m.Run()
	if _, ctlAfter := mountDev(fusectlDir); ctlAfter && !ctlBefore {
		// abortConnection mounts fusectl for the occasion and unmounts it;
		// whatever still holds it (a test stopped half-way) goes now.
		fmt.Fprintf(os.Stderr, "test: %s was left mounted; unmounting it\n", fusectlDir)
		if err := unmountFusectl(); err != nil {
			fmt.Fprintln(os.Stderr, "test: ", err)
		}
	}
	if left := leftovers(dir); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "test: processes left running (now killed):\n")
		for pid, cmd := range left {
			fmt.Fprintf(os.Stderr, "  %d %s\n", pid, cmd)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return 1
	}
	return code
}

// leftovers lists the processes (pid: command line) still running a binary
// from dir, after giving them a few seconds to go.
func leftovers(dir string) map[int]string {
	for deadline := time.Now().Add(stopTimeout); ; time.Sleep(50 * time.Millisecond) {
		left := map[int]string{}
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			b, err := os.ReadFile(p)
			if err == nil && bytes.HasPrefix(b, []byte(dir+"/")) {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				left[pid] = strings.ReplaceAll(string(b), "\x00", " ")
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
	}
}

// goTool is $GOROOT/bin/go if GOROOT is set, else go on PATH.
func goTool() string {
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// requireFUSE skips a test that needs to mount when FUSE or root is missing,
// but fails it when the environment variable CI is set: in CI a missing FUSE
// is a broken machine, not a reason to pass.
func requireFUSE(t *testing.T) {
	t.Helper()
	why := ""
	if _, err := os.Stat("/dev/fuse"); err != nil {
		why = "no /dev/fuse"
	} else if os.Geteuid() != 0 {
		why = "not root (the suite mounts with mount(2) directly)"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("FUSE end-to-end tests cannot run: %s (CI is set, so this is a failure)", why)
	}
	t.Skipf("FUSE end-to-end test skipped: %s", why)
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemon is one rlfs mount served by the built binary, possibly over several
// runs (restart, kill9) on the same database and mountpoint.
type daemon struct {
	db     string
	mnt    string
	meters []string // NAME=SPEC
	extra  []string // more flags for rlfs mount
	env    []string // more environment variables for rlfs mount
	wrap   []string // a command that runs rlfs, such as nsenter --net=…; none if empty
	bin    string   // the rlfs binary; rlfsBin if empty
	log    syncBuffer
	run    *run // the current (or last) process
	runs   int
}

// run is one rlfs process.
type run struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited
	err  error         // from Wait, valid after done
	dev  string        // major:minor of its mount, once mounted
}

// startDaemon mounts the given meters (NAME=SPEC) on a fresh database and
// mountpoint under t.TempDir() and waits until they are served. Cleanup stops
// it (SIGTERM, then SIGKILL) and unmounts whatever is left.
func startDaemon(t *testing.T, meters ...string) *daemon {
	return startDaemonFlags(t, nil, meters...)
}

// startDaemonFlags is startDaemon with more flags for rlfs mount.
func startDaemonFlags(t *testing.T, flags []string, meters ...string) *daemon {
	t.Helper()
	requireFUSE(t)
	dir := t.TempDir()
	d := &daemon{db: filepath.Join(dir, "meters.db"), mnt: filepath.Join(dir, "mnt"), meters: meters, extra: flags}
	t.Cleanup(func() { d.cleanup(t) })
	d.start(t)
	return d
}

// path is a path inside the mount.
func (d *daemon) path(elem ...string) string {
	return filepath.Join(append([]string{d.mnt}, elem...)...)
}

// pid is the current daemon process's pid.
func (d *daemon) pid() int { return d.run.cmd.Process.Pid }

func (d *daemon) start(t *testing.T) {
	t.Helper()
	args := []string{"mount"}
	if d.db != "" {
		args = append(args, "--db", d.db)
	}
	for _, m := range d.meters {
		args = append(args, "--meter", m)
	}
	args = append(append(args, d.extra...), d.mnt)
	d.runs++
	fmt.Fprintf(&d.log, "--- run %d: rlfs %s\n", d.runs, strings.Join(args, " "))
	bin := d.bin
	if bin == "" {
		bin = rlfsBin
	}
	argv := append(append([]string(nil), d.wrap...), bin)
	cmd := exec.Command(argv[0], append(argv[1:], args...)...)
	cmd.Stdout, cmd.Stderr = &d.log, &d.log
	if d.env != nil {
		cmd.Env = append(os.Environ(), d.env...)
	}
	// Should the test binary die, the daemon unmounts and exits too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	require.NoError(t, cmd.Start())
	r := &run{cmd: cmd, done: make(chan struct{})}
	go func() { r.err = cmd.Wait(); close(r.done) }()
	d.run = r
	deadline := time.Now().Add(mountTimeout)
	for {
		select {
		case <-r.done:
			t.Fatalf("rlfs exited before mounting (%v); its output:\n%s", r.err, d.log.String())
		default:
		}
		if dev, ok := mountDev(d.mnt); ok && d.metersVisible() {
			r.dev = dev
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rlfs did not mount %s within %v; its output:\n%s", d.mnt, mountTimeout, d.log.String())
		}
		time.Sleep(pollEvery)
	}
}

func (d *daemon) metersVisible() bool {
	for _, m := range d.meters {
		name, _, _ := strings.Cut(m, "=")
		if _, err := os.Stat(d.path(name, "acquire")); err != nil {
			return false
		}
	}
	return true
}

// stop sends SIGTERM and requires a clean exit (status 0) and no mount left.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	r := d.run
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-r.done:
	case <-time.After(stopTimeout):
		t.Fatalf("rlfs did not exit within %v of SIGTERM; its output:\n%s", stopTimeout, d.log.String())
	}
	require.NoError(t, r.err, "rlfs exit status after SIGTERM; its output:\n%s", d.log.String())
	_, mounted := mountDev(d.mnt)
	require.False(t, mounted, "%s still mounted after rlfs exited", d.mnt)
}

// restart stops the daemon with SIGTERM and starts it again on the same
// database and mountpoint.
func (d *daemon) restart(t *testing.T) {
	t.Helper()
	d.stop(t)
	d.start(t)
}

// kill9 kills the daemon with SIGKILL and cleans up the dead mount it leaves.
func (d *daemon) kill9(t *testing.T) {
	t.Helper()
	r := d.run
	require.NoError(t, r.cmd.Process.Kill())
	r.awaitKilled(t)
	detach(t, d.mnt, r.dev)
}

// awaitKilled waits for a process sent SIGKILL to be gone. One that is not
// gone within stopTimeout is stuck in the kernel on a FUSE request of its
// own mount (a daemon that called into its own mount: the kernel waits
// uninterruptibly for an answer only its dead threads could give): that is
// a failure, and aborting the mount's connection frees it, so that the
// test neither hangs nor leaves a connection behind.
func (r *run) awaitKilled(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
		return
	case <-time.After(stopTimeout):
	}
	t.Errorf("rlfs pid %d is still there %v after SIGKILL: stuck on a request to its own mount; aborting its FUSE connection %s",
		r.cmd.Process.Pid, stopTimeout, r.dev)
	abortConnection(t, r.dev)
	<-r.done
}

// cleanup stops whatever is still running and removes whatever is still
// mounted; on failure it shows the daemon's output.
func (d *daemon) cleanup(t *testing.T) {
	if r := d.run; r != nil {
		select {
		case <-r.done:
		default:
			_ = r.cmd.Process.Signal(syscall.SIGTERM)
			_ = r.cmd.Process.Signal(syscall.SIGCONT) // should a test have stopped it
			select {
			case <-r.done:
			case <-time.After(stopTimeout):
				t.Errorf("rlfs pid %d ignored SIGTERM for %v; killing it", r.cmd.Process.Pid, stopTimeout)
				_ = r.cmd.Process.Kill()
				r.awaitKilled(t)
			}
		}
		detach(t, d.mnt, r.dev)
	}
	if t.Failed() {
		t.Logf("rlfs output:\n%s", d.log.String())
	}
}

// detach removes a mount left at mnt (umount -l) and, if that is not enough,
// aborts its FUSE connection through fusectl.
func detach(t *testing.T, mnt, dev string) {
	if _, ok := mountDev(mnt); !ok {
		return
	}
	if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
		t.Logf("umount -l %s: %v: %s", mnt, err, out)
	}
	if _, ok := mountDev(mnt); ok {
		abortConnection(t, dev)
		if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount -l %s after abort: %v: %s", mnt, err, out)
		}
	}
	if _, ok := mountDev(mnt); ok {
		t.Errorf("%s is still mounted after cleanup", mnt)
	}
}

var fusectlMu sync.Mutex

// abortConnection aborts the FUSE connection of the mount with device dev
// (major:minor), mounting fusectl for the occasion if it is absent.
func abortConnection(t *testing.T, dev string) {
	_, minor, ok := strings.Cut(dev, ":")
	if !ok {
		return
	}
	fusectlMu.Lock()
	defer fusectlMu.Unlock()
	if _, ok := mountDev(fusectlDir); !ok {
		if out, err := exec.Command("mount", "-t", "fusectl", "none", fusectlDir).CombinedOutput(); err != nil {
			t.Errorf("mount fusectl: %v: %s", err, out)
			return
		}
		defer func() {
			if err := unmountFusectl(); err != nil {
				t.Error(err)
			}
		}()
	}
	if err := os.WriteFile(filepath.Join(fusectlDir, minor, "abort"), []byte("1"), 0o200); err != nil {
		t.Logf("abort FUSE connection %s: %v", minor, err)
	}
}

// fusectlDir is where the FUSE control filesystem mounts.
const fusectlDir = "/sys/fs/fuse/connections"

// unmountFusectl unmounts the FUSE control filesystem that a test mounted:
// umount, then umount -l if something still holds it.
func unmountFusectl() error {
	out, err := exec.Command("umount", fusectlDir).CombinedOutput()
	if err != nil {
		out, err = exec.Command("umount", "-l", fusectlDir).CombinedOutput()
	}
	if _, still := mountDev(fusectlDir); still || err != nil {
		return fmt.Errorf("umount %s: %v: %s (still mounted: %v)", fusectlDir, err, out, still)
	}
	return nil
}

// mountDev reports whether dir is a mount point, and its device major:minor.
func mountDev(dir string) (string, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMount(fields[4]) == dir {
			return fields[2], true
		}
	}
	return "", false
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// status reads a meter's status file as key: value pairs.
func (d *daemon) status(t *testing.T, meterName string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(d.path(meterName, "status"))
	require.NoError(t, err)
	return parseStatus(string(b))
}

func parseStatus(s string) map[string]string {
	kv := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			kv[k] = v
		}
	}
	return kv
}

// waitStatus polls a meter's status until key has the value want.
func (d *daemon) waitStatus(t *testing.T, meterName, key, want string) {
	t.Helper()
	var got string
	waitFor(t, fmt.Sprintf("status of %s says %s: %s", meterName, key, want), func() bool {
		got = d.status(t, meterName)[key]
		return got == want
	}, func() string { return fmt.Sprintf("last %s: %q", key, got) })
}

// entries lists a meter's holders/ or waiters/ directory, sorted by name.
func (d *daemon) entries(t *testing.T, meterName, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(d.path(meterName, dir))
	require.NoError(t, err)
	names := make([]string, len(des))
	for i, de := range des {
		names[i] = de.Name()
	}
	return names
}

// waitEntries polls holders/ or waiters/ until it lists n entries.
func (d *daemon) waitEntries(t *testing.T, meterName, dir string, n int) []string {
	t.Helper()
	var got []string
	waitFor(t, fmt.Sprintf("%s/%s lists %d entries", meterName, dir, n), func() bool {
		got = d.entries(t, meterName, dir)
		return len(got) == n
	}, func() string { return fmt.Sprintf("last listing: %q", got) })
	return got
}

// waitFor polls cond until it holds, failing the test after pollTimeout with
// what was awaited and, if given, detail().
func waitFor(t *testing.T, what string, cond func() bool, detail func() string) {
	t.Helper()
	waitWithin(t, pollTimeout, what, cond, detail)
}

// waitWithin is waitFor with another deadline.
func waitWithin(t *testing.T, timeout time.Duration, what string, cond func() bool, detail func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			if detail != nil {
				msg = "; " + detail()
			}
			t.Fatalf("timed out after %v waiting until %s%s", timeout, what, msg)
		}
		time.Sleep(pollEvery)
	}
}
