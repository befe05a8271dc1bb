package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// samples holds one value per round for each key, such as "a.raw.rlfs".
type samples map[string][]float64

func (s samples) add(key string, v float64) { s[key] = append(s[key], v) }

// med is the median of key's values (NaN if none).
func (s samples) med(key string) float64 { return median(s[key]) }

// ratio is the median over rounds of a/b measured in the same round.
func (s samples) ratio(a, b string) float64 {
	xs, ys := s[a], s[b]
	var rs []float64
	for i := range min(len(xs), len(ys)) {
		if ys[i] > 0 {
			rs = append(rs, xs[i]/ys[i])
		}
	}
	return median(rs)
}

// target is a file whose open+close cycle is measured.
type target struct {
	name string // rlfs, typical, minimal
	path string
	pid  int // the daemon serving path
}

// rotated returns ts starting at index r mod len, so each round measures
// the targets in another order.
func rotated(ts []target, r int) []target {
	k := r % len(ts)
	return append(slices.Clone(ts[k:]), ts[:k]...)
}

// startMain mounts the rlfs daemons (sync normal and full) and both floors;
// with -rlfs-before, the same two daemons of that binary too.
func (b *bench) startMain() error {
	var err error
	if b.main, b.full, err = b.startMainPair("", b.cfg.rlfs); err != nil {
		return err
	}
	typ, err := b.d.startFloor(b.self, "typical", filepath.Join(b.work, "mnt-typical"), b.work)
	if err != nil {
		return err
	}
	minimal, err := b.d.startFloor(b.self, "minimal", filepath.Join(b.work, "mnt-minimal"), b.work)
	if err != nil {
		return err
	}
	b.targets = []target{
		{"rlfs", filepath.Join(b.main.mnt, "idle", "acquire"), b.main.pid()},
		{"typical", filepath.Join(typ.mnt, "file"), typ.pid()},
		{"minimal", filepath.Join(minimal.mnt, "file"), minimal.pid()},
	}
	if b.cfg.rlfsBefore == "" {
		return nil
	}
	if b.before.main, b.before.full, err = b.startMainPair("-before", b.cfg.rlfsBefore); err != nil {
		return err
	}
	b.targets = append(b.targets, target{"before", filepath.Join(b.before.main.mnt, "idle", "acquire"), b.before.main.pid()})
	return nil
}

// startMainPair starts the daemons of the rounds for binary bin, their
// names and files suffixed with suffix: sync normal (meters idle, fair,
// late) and sync full (idle).
func (b *bench) startMainPair(suffix, bin string) (main, full *proc, err error) {
	main, _, err = b.d.startRlfs("rlfs-main"+suffix, bin, filepath.Join(b.work, "main"+suffix+".db"), filepath.Join(b.work, "mnt-rlfs"+suffix), b.work, nil,
		"--meter", "idle=concurrency=0", "--meter", "fair=concurrency=1", "--meter", "late=100/1s")
	if err != nil {
		return nil, nil, err
	}
	full, _, err = b.d.startRlfs("rlfs-full"+suffix, bin, filepath.Join(b.work, "full"+suffix+".db"), filepath.Join(b.work, "mnt-full"+suffix), b.work, nil,
		"--sync", "full", "--meter", "idle=concurrency=0")
	return main, full, err
}

// rounds runs measurements a, b, g and c cfg.rounds times, alternating
// rlfs and the floors within each round.
func (b *bench) rounds() error {
	for r := range b.cfg.rounds {
		b.progress("round %d/%d", r+1, b.cfg.rounds)
		for _, api := range []string{"raw", "os", "python"} {
			for _, t := range rotated(b.targets, r) {
				us, err := b.cycle(api, t.path)
				if err != nil {
					return fmt.Errorf("idle cycle (%s) on %s: %w", api, t.name, err)
				}
				b.s.add("a."+api+"."+t.name, us)
			}
		}
		if err := b.redisRound(r); err != nil {
			return err
		}
		for _, n := range []int{1, 4, 16} {
			for _, t := range rotated(b.targets, r) {
				rate, cpu, err := b.throughputOnce(n, t)
				if err != nil {
					return fmt.Errorf("throughput of %d on %s: %w", n, t.name, err)
				}
				b.s.add(fmt.Sprintf("b.%d.%s", n, t.name), rate)
				b.s.add(fmt.Sprintf("cpu.%d.%s", n, t.name), cpu)
			}
		}
		syncs := []target{b.targets[0], {"full", filepath.Join(b.full.mnt, "idle", "acquire"), b.full.pid()}}
		syncs[0].name = "normal"
		if bf := b.before; bf != nil {
			syncs = append(syncs, target{"normal.before", filepath.Join(bf.main.mnt, "idle", "acquire"), bf.main.pid()},
				target{"full.before", filepath.Join(bf.full.mnt, "idle", "acquire"), bf.full.pid()})
		}
		for _, n := range []int{1, 4} {
			for _, t := range rotated(syncs, r) {
				rate, _, err := b.throughputOnce(n, t)
				if err != nil {
					return fmt.Errorf("sync=%s with %d clients: %w", t.name, n, err)
				}
				b.s.add(fmt.Sprintf("g.%d.%s", n, t.name), 1e6/rate)
			}
		}
		if err := b.fairness(b.main, ""); err != nil {
			return fmt.Errorf("fairness: %w", err)
		}
		if b.before != nil {
			if err := b.fairness(b.before.main, ".before"); err != nil {
				return fmt.Errorf("fairness (before): %w", err)
			}
		}
	}
	return nil
}

