package test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The machine has no systemd as PID 1, so the docs' blocks get a systemctl
// of the test's: a stand-in that hands its command line to the test over a
// FIFO and prints the answer. The test runs the units as systemd would (see
// TestDocs): start runs ExecStartPre, then ExecStart with Environment= and
// NOTIFY_SOCKET, and answers once READY=1 came (an exit before it is an
// error: systemd would restart it forever); reload runs ExecReload and
// waits for READY=1 again; stop sends KillSignal and requires exit 0. A unit
// still running when the doc's blocks are done is stopped so.

// systemctlStub is the stand-in's script: one request, one answer.
const systemctlStub = `printf '%s\n' "$*" >"$DOCTEST_R/systemctl.req"
IFS= read -r answer <"$DOCTEST_R/systemctl.ack"
case "$answer" in
ok) exit 0 ;;
ok:*) printf '%s\n' "${answer#ok:}"; exit 0 ;;
*) printf 'systemctl: %s\n' "$answer" >&2; exit 1 ;;
esac
`

// unitFile is what the test needs of a .service unit's [Service] section.
type unitFile struct {
	typ         string
	pre         []string
	start       string
	reload      string
	env         []string
	stateDirs   []string
	killSignal  syscall.Signal
	timeoutStop time.Duration
}

// unitProc is a unit's running ExecStart.
type unitProc struct {
	name  string
	u     unitFile
	cmd   *exec.Cmd
	out   syncBuffer
	notes <-chan string
	done  chan struct{}
	err   error
}

// systemd is the test's systemctl: the units it runs for one doc.
type systemd struct {
	e     *docEnv
	mu    sync.Mutex
	units map[string]*unitProc
}

// serveSystemctl answers the stand-in's requests until quit closes.
func (e *docEnv) serveSystemctl() {
	t := e.t
	req, ack := filepath.Join(e.r, "systemctl.req"), filepath.Join(e.r, "systemctl.ack")
	for _, f := range []string{req, ack} {
		require.NoError(t, syscall.Mkfifo(f, 0o600))
	}
	e.sd = &systemd{e: e, units: map[string]*unitProc{}}
	go func() {
		for {
			b, err := os.ReadFile(req) // blocks until a writer comes and goes
			if err != nil || string(b) == "quit\n" {
				return
			}
			answer := e.sd.do(strings.Fields(string(b)))
			if f, err := os.OpenFile(ack, os.O_WRONLY, 0); err == nil {
				fmt.Fprintln(f, answer)
				f.Close()
			}
		}
	}()
	t.Cleanup(func() {
		for deadline := time.Now().Add(stopTimeout); time.Now().Before(deadline); time.Sleep(pollEvery) {
			// Non-blocking: fails (ENXIO) while the server is not reading.
			if f, err := os.OpenFile(req, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				fmt.Fprintln(f, "quit")
				f.Close()
				return
			}
		}
	})
}

// do runs one systemctl command and returns the stand-in's answer line.
func (s *systemd) do(args []string) string {
	verb, names := "", []string(nil)
	now := false
	for _, a := range args {
		switch {
		case a == "--now":
			now = true
		case strings.HasPrefix(a, "-"):
		case verb == "":
			verb = a
		default:
			names = append(names, strings.TrimSuffix(a, ".service"))
		}
	}
	var err error
	var out []string
	for _, n := range names {
		switch {
		case verb == "start" || verb == "restart" || (verb == "enable" && now):
			if verb == "restart" {
				err = s.stop(n)
			}
			if err == nil {
				err = s.start(n)
			}
		case verb == "enable" || verb == "disable":
		case verb == "reload":
			err = s.reload(n)
		case verb == "stop" || (verb == "disable" && now):
			err = s.stop(n)
		case verb == "is-active":
			if s.running(n) == nil {
				err = errors.New("inactive")
			} else {
				out = append(out, "active")
			}
		default:
			err = fmt.Errorf("the test's systemctl does not do %q", verb)
		}
		if err != nil {
			return fmt.Sprintf("%s %s: %v", verb, n, err)
		}
	}
	if verb != "daemon-reload" && len(names) == 0 {
		return fmt.Sprintf("%s: the test's systemctl wants a unit name", verb)
	}
	if len(out) > 0 {
		return "ok:" + strings.Join(out, " ")
	}
	return "ok"
}

func (s *systemd) running(name string) *unitProc {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.units[name]
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
		return p
	}
}

