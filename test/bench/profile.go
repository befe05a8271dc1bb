package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// profileCase is one load under which the daemon is profiled.
type profileCase struct {
	name    string // file stem and daemon name
	what    string
	args    []string // rlfs mount flags
	clients int
	redis   bool // on a Redis of its own (--store) rather than SQLite
}

var profileCases = []profileCase{
	{"idle", "idle-meter cycle, 1 client process, --sync normal", []string{"--meter", "idle=concurrency=0"}, 1, false},
	{"full", "idle-meter cycle, 4 client processes, --sync full", []string{"--sync", "full", "--meter", "idle=concurrency=0"}, 4, false},
	{"redis", "idle-meter cycle, 1 client process, --store redis://", []string{"--meter", "idle=concurrency=0"}, 1, true},
}

type profResult struct {
	profileCase
	cycleUs float64 // wall time per cycle (1/throughput)
	cpuUs   float64 // daemon CPU per cycle
	// perCycle counts the daemon's system calls per cycle (perf stat);
	// empty when perf is not available.
	perCycle []string
	tops     []string // -top, -top -cum, -top -cum (long, for the breakdown)
	// redis: what Redis ran meanwhile (INFO commandstats), per cycle
	fcalls, fcallUs, redisUs float64
}

// profile runs each profileCase against the profiling build of rlfs
// (cmd/rlfs plus test/bench/profile_hook.go.in, see run.sh), which writes a
// CPU profile between SIGUSR1 and SIGUSR2, renders it with pprof -top, and
// counts the daemon's system calls with perf stat where perf works.
func (b *bench) profile() error {
	if b.cfg.rlfsProf == "" {
		return fmt.Errorf("no profiling build given (-rlfs-prof)")
	}
	for _, c := range profileCases {
		r, err := b.profileOne(c)
		if err != nil {
			return fmt.Errorf("%s: %w", c.what, err)
		}
		b.profs = append(b.profs, r)
	}
	return nil
}

func (b *bench) profileOne(c profileCase) (profResult, error) {
	r := profResult{profileCase: c}
	b.progress("profile: %s, %s", c.what, b.cfg.profileDur)
	out := filepath.Join(b.work, "rlfs-"+c.name+".pprof")
	env := []string{"RLFS_BENCH_CPUPROFILE=" + out}
	var p *proc
	var srv *redisServer
	var err error
	if c.redis {
		if srv, err = b.startRedis("redis-profile"); err != nil {
			return r, err
		}
		defer b.stopDaemon(srv.proc)
		p, err = b.startRlfsRedis("rlfs-profile-"+c.name, b.cfg.rlfsProf, srv, env, c.args...)
	} else {
		p, _, err = b.d.startRlfs("rlfs-profile-"+c.name, b.cfg.rlfsProf, filepath.Join(b.work, "profile-"+c.name+".db"),
			filepath.Join(b.work, "mnt-profile-"+c.name), b.work, env, c.args...)
	}
	if err != nil {
		return r, err
	}
	defer b.stopDaemon(p)
	var before cmdStats
	if srv != nil {
		if before, err = commandStats(srv.addr); err != nil {
			return r, err
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return r, err
	}
	counter := startSyscallCount(p.pid(), filepath.Join(b.work, "perf-"+c.name+".txt"))
	rate, cpu, err := b.throughput(c.clients, target{c.name, filepath.Join(p.mnt, "idle", "acquire"), p.pid()}, b.cfg.profileDur)
	counts := counter.stop()
	if err != nil {
		return r, err
	}
	if err := p.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		return r, err
	}
	if err := waitFile(out, 10*time.Second); err != nil {
		return r, err
	}
	r.cycleUs, r.cpuUs = 1e6/rate, cpu
	cycles := rate * b.cfg.profileDur.Seconds()
	if srv != nil {
		after, err := commandStats(srv.addr)
		if err != nil {
			return r, err
		}
		d := after.minus(before)
		total := 0.0
		for _, v := range d {
			total += v.usec
		}
		r.fcalls, r.redisUs = d["fcall"].calls/cycles, total/cycles
		if f := d["fcall"]; f.calls > 0 {
			r.fcallUs = f.usec / f.calls
		}
	}
	for _, name := range syscallNames {
		if n, ok := counts[name]; ok {
			r.perCycle = append(r.perCycle, fmt.Sprintf("%s %.2f", name, n/cycles))
		}
	}
	for _, args := range [][]string{{"-top", "-nodecount=25"}, {"-top", "-cum", "-nodecount=40"}, {"-top", "-cum", "-nodecount=400"}} {
		cmd := exec.Command(goTool(), append(append([]string{"tool", "pprof"}, args...), b.cfg.rlfsProf, out)...)
		text, err := cmd.Output()
		if err != nil {
			return r, fmt.Errorf("go tool pprof %s: %w", strings.Join(args, " "), err)
		}
		r.tops = append(r.tops, strings.TrimRight(string(text), "\n"))
	}
	return r, nil
}

func waitFile(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not written within %s", path, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syscallNames are the daemon's system calls counted per cycle: requests
// read from /dev/fuse, replies written, and the store's writes and syncs.
var syscallNames = []string{"read", "writev", "pwrite64", "write", "fsync", "fdatasync"}

// syscallCount is a running `perf stat` on one process; the zero value
// (perf missing or refused) counts nothing.
type syscallCount struct {
	cmd *exec.Cmd
	out string
}

func startSyscallCount(pid int, out string) *syscallCount {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return &syscallCount{}
	}
	var events []string
	for _, n := range syscallNames {
		events = append(events, "syscalls:sys_enter_"+n)
	}
	cmd := exec.Command(perf, "stat", "-x", ",", "-o", out, "-e", strings.Join(events, ","), "-p", strconv.Itoa(pid))
	if err := cmd.Start(); err != nil {
		return &syscallCount{}
	}
	time.Sleep(100 * time.Millisecond) // perf attaches
	return &syscallCount{cmd: cmd, out: out}
}

// stop ends perf and returns the counts by system call name.
func (s *syscallCount) stop() map[string]float64 {
	counts := map[string]float64{}
	if s.cmd == nil {
		return counts
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	_ = s.cmd.Wait()
	data, err := os.ReadFile(s.out)
	if err != nil {
		return counts
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		name, ok := strings.CutPrefix(f[2], "syscalls:sys_enter_")
		if n, err := strconv.ParseFloat(f[0], 64); ok && err == nil {
			counts[name] = n
		}
	}
	return counts
}