const pyCycle = `import os, sys, time
p, n, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
o, c, f = os.open, os.close, os.O_RDONLY
for _ in range(w): c(o(p, f))
t = time.perf_counter_ns()
for _ in range(n): c(o(p, f))
print((time.perf_counter_ns() - t) // n, "none")
`

// cycle measures one client's open+close cycle on path, in µs.
func (b *bench) cycle(api, path string) (float64, error) {
	var argv []string
	if api == "python" {
		argv = []string{"python3", "-c", pyCycle, path, strconv.Itoa(b.cfg.pyCycles), strconv.Itoa(b.cfg.pyCycles / 10)}
	} else {
		argv = []string{b.self, "client", "cycle", "-api", api, "-path", path,
			"-n", strconv.Itoa(b.cfg.cycles), "-warm", strconv.Itoa(b.cfg.cycles / 10)}
	}
	out, err := runClients(1, argv...)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(out[0])
	if len(f) != 2 {
		return 0, fmt.Errorf("client said %q", out[0])
	}
	b.clientErrors("idle cycle "+api, f[1])
	ns, err := strconv.ParseFloat(f[0], 64)
	return ns / 1e3, err
}

// loop runs n looping clients on path for dur, all starting at the same
// instant, and returns each one's cycle count.
func (b *bench) loop(what string, n int, path string, dur time.Duration) ([]float64, error) {
	start := time.Now().Add(150*time.Millisecond + time.Duration(n)*10*time.Millisecond)
	outs, err := runClients(n, b.self, "client", "loop", "-path", path,
		"-start", strconv.FormatInt(start.UnixNano(), 10), "-dur", dur.String())
	if err != nil {
		return nil, err
	}
	counts := make([]float64, n)
	for i, o := range outs {
		f := strings.Fields(o)
		if len(f) != 2 {
			return nil, fmt.Errorf("client said %q", o)
		}
		b.clientErrors(what, f[1])
		if counts[i], err = strconv.ParseFloat(f[0], 64); err != nil {
			return nil, err
		}
	}
	return counts, nil
}

// throughput is cycles per second summed over n clients, and the CPU time
// the daemon serving t spent per cycle, in µs.
func (b *bench) throughput(n int, t target, dur time.Duration) (float64, float64, error) {
	cpu0 := cpuTicks(t.pid)
	counts, err := b.loop(fmt.Sprintf("throughput %d", n), n, t.path, dur)
	if err != nil {
		return 0, 0, err
	}
	cpu := float64(cpuTicks(t.pid)-cpu0) * 1e6 / clockTicks
	total := 0.0
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0, 0, errNoCycle
	}
	return total / dur.Seconds(), cpu / total, nil
}

// throughputOnce is throughput over cfg.dur, measured again once when no
// client completed a cycle in time (a client process that started after
// the end, on a busy machine, or a daemon that stalled for the whole
// duration); the retry is noted among the problems.
func (b *bench) throughputOnce(n int, t target) (float64, float64, error) {
	rate, cpu, err := b.throughput(n, t, b.cfg.dur)
	if errors.Is(err, errNoCycle) {
		b.suspect("throughput of %d on %s: no cycle completed within %s once; measured again", n, t.name, b.cfg.dur)
		rate, cpu, err = b.throughput(n, t, b.cfg.dur)
	}
	return rate, cpu, err
}

var errNoCycle = errors.New("no cycle completed")

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on Linux).
const clockTicks = 100

// cpuTicks is the user+system time of pid so far, in clock ticks.
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime
}

// fairness runs 4 looping clients on the concurrency=1 meter of main; the
// figure's key ends in suffix.
func (b *bench) fairness(main *proc, suffix string) error {
	counts, err := b.loop("fairness", 4, filepath.Join(main.mnt, "fair", "acquire"), b.cfg.fairDur)
	if err != nil {
		return err
	}
	lo, hi := slices.Min(counts), slices.Max(counts)
	ratio := hi / max(lo, 1)
	if lo == 0 {
		ratio = hi // starved
	}
	b.s.add("c.maxmin"+suffix, ratio)
	if suffix == "" {
		b.fairCounts = append(b.fairCounts, counts)
	}
	return nil
}

// clientErrors adds up the errors that clients reported ("none" or
// "EAGAIN=3,EINTR=1"), per measurement.
func (b *bench) clientErrors(what, errs string) {
	if errs == "none" {
		return
	}
	if b.clientErrs == nil {
		b.clientErrs = map[string]map[string]int{}
	}
	if b.clientErrs[what] == nil {
		b.clientErrs[what] = map[string]int{}
	}
	for item := range strings.SplitSeq(errs, ",") {
		name, count, _ := strings.Cut(item, "=")
		n, _ := strconv.Atoi(count)
		b.clientErrs[what][name] += n
	}
	fmt.Fprintf(os.Stderr, "bench: note: %s: clients reported %s\n", what, errs)
}

// reportClientErrors turns the added-up client errors into notes.
func (b *bench) reportClientErrors() {
	whats := slices.Sorted(maps.Keys(b.clientErrs))
	for _, what := range whats {
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(b.clientErrs[what])) {
			parts = append(parts, fmt.Sprintf("%s ×%d", name, b.clientErrs[what][name]))
		}
		b.suspect("%s: clients saw %s (EINTR is retried; a retried blocking open rejoins the back of the queue)", what, strings.Join(parts, ", "))
	}
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: %s  [%s]\n", fmt.Sprintf(format, args...), time.Since(b.began).Round(time.Second))
}

func (b *bench) suspect(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for _, s := range b.suspicious {
		if s == msg {
			return
		}
	}
	b.suspicious = append(b.suspicious, msg)
	fmt.Fprintln(os.Stderr, "bench: note:", msg)
}

// goTool finds the go command: on PATH, else beside GOROOT.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}
