package redistest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Replicated is a master, one replica and the Redis Sentinels that watch
// them under one master set name, all on free loopback ports; t.Cleanup
// stops them. After a failover the roles of Master and Replica are
// swapped in fact, not in the fields: ask MasterAddr.
type Replicated struct {
	Name      string // the master set
	Master    *Server
	Replica   *Server
	Sentinels []*Sentinel
}

// SentinelTiming is how quickly the sentinels act.
type SentinelTiming struct {
	DownAfter       time.Duration // a server that does not answer for this long is down
	FailoverTimeout time.Duration // sentinel's failover-timeout
}

// StartReplicated starts a master, a replica of it (--replicaof) and n
// sentinels that agree on a failure with quorum, and waits until the
// replica is in sync and every sentinel sees the master up, the replica and
// the n-1 other sentinels.
func StartReplicated(t testing.TB, name string, n, quorum int, timing SentinelTiming) *Replicated {
	t.Helper()
	r := &Replicated{Name: name, Master: Start(t)}
	r.Replica = Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(r.Master.Port))
	for range n {
		r.Sentinels = append(r.Sentinels, startSentinel(t, name, r.Master, quorum, timing))
	}
	WaitSynced(t, r.Master, r.Replica, 60*time.Second)
	r.waitWatching(t, 60*time.Second)
	return r
}

// URL is the --store URL of the master set: the first sentinel, with
// master_set and the others as addr.
func (r *Replicated) URL() string {
	u := "redis://" + r.Sentinels[0].Addr() + "?master_set=" + r.Name
	for _, s := range r.Sentinels[1:] {
		u += "&addr=" + s.Addr()
	}
	return u
}

// sentinelRE reads a sentinel's view of the master set from INFO sentinel:
// "master0:name=NAME,status=ok,address=IP:PORT,slaves=1,sentinels=3".
var sentinelRE = regexp.MustCompile(`name=([^,]+),status=(\w+),address=([^,]+),slaves=(\d+),sentinels=(\d+)`)

// SentinelView is what one sentinel says of the master set ("" fields when
// it does not answer).
type SentinelView struct {
	Status, Master      string
	Replicas, Sentinels int
}

// View is what sentinel s says of the master set.
func (r *Replicated) View(s *Sentinel) SentinelView {
	for _, m := range sentinelRE.FindAllStringSubmatch(Command(s.Addr(), "INFO", "sentinel"), -1) {
		if m[1] == r.Name {
			rep, _ := strconv.Atoi(m[4])
			sen, _ := strconv.Atoi(m[5])
			return SentinelView{Status: m[2], Master: m[3], Replicas: rep, Sentinels: sen}
		}
	}
	return SentinelView{}
}