// start runs a unit's ExecStartPre and ExecStart and waits for READY=1.
func (s *systemd) start(name string) error {
	if s.running(name) != nil {
		return nil
	}
	e := s.e
	u, err := parseUnit(e.rewrite("/etc/systemd/system/" + name + ".service"))
	if err != nil {
		return err
	}
	if u.typ != "notify" {
		return fmt.Errorf("Type=%s: the test runs Type=notify units", u.typ)
	}
	for _, d := range u.stateDirs {
		if err := os.MkdirAll(e.rewrite("/var/lib/"+d), 0o755); err != nil {
			return err
		}
	}
	env := append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}, strings.Fields(e.rewrite(strings.Join(u.env, " ")))...)
	for _, pre := range u.pre {
		f := strings.Fields(e.rewrite(pre))
		if out, err := exec.Command(f[0], f[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("ExecStartPre=%s: %v: %s", pre, err, out)
		}
	}
	sock := filepath.Join(e.sockDir, name+".notify")
	notes, closeNotes, err := listenNotify(sock)
	if err != nil {
		return err
	}
	f := strings.Fields(e.rewrite(u.start))
	p := &unitProc{name: name, u: u, cmd: exec.Command(f[0], f[1:]...), notes: notes, done: make(chan struct{})}
	p.cmd.Env, p.cmd.Stdout, p.cmd.Stderr = append(env, "NOTIFY_SOCKET="+sock), &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("ExecStart=%s: %v", u.start, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done); closeNotes() }()
	s.mu.Lock()
	s.units[name] = p
	s.mu.Unlock()
	if err := p.await("READY=1"); err != nil {
		return fmt.Errorf("%v; systemd would restart it every RestartSec, forever", err)
	}
	e.t.Logf("unit %s: ready (READY=1)", name)
	return nil
}

// await waits for a notify message, or the unit's exit.
func (p *unitProc) await(note string) error {
	deadline := time.After(mountTimeout)
	for {
		select {
		case n := <-p.notes:
			if slices.Contains(strings.Split(n, "\n"), note) {
				return nil
			}
		case <-p.done:
			return fmt.Errorf("ExecStart exited (%v) before %s; its output: %q", p.err, note, p.out.String())
		case <-deadline:
			return fmt.Errorf("no %s within %v; its output: %q", note, mountTimeout, p.out.String())
		}
	}
}

// reload runs ExecReload and waits for READY=1 again.
func (s *systemd) reload(name string) error {
	p := s.running(name)
	if p == nil {
		return errors.New("not running")
	}
	if p.u.reload == "" {
		return errors.New("no ExecReload")
	}
	f := strings.Fields(strings.ReplaceAll(p.u.reload, "$MAINPID", strconv.Itoa(p.cmd.Process.Pid)))
	if out, err := exec.Command(f[0], f[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("ExecReload=%s: %v: %s", p.u.reload, err, out)
	}
	return p.await("READY=1")
}

// stop sends KillSignal and requires exit 0 within TimeoutStopSec.
func (s *systemd) stop(name string) error {
	p := s.running(name)
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(p.u.killSignal)
	limit := max(p.u.timeoutStop, stopTimeout)
	select {
	case <-p.done:
	case <-time.After(limit):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("did not exit within %v of %v; its output: %q", limit, p.u.killSignal, p.out.String())
	}
	if p.err != nil {
		return fmt.Errorf("exit status after %v: %v; its output: %q", p.u.killSignal, p.err, p.out.String())
	}
	s.e.t.Logf("unit %s: stopped; its log:\n%s", name, s.e.unrewrite(p.out.String()))
	return nil
}

// stopAll stops the units still running; a failure fails the test.
func (s *systemd) stopAll(t *testing.T) {
	s.mu.Lock()
	var names []string
	for n := range s.units {
		names = append(names, n)
	}
	s.mu.Unlock()
	for _, n := range names {
		if err := s.stop(n); err != nil {
			t.Errorf("unit %s: %v", n, err)
		}
	}
}

// parseUnit reads a unit file's [Service] section.
func parseUnit(path string) (unitFile, error) {
	u := unitFile{killSignal: syscall.SIGTERM, timeoutStop: 90 * time.Second}
	b, err := os.ReadFile(path)
	if err != nil {
		return u, fmt.Errorf("unit file: %w", err)
	}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
			continue
		case strings.HasPrefix(l, "["):
			section = l
			continue
		case section != "[Service]":
			continue
		}
		k, v, _ := strings.Cut(l, "=")
		cmd := strings.TrimLeft(v, "-@+!")
		switch k {
		case "Type":
			u.typ = v
		case "ExecStartPre":
			u.pre = append(u.pre, cmd)
		case "ExecStart":
			u.start = cmd
		case "ExecReload":
			u.reload = cmd
		case "Environment":
			u.env = append(u.env, strings.Fields(v)...)
		case "StateDirectory":
			u.stateDirs = append(u.stateDirs, strings.Fields(v)...)
		case "KillSignal":
			sig, ok := map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT}[v]
			if !ok {
				return u, fmt.Errorf("%s: KillSignal=%s: the test knows SIGTERM and SIGINT", path, v)
			}
			u.killSignal = sig
		case "TimeoutStopSec":
			if u.timeoutStop, err = time.ParseDuration(v); err != nil {
				return u, fmt.Errorf("%s: TimeoutStopSec=%s: %v", path, v, err)
			}
		}
	}
	if u.start == "" {
		return u, fmt.Errorf("%s has no ExecStart", path)
	}
	return u, nil
}

// listenNotify receives sd_notify messages at path until closed.
func listenNotify(path string) (<-chan string, func(), error) {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, nil, err
	}
	notes := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			select {
			case notes <- string(buf[:n]):
			default: // nobody listens any more
			}
		}
	}()
	return notes, func() { conn.Close() }, nil
}
