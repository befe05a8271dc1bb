// Package redistest starts real redis-server processes for tests: one on a
// free loopback port in a temporary directory, or a local Redis Cluster.
// Each is stopped by t.Cleanup. Tests that need one fail (under CI=true) or
// skip when redis-server is missing.
package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is one redis-server process. Safe for use by one test goroutine.
type Server struct {
	t    testing.TB
	Dir  string // its working directory (AOF, RDB)
	Port int
	Args []string // extra arguments, kept across Restart
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// Addr is HOST:PORT of the server.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is redis://HOST:PORT.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// binary finds redis-server, or fails (CI) or skips the test.
func binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server"
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("redis-server is missing (apt-get install redis-server); CI is set, so this is a failure")
	}
	t.Skip("redis-server is missing (apt-get install redis-server)")
	return ""
}

// Start runs a redis-server without persistence on a free loopback port.
// args are more redis-server options, such as "--appendonly", "yes".
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	s := &Server{t: t, Dir: t.TempDir(), Args: args}
	for attempt := 1; ; attempt++ {
		s.Port = FreePort(t)
		if s.start() {
			break
		}
		if attempt == startAttempts {
			t.Fatalf("redis-server: another server took each of %d free ports first; its log:\n%s", attempt, s.Log())
		}
	}
	t.Cleanup(s.Kill)
	return s
}

// startAttempts is how many free ports Start tries: between FreePort and
// the server's bind, a test running in parallel may take the same port.
const startAttempts = 5

// start runs the server on s.Port and waits until it answers. It reports
// false, with the process gone, when another server holds the port.
func (s *Server) start() bool {
	s.t.Helper()
	args := []string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "redis.log", "--protected-mode", "no"}
	args = append(args, s.Args...)
	s.cmd = exec.Command(binary(s.t), args...)
	s.cmd.Dir = s.Dir
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.done = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(s.cmd, s.done)
	return s.waitReady()
}

// waitReady waits until this server (not another one on its port) answers
// PING; it reports false, with the process gone, if another one holds the
// port.
func (s *Server) waitReady() bool {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			if strings.Contains(s.Log(), "Address already in use") {
				return false
			}
			s.t.Fatalf("redis-server on port %d exited at start; its log:\n%s", s.Port, s.Log())
		default:
		}
		if Ping(s.Addr()) {
			pid := Command(s.Addr(), "INFO", "server")
			if strings.Contains(pid, "process_id:"+strconv.Itoa(s.cmd.Process.Pid)+"\r\n") {
				return true
			}
			if pid != "" { // another server answers on the port
				s.Kill()
				return false
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Fatalf("redis-server on port %d did not answer within 30s; its log:\n%s", s.Port, s.Log())
	return false
}

// Kill stops the server at once (SIGKILL) and waits for it.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Restart starts the server again on the same port and directory (with
// --appendonly yes among Args it reloads its AOF; without, it comes back
// empty).
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	if !s.start() {
		s.t.Fatalf("redis-server: another server took port %d while this one was down", s.Port)
	}
}

// Log returns the server's log file.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	return string(b)
}

// Ping reports whether a Redis server answers PING at addr.
func Ping(addr string) bool {
	return Command(addr, "PING") == "+PONG"
}

// Command sends one inline command to addr and returns the first line of
// the reply ("" on error), for tests that poke the server directly.
func Command(addr string, args ...string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return ""
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return ""
	}
	line = strings.TrimRight(line, "\r\n")
	if n, err := strconv.Atoi(strings.TrimPrefix(line, "$")); strings.HasPrefix(line, "$") && err == nil && n >= 0 {
		body := make([]byte, n+2)
		if _, err := io.ReadFull(r, body); err != nil {
			return ""
		}
		return string(body[:n]) // a bulk string: its content
	}
	return line
}

// FreePort returns a TCP port free on the loopback interface now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