// waitWatching waits until every sentinel sees the master up, its replica
// and every other sentinel (they find each other through the master, every
// 2 s): only then can they agree on a failover.
func (r *Replicated) waitWatching(t testing.TB, timeout time.Duration) {
	t.Helper()
	want := SentinelView{Status: "ok", Master: r.Master.Addr(), Replicas: 1, Sentinels: len(r.Sentinels)}
	deadline := time.Now().Add(timeout)
	for _, s := range r.Sentinels {
		for v := r.View(s); v != want; v = r.View(s) {
			if time.Now().After(deadline) {
				t.Fatalf("sentinel %s: %+v, want %+v after %v; its log:\n%s", s.Addr(), v, want, timeout, s.Log())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// MasterAddr is the master's address as every sentinel names it, or "" while
// they disagree or one does not answer.
func (r *Replicated) MasterAddr() string {
	addr := ""
	for i, s := range r.Sentinels {
		v := r.View(s)
		if v.Master == "" || (i > 0 && v.Master != addr) {
			return ""
		}
		addr = v.Master
	}
	return addr
}

// Failover asks the first sentinel that answers for a failover of the
// master set (SENTINEL FAILOVER: planned, without asking the others).
func (r *Replicated) Failover(t testing.TB) {
	t.Helper()
	var got []string
	for _, s := range r.Sentinels {
		reply := Command(s.Addr(), "SENTINEL", "FAILOVER", r.Name)
		if reply == "+OK" {
			return
		}
		got = append(got, s.Addr()+": "+reply)
	}
	t.Fatalf("SENTINEL FAILOVER %s: no sentinel agreed: %q", r.Name, got)
}

// WaitMaster waits until every sentinel names addr as the master and the
// server at addr says it is one; it returns how long that took.
func (r *Replicated) WaitMaster(t testing.TB, addr string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for r.MasterAddr() != addr || Role(addr) != "master" {
		if time.Since(start) > timeout {
			var views []string
			for _, s := range r.Sentinels {
				views = append(views, fmt.Sprintf("%s: %+v", s.Addr(), r.View(s)))
			}
			t.Fatalf("the sentinels did not make %s the master within %v (role %q); they say:\n%s\na sentinel's log:\n%s",
				addr, timeout, Role(addr), strings.Join(views, "\n"), r.Sentinels[0].Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// Role is the role a server says it has (ROLE's first line is "*3", so
// INFO replication is read): "master", "slave", or "" if it does not answer.
func Role(addr string) string {
	m := roleRE.FindStringSubmatch(Command(addr, "INFO", "replication"))
	if m == nil {
		return ""
	}
	return m[1]
}

var roleRE = regexp.MustCompile(`(?m)^role:(\w+)`)

var offsetRE = regexp.MustCompile(`(?m)^(master_repl_offset|master_link_status):(\S+)`)

// Replication reads a server's replication offset (for a replica: how much
// of its master's stream it applied) and, for a replica, the state of its
// link to the master ("up", "down"; "" for a master). ok is false when the
// server does not answer.
func Replication(addr string) (offset int64, link string, ok bool) {
	ms := offsetRE.FindAllStringSubmatch(Command(addr, "INFO", "replication"), -1)
	for _, m := range ms {
		if m[1] == "master_link_status" {
			link = m[2]
		} else {
			offset, _ = strconv.ParseInt(m[2], 10, 64)
			ok = true
		}
	}
	return offset, link, ok
}

// WaitSynced waits until replica's link to master is up and it has applied
// every write master made so far (equal replication offsets).
func WaitSynced(t testing.TB, master, replica *Server, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		mo, _, mok := Replication(master.Addr())
		ro, link, rok := Replication(replica.Addr())
		if mok && rok && link == "up" && ro >= mo {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s not in sync with %s within %v (offsets %d, %d; link %q); its log:\n%s",
				replica.Addr(), master.Addr(), timeout, ro, mo, link, replica.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Sentinel is one redis-server in sentinel mode.
type Sentinel struct {
	t    testing.TB
	Dir  string // its working directory: its config file (which it rewrites) and log
	Port int
	cmd  *exec.Cmd
	done chan struct{}
}

// Addr is HOST:PORT of the sentinel.
func (s *Sentinel) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Log returns the sentinel's log file.
func (s *Sentinel) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "sentinel.log"))
	return string(b)
}

// Kill stops the sentinel at once (SIGKILL) and waits for it.
func (s *Sentinel) Kill() {
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

// startSentinel starts a sentinel that monitors master as name.
func startSentinel(t testing.TB, name string, master *Server, quorum int, timing SentinelTiming) *Sentinel {
	t.Helper()
	s := &Sentinel{t: t, Dir: t.TempDir()}
	for attempt := 1; ; attempt++ {
		s.Port = FreePort(t)
		if s.start(name, master, quorum, timing) {
			break
		}
		if attempt == startAttempts {
			t.Fatalf("redis-server --sentinel: another server took each of %d free ports first; its log:\n%s", attempt, s.Log())
		}
	}
	t.Cleanup(s.Kill)
	return s
}

// start writes the sentinel's config file and runs it on s.Port; it
// reports false, with the process gone, when another server holds the port.
func (s *Sentinel) start(name string, master *Server, quorum int, timing SentinelTiming) bool {
	s.t.Helper()
	conf := filepath.Join(s.Dir, "sentinel.conf")
	text := strings.Join([]string{
		"port " + strconv.Itoa(s.Port),
		"bind 127.0.0.1",
		"protected-mode no",
		"daemonize no",
		"dir " + s.Dir,
		"logfile sentinel.log",
		fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", name, master.Port, quorum),
		fmt.Sprintf("sentinel down-after-milliseconds %s %d", name, timing.DownAfter.Milliseconds()),
		fmt.Sprintf("sentinel failover-timeout %s %d", name, timing.FailoverTimeout.Milliseconds()),
		fmt.Sprintf("sentinel parallel-syncs %s 1", name),
	}, "\n") + "\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		s.t.Fatalf("write %s: %v", conf, err)
	}
	s.cmd = exec.Command(binary(s.t), conf, "--sentinel")
	s.cmd.Dir = s.Dir
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server --sentinel: %v", err)
	}
	s.done = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(s.cmd, s.done)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			if strings.Contains(s.Log(), "Address already in use") {
				return false
			}
			s.t.Fatalf("redis-server --sentinel on port %d exited at start; its log:\n%s", s.Port, s.Log())
		default:
		}
		if info := Command(s.Addr(), "INFO", "server"); info != "" {
			if strings.Contains(info, "process_id:"+strconv.Itoa(s.cmd.Process.Pid)+"\r\n") {
				return true
			}
			s.Kill() // another server answers on the port
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Fatalf("redis-server --sentinel on port %d did not answer within 30s; its log:\n%s", s.Port, s.Log())
	return false
}
