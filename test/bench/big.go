package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lateWindow is the "late" meter's limit: 100/1s, concurrency 1 (the default).
const (
	lateN   = 100
	latePer = time.Second
)

// lateness measures how long after the instant the limit admits a grant
// its open returns, with cfg.lateWaiters waiters on the "late" meter.
//
// Calls are instant (each client closes right after its open returns) and
// the meter is 100/1s with concurrency=1 and count=completion, so the k-th
// grant (in grant order, which is open-return order since grants are
// serialized) is admissible at max(its arrival, completion of call k-1,
// completion of call k-100 + 1s). Completion is the client's own time just
// before its close; the lateness therefore includes the RELEASE's trip to
// the daemon, as a user would see it. All times are CLOCK_REALTIME, unix ns.
func (b *bench) lateness() error {
	procs := max(1, b.cfg.lateWaiters/b.cfg.lateThreads)
	n := procs * b.cfg.lateThreads
	b.progress("grant lateness: %d waiters (%d processes × %d threads) on late=100/1s", n, procs, b.cfg.lateThreads)
	dir := filepath.Join(b.main.mnt, "late")
	// Hold the meter until every waiter is queued, so that starting the
	// client processes does not compete with the grants being measured.
	holdOpen := time.Now().UnixNano()
	hold, err := syscall.Open(filepath.Join(dir, "acquire"), syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("hold late: %w", err)
	}
	type result struct {
		outs []string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		outs, err := runClients(procs, b.self, "client", "late", "-path", filepath.Join(dir, "acquire"),
			"-threads", strconv.Itoa(b.cfg.lateThreads))
		done <- result{outs, err}
	}()
	queued := waitStatus(filepath.Join(dir, "status"), "waiting", n, time.Minute)
	holdClose := time.Now().UnixNano()
	_ = syscall.Close(hold)
	res := <-done
	if res.err != nil {
		return res.err
	}
	if queued != nil {
		return queued
	}
	calls := []lateCall{{holdOpen, holdOpen, holdClose}}
	for _, o := range res.outs {
		for line := range strings.SplitSeq(o, "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && f[0] == "errors" {
				b.clientErrors("lateness", f[1])
				continue
			}
			if len(f) != 3 {
				return fmt.Errorf("late client said %q", line)
			}
			var c lateCall
			c.arrive, _ = strconv.ParseInt(f[0], 10, 64)
			c.grant, _ = strconv.ParseInt(f[1], 10, 64)
			c.close, _ = strconv.ParseInt(f[2], 10, 64)
			calls = append(calls, c)
		}
	}
	b.analyzeLate(calls)
	return nil
}

// lateCall is one call of the lateness run, unix ns: before its open,
// after the open returned, before its close.
type lateCall struct{ arrive, grant, close int64 }

// analyzeLate computes each grant's lateness (see lateness).
func (b *bench) analyzeLate(calls []lateCall) {
	slices.SortFunc(calls, func(x, y lateCall) int { return int(x.grant - y.grant) })
	var lat []float64
	byGate := map[string][]float64{}
	var csv strings.Builder
	csv.WriteString("k,arrive_ns,grant_ns,close_ns,admissible_ns,gate,lateness_us\n")
	early := 0
	for k, c := range calls {
		adm, gate := c.arrive, "arrival"
		if k > 0 && calls[k-1].close > adm {
			adm, gate = calls[k-1].close, "concurrency"
		}
		if k >= lateN && calls[k-lateN].close+latePer.Nanoseconds() > adm {
			adm, gate = calls[k-lateN].close+latePer.Nanoseconds(), "window"
		}
		l := float64(c.grant-adm) / 1e3 // µs
		fmt.Fprintf(&csv, "%d,%d,%d,%d,%d,%s,%.1f\n", k, c.arrive, c.grant, c.close, adm, gate, l)
		if k == 0 {
			continue // the holder's own grant is not measured
		}
		if l < 0 {
			early++
		}
		lat = append(lat, l)
		byGate[gate] = append(byGate[gate], l)
	}
	_ = os.WriteFile(filepath.Join(b.work, "lateness.csv"), []byte(csv.String()), 0o644)
	if early > 0 {
		b.suspect("lateness: %d grants returned before the instant the rule admits them (window or concurrency broken?)", early)
	}
	slices.Sort(lat)
	b.late = lateResult{n: len(lat), p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), max: lat[len(lat)-1], min: lat[0],
		span: time.Duration(calls[len(calls)-1].grant - calls[0].grant)}
	for _, g := range []string{"arrival", "concurrency", "window"} {
		xs := byGate[g]
		if len(xs) == 0 {
			continue
		}
		slices.Sort(xs)
		b.late.gates = append(b.late.gates, fmt.Sprintf("%s-gated %d: p50 %s, p99 %s, max %s",
			g, len(xs), us(quantile(xs, 0.5)), us(quantile(xs, 0.99)), us(xs[len(xs)-1])))
	}
}

