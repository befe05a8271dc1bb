package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The fleet rows (r, x) run rlfs on Redis: a redis-server the bench starts
// on a free loopback port, configured as docs/fleet.md recommends (AOF on,
// fsync every second), stopped with the other daemons.

// redisServer is one redis-server of the bench.
type redisServer struct {
	proc *proc
	addr string
}

func (r *redisServer) url() string { return "redis://" + r.addr }

// startRedis runs redis-server on a free loopback port, with its files in
// WORK/NAME, and waits until it accepts connections.
func (b *bench) startRedis(name string) (*redisServer, error) {
	bin := b.cfg.redisServer
	if _, err := exec.LookPath(bin); err != nil {
		return nil, fmt.Errorf("%s not found (apt-get install redis-server, or -redis-server PATH): %w", bin, err)
	}
	dir := filepath.Join(b.work, name)
	var lastErr error
	for range 5 { // another process may take the free port first
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		p := &proc{name: name, mnt: dir, log: filepath.Join(b.work, name+".log")}
		argv := []string{bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no",
			"--logfile", "", "--protected-mode", "no"}
		_, err = b.d.start(p, nil, argv, func(l string) bool { return strings.Contains(l, "Ready to accept connections") })
		if err == nil {
			return &redisServer{proc: p, addr: "127.0.0.1:" + strconv.Itoa(port)}, nil
		}
		_ = p.stop()
		lastErr = err
	}
	return nil, lastErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startRlfsRedis mounts an rlfs daemon on r's store as host NAME.
func (b *bench) startRlfsRedis(name, bin string, r *redisServer, env []string, args ...string) (*proc, error) {
	args = append([]string{"--store", r.url(), "--host", name, "--journal", filepath.Join(b.work, name+".journal")}, args...)
	p, _, err := b.d.startRlfs(name, bin, "", filepath.Join(b.work, "mnt-"+name), b.work, env, args...)
	return p, err
}

// respConn is a bare RESP client: the bench's own commands to Redis.
type respConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialRedis(addr string) (*respConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &respConn{c: c, r: bufio.NewReader(c)}, nil
}

func (c *respConn) close() { c.c.Close() }

// do sends one command and returns its reply: a status, integer or bulk
// string as text (arrays are not needed here).
func (c *respConn) do(args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return c.reply()
}

func (c *respConn) reply() (string, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("redis: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New("redis: " + line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		body := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, body); err != nil {
			return "", err
		}
		return string(body[:n]), nil
	}
	return "", fmt.Errorf("redis: unexpected reply %q", line)
}

// rtt is the median round trip of PING on one connection, in µs, over n
// pings after n/10 untimed.
func rtt(addr string, n int) (float64, error) {
	c, err := dialRedis(addr)
	if err != nil {
		return 0, err
	}
	defer c.close()
	ts := make([]float64, 0, n)
	for i := range n + n/10 {
		t0 := time.Now()
		if _, err := c.do("PING"); err != nil {
			return 0, err
		}
		if i >= n/10 {
			ts = append(ts, time.Since(t0).Seconds()*1e6)
		}
	}
	return median(ts), nil
}

// cmdStats is INFO commandstats: calls and µs by command.
type cmdStats map[string]struct{ calls, usec float64 }

func commandStats(addr string) (cmdStats, error) {
	c, err := dialRedis(addr)
	if err != nil {
		return nil, err
	}
	defer c.close()
	text, err := c.do("INFO", "commandstats")
	if err != nil {
		return nil, err
	}
	st := cmdStats{}
	for line := range strings.SplitSeq(text, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, found := strings.CutPrefix(name, "cmdstat_")
		if !ok || !found {
			continue
		}
		var e struct{ calls, usec float64 }
		for kv := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			f, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "calls":
				e.calls = f
			case "usec":
				e.usec = f
			}
		}
		st[name] = e
	}
	return st, nil
}

// minus is the commands run between two readings, without the bench's own
// INFO (the earlier reading) and CONFIG.
func (s cmdStats) minus(before cmdStats) cmdStats {
	d := cmdStats{}
	for k, v := range s {
		w := before[k]
		if e := (struct{ calls, usec float64 }{v.calls - w.calls, v.usec - w.usec}); e.calls > 0 {
			d[k] = e
		}
	}
	if e, ok := d["info"]; ok {
		e.calls--
		d["info"] = e
	}
	return d
}

func (s cmdStats) total() float64 {
	n := 0.0
	for _, v := range s {
		n += v.calls
	}
	return n
}

// String lists the commands, most called first.
func (s cmdStats) String() string {
	keys := make([]string, 0, len(s))
	for k := range s {
		if s[k].calls > 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int { return int(s[b].calls - s[a].calls) })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, s[k].calls))
	}
	return strings.Join(parts, ", ")
}

// monitor counts the commands clients send to Redis (MONITOR shows those
// run by functions as "[0 lua]", which it leaves out), by command name,
// until stop is called.
type monitor struct {
	c      *respConn
	done   chan map[string]int
	closed chan struct{}
}

func startMonitor(addr string) (*monitor, error) {
	c, err := dialRedis(addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.do("MONITOR"); err != nil {
		c.close()
		return nil, err
	}
	_ = c.c.SetDeadline(time.Time{})
	m := &monitor{c: c, done: make(chan map[string]int, 1)}
	go func() {
		counts := map[string]int{}
		for {
			line, err := c.r.ReadString('\n')
			if err != nil {
				m.done <- counts
				return
			}
			// +1796229441.896924 [0 127.0.0.1:42472] "FCALL" "rlfs1_acquire" ...
			_, rest, ok := strings.Cut(line, "[")
			if !ok {
				continue
			}
			src, cmd, _ := strings.Cut(rest, "]")
			if strings.HasSuffix(src, " lua") {
				continue
			}
			f := strings.Fields(cmd)
			if len(f) == 0 {
				continue
			}
			name := strings.ToLower(strings.Trim(f[0], `"`))
			if name == "fcall" && len(f) > 1 {
				name = strings.Trim(f[1], `"`)
			}
			counts[name]++
		}
	}()
	return m, nil
}

// stop ends the MONITOR connection and returns the counts.
func (m *monitor) stop() map[string]int {
	time.Sleep(100 * time.Millisecond) // the last lines arrive
	m.c.close()
	return <-m.done
}