type lateResult struct {
	n                  int
	p50, p99, max, min float64 // µs
	span               time.Duration
	gates              []string // the same by the term that set the admissible instant
}

// waitStatus polls a status file until key reaches want.
func waitStatus(path, key string, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if got := statusInt(string(data), key); got >= want {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s is %d after %s, want %d", path, key, got, timeout, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waiters queues cfg.waiters blocked opens on a concurrency=1 meter held by
// one holder, twice: all at once, to read the daemon's RSS with the queue;
// then one at a time (each once the previous shows in status), to check
// that grants follow arrival order exactly.
func (b *bench) waiters() error {
	n := b.cfg.waiters
	b.progress("%d blocked waiters on one meter", n)
	p, _, err := b.d.startRlfs("rlfs-waiters", b.cfg.rlfs, filepath.Join(b.work, "waiters.db"), filepath.Join(b.work, "mnt-waiters"), b.work, nil,
		"--meter", "w=concurrency=1")
	if err != nil {
		return err
	}
	defer b.stopDaemon(p)
	dir := filepath.Join(p.mnt, "w")
	if _, err := os.ReadFile(filepath.Join(dir, "status")); err != nil {
		return err
	}
	w := waitResult{n: n, rssBefore: rssKB(p.pid())}
	if w.bulk, err = b.fifoPhase(p, dir, false); err != nil {
		return fmt.Errorf("all at once: %w", err)
	}
	b.progress("%d blocked waiters, one at a time", n)
	if w.seq, err = b.fifoPhase(p, dir, true); err != nil {
		return fmt.Errorf("one at a time: %w", err)
	}
	w.rssAfter = rssKB(p.pid())
	b.wait = &w
	return nil
}

// fifoPhase runs the fifo client once.
func (b *bench) fifoPhase(p *proc, dir string, sequential bool) (fifoRun, error) {
	var r fifoRun
	cmd := exec.Command(b.self, "client", "fifo", "-path", filepath.Join(dir, "acquire"), "-status", filepath.Join(dir, "status"),
		"-n", strconv.Itoa(b.cfg.waiters), "-sequential="+strconv.FormatBool(sequential))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return r, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return r, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Env = clientEnv
	if err := cmd.Start(); err != nil {
		return r, err
	}
	timer := time.AfterFunc(3*clientTimeout, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	lines := bufio.NewScanner(stdout)
	field := func(prefix string) ([]string, error) {
		if !lines.Scan() {
			_ = cmd.Wait()
			return nil, fmt.Errorf("fifo client ended before %q: %s", prefix, strings.TrimSpace(stderr.String()))
		}
		f := strings.Fields(lines.Text())
		if len(f) < 2 || f[0] != prefix {
			return nil, fmt.Errorf("fifo client said %q, want %s", lines.Text(), prefix)
		}
		return f[1:], nil
	}
	f, err := field("ready")
	if err != nil {
		return r, err
	}
	ns, _ := strconv.ParseInt(f[0], 10, 64)
	r.enqueue = time.Duration(ns)
	r.rssWith = rssKB(p.pid())
	ents, err := os.ReadDir(filepath.Join(dir, "waiters"))
	if err != nil {
		return r, err
	}
	r.listed = len(ents)
	r.listSorted = slices.IsSortedFunc(ents, func(x, y os.DirEntry) int { return strings.Compare(x.Name(), y.Name()) })
	if _, err := fmt.Fprintln(stdin, "go"); err != nil {
		return r, err
	}
	if f, err = field("done"); err != nil {
		return r, err
	}
	if len(f) != 4 {
		return r, fmt.Errorf("fifo client said %q", lines.Text())
	}
	ns, _ = strconv.ParseInt(f[0], 10, 64)
	r.grant = time.Duration(ns)
	r.mismatches, _ = strconv.Atoi(f[1])
	r.granted, _ = strconv.Atoi(f[2])
	b.clientErrors(fmt.Sprintf("%d waiters", b.cfg.waiters), f[3])
	if err := cmd.Wait(); err != nil {
		return r, fmt.Errorf("fifo client: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return r, nil
}

type waitResult struct {
	n                   int
	rssBefore, rssAfter int // KiB
	bulk, seq           fifoRun
}

// fifoRun is one pass of the fifo client.
type fifoRun struct {
	granted, mismatches, listed int
	listSorted                  bool
	rssWith                     int // KiB
	enqueue, grant              time.Duration
}

// fifo is true when every waiter was granted in its arrival order and
// waiters/ listed them all in order.
func (w *waitResult) fifo() bool {
	r := w.seq
	return r.mismatches == 0 && r.granted == w.n && r.listed == w.n && r.listSorted
}

// meters creates cfg.meters meters (a --config file), then restarts the
// daemon on that database cfg.meterStarts times, timing start-up and `ls`.
func (b *bench) meters() error {
	n := b.cfg.meters
	b.progress("%d meters: create, %d restarts", n, b.cfg.meterStarts)
	var toml strings.Builder
	toml.WriteString("[meters]\n")
	for i := range n {
		fmt.Fprintf(&toml, "m%05d = \"concurrency=1\"\n", i)
	}
	conf := filepath.Join(b.work, "meters.toml")
	if err := os.WriteFile(conf, []byte(toml.String()), 0o644); err != nil {
		return err
	}
	db, mnt := filepath.Join(b.work, "meters.db"), filepath.Join(b.work, "mnt-meters")
	p, took, err := b.d.startRlfs("rlfs-meters-create", b.cfg.rlfs, db, mnt, b.work, nil, "--config", conf)
	if err != nil {
		return err
	}
	m := meterResult{n: n, create: took}
	b.stopDaemon(p)
	for i := range b.cfg.meterStarts {
		p, took, err := b.d.startRlfs(fmt.Sprintf("rlfs-meters-%d", i+1), b.cfg.rlfs, db, mnt, b.work, nil)
		if err != nil {
			return err
		}
		m.starts = append(m.starts, took.Seconds()*1e3)
		m.rssStart = append(m.rssStart, float64(rssKB(p.pid())))
		cold, entries, err := timeLs(mnt)
		if err != nil {
			b.stopDaemon(p)
			return err
		}
		if entries != n {
			b.suspect("ls of %d meters listed %d entries", n, entries)
		}
		m.lsCold = append(m.lsCold, cold)
		for range 5 {
			warm, _, err := timeLs(mnt)
			if err != nil {
				b.stopDaemon(p)
				return err
			}
			m.lsWarm = append(m.lsWarm, warm)
		}
		m.rssLs = append(m.rssLs, float64(rssKB(p.pid())))
		b.stopDaemon(p)
	}
	b.met = &m
	return nil
}

type meterResult struct {
	n                                       int
	create                                  time.Duration
	starts, lsCold, lsWarm, rssStart, rssLs []float64 // ms, ms, ms, KiB, KiB
}

// timeLs runs `ls DIR` and returns its wall time in ms and the entries.
func timeLs(dir string) (float64, int, error) {
	cmd := exec.Command("ls", dir)
	t0 := time.Now()
	out, err := cmd.Output()
	took := time.Since(t0)
	if err != nil {
		return 0, 0, fmt.Errorf("ls %s: %w", dir, err)
	}
	return took.Seconds() * 1e3, strings.Count(string(out), "\n"), nil
}

// stopDaemon stops p and notes a daemon that did not stop cleanly.
func (b *bench) stopDaemon(p *proc) {
	if err := p.stop(); err != nil {
		b.suspect("%v", err)
	}
}
