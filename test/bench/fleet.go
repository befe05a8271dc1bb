package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rlfs/rlfs/test/gcra"
)

// Fleet rows (issue 9): rlfs with --store redis:// against the SQLite
// daemon of the same run (r, measured round by round with the floors), and
// a fleet of 3 hosts on one Redis (x, step "fleet").

// startRedisMain starts the Redis of the rounds and a daemon on it, host
// "bench-r", with the same idle meter as the SQLite daemon; with
// -rlfs-before, a second Redis with that binary's daemon ("bench-r-before").
func (b *bench) startRedisMain() error {
	r, err := b.startRedis("redis-main")
	if err != nil {
		return err
	}
	b.redis = r
	if b.onRedis, err = b.startIdleOnRedis("bench-r", b.cfg.rlfs, r); err != nil {
		return err
	}
	mnt := filepath.Join(b.work, "mnt-gcra")
	fl, err := b.d.startFloor(b.self, "gcra", mnt, b.work, "-redis", r.addr)
	if err != nil {
		return err
	}
	b.gcraFloor = &target{"gcrafloor", filepath.Join(mnt, "file"), fl.pid()}
	mnt = filepath.Join(b.work, "mnt-leased")
	if fl, err = b.d.startFloor(b.self, "leased", mnt, b.work, "-redis", r.addr); err != nil {
		return err
	}
	b.leasedFloor = &target{"leasedfloor", filepath.Join(mnt, "file"), fl.pid()}
	if b.before == nil {
		return nil
	}
	rb, err := b.startRedis("redis-main-before")
	if err != nil {
		return err
	}
	b.before.onRedis, err = b.startIdleOnRedis("bench-r-before", b.cfg.rlfsBefore, rb)
	return err
}

func (b *bench) startIdleOnRedis(host, bin string, r *redisServer) (*target, error) {
	p, err := b.startRlfsRedis(host, bin, r, nil, "--meter", "idle=concurrency=0")
	if err != nil {
		return nil, err
	}
	return &target{"redis", filepath.Join(p.mnt, "idle", "acquire"), p.pid()}, nil
}

// rttPings is how many PINGs one RTT figure is the median of.
const rttPings = 2000

// redisRound measures, in round r, the Redis round trip and the idle cycle
// of the daemon on Redis and of the SQLite daemon (and those of the other
// binary), one after the other in an order that rotates from round to round.
func (b *bench) redisRound(r int) error {
	if b.onRedis == nil {
		return nil
	}
	v, err := rtt(b.redis.addr, rttPings)
	if err != nil {
		return fmt.Errorf("redis round trip: %w", err)
	}
	b.s.add("r.rtt", v)
	sq := b.targets[0]
	sq.name = "sqlite"
	ts := []target{sq, *b.onRedis, *b.gcraFloor, *b.leasedFloor}
	if bf := b.before; bf != nil && bf.onRedis != nil {
		on := *bf.onRedis
		on.name = "redis.before"
		ts = append(ts, target{"sqlite.before", filepath.Join(bf.main.mnt, "idle", "acquire"), bf.main.pid()}, on)
	}
	for _, t := range rotated(ts, r) {
		us, err := b.cycle("raw", t.path)
		if err != nil {
			return fmt.Errorf("idle cycle on %s: %w", t.name, err)
		}
		b.s.add("r."+t.name, us)
	}
	// the cost above the SQLite cycle, in round trips of the same round
	n := len(b.s["r.rtt"]) - 1
	b.s.add("r.extra", (b.s["r.redis"][n]-b.s["r.sqlite"][n])/b.s["r.rtt"][n])
	if len(ts) > 4 {
		b.s.add("r.extra.before", (b.s["r.redis.before"][n]-b.s["r.sqlite.before"][n])/b.s["r.rtt"][n])
	}
	return nil
}

// fleetHosts are the host names of the fleet step.
var fleetHosts = []string{"host-a", "host-b", "host-c"}

// fleetResult holds what the fleet step measured once.
type fleetResult struct {
	perHost  [][]float64 // round → host → grants/s
	handoffs []float64   // µs, in the order made
	dirs     [2][]float64
	// commands counted over grants sequential grants on host-a
	grants  int
	client  map[string]int // MONITOR: commands clients sent, by name
	inside  cmdStats       // INFO commandstats delta (functions' commands included)
	fcallUs float64        // server time per FCALL (commandstats)
	load    cmdStats       // INFO commandstats delta over the last throughput round
	loadN   float64        // grants of that round
	// winCalls: the calls in issue 17's window meter after its rounds
	winCalls int
}

// fleet runs 3 daemons on one Redis: throughput of fleetProcs processes per
// host on a concurrency=0 meter (cfg.rounds rounds), cross-host handoffs on
// a concurrency=1 meter, and the Redis commands per grant. With
// -rlfs-before, a second fleet of that binary on its own Redis is measured
// alike, its throughput in the same rounds.
func (b *bench) fleet() error {
	c := b.cfg
	b.progress("fleet: 3 hosts on one Redis")
	fleets := []*fleetRun{{bin: c.rlfs, res: &fleetResult{}}}
	b.fl = fleets[0].res
	if b.before != nil {
		b.before.fl = &fleetResult{}
		fleets = append(fleets, &fleetRun{suffix: "-before", key: ".before", bin: c.rlfsBefore, res: b.before.fl})
	}
	for _, f := range fleets {
		if err := b.startFleet(f); err != nil {
			return err
		}
	}
	for round := range c.rounds {
		for i := range fleets {
			f := fleets[(i+round)%len(fleets)]
			b.progress("fleet%s throughput round %d/%d: %d × %d processes for %s", f.suffix, round+1, c.rounds, len(f.mnts), c.fleetProcs, c.fleetDur)
			if err := b.fleetRound(f); err != nil {
				return err
			}
		}
	}
	for _, f := range fleets {
		if err := b.issueLoad(f); err != nil {
			return err
		}
	}
	for _, f := range fleets {
		b.progress("fleet%s: %d cross-host handoffs", f.suffix, c.handoffs)
		if err := b.handoffs(f.mnts, f.res); err != nil {
			return err
		}
		b.progress("fleet%s: Redis commands over %d grants", f.suffix, c.grants)
		if err := b.countCommands(f.redis, f.mnts[0], f.res); err != nil {
			return err
		}
	}
	return nil
}

// fleetRun is one fleet of the fleet step: its binary, Redis and mounts.
type fleetRun struct {
	suffix, key, bin string // suffix of names, of sample keys
	redis            *redisServer
	mnts             []string
	res              *fleetResult
}

// startFleet starts f's Redis and its 3 hosts.
func (b *bench) startFleet(f *fleetRun) error {
	r, err := b.startRedis("redis-fleet" + f.suffix)
	if err != nil {
		return err
	}
	f.redis = r
	for _, h := range fleetHosts {
		p, err := b.startRlfsRedis(h+f.suffix, f.bin, r, nil, "--meter", "thr=concurrency=0", "--meter", "hand=concurrency=1",
			"--meter", "conc=concurrency=5000", "--meter", "win=1000000/1h,concurrency=0")
		if err != nil {
			return err
		}
		f.mnts = append(f.mnts, p.mnt)
	}
	return nil
}

// fleetRound is one throughput round of f, with the commands Redis ran
// and its CPU per grant, then (in the same round, on the same Redis) the
// GCRA baseline (gcra.go) for as long.
func (b *bench) fleetRound(f *fleetRun) error {
	before, err := commandStats(f.redis.addr)
	if err != nil {
		return err
	}
	rates, grants, cpu, reads, err := b.loopCost(f.redis.addr, f.mnts, "thr", b.cfg.fleetProcs)
	if err != nil {
		return err
	}
	after, err := commandStats(f.redis.addr)
	if err != nil {
		return err
	}
	b.s.add("x.cpu"+f.key, cpu)
	b.s.add("x.reads"+f.key, reads)
	grate, gcpu, greads, err := gcraRound(f.redis.addr, len(f.mnts), b.cfg.fleetProcs, b.cfg.fleetDur, gcra.Function, gcra.Args)
	if err != nil {
		return err
	}
	_, rcpu, _, err := gcraRound(f.redis.addr, len(f.mnts), b.cfg.fleetProcs, b.cfg.fleetDur, gcra.RateFunction, gcra.RateArgs)
	if err != nil {
		return err
	}
	lcpu, err := b.gcraUnderLoad(f.redis.addr, len(f.mnts), b.cfg.fleetProcs)
	if err != nil {
		return err
	}
	b.s.add("x.gcra.loadcpu"+f.key, lcpu)
	b.s.add("x.cpuratio.load"+f.key, cpu/lcpu)
	b.s.add("x.gcra.rate"+f.key, grate)
	b.s.add("x.gcra.cpu"+f.key, gcpu)
	b.s.add("x.gcra.reads"+f.key, greads)
	b.s.add("x.gcra.ratecpu"+f.key, rcpu)
	b.s.add("x.cpuratio"+f.key, cpu/gcpu)
	b.s.add("x.cpuratio.rate"+f.key, cpu/rcpu)
	f.res.perHost = append(f.res.perHost, rates)
	b.s.add("x.total"+f.key, grants/b.cfg.fleetDur.Seconds())
	f.res.load, f.res.loadN = after.minus(before), grants
	return nil
}

// fleetLoop runs procs looping clients on meter of each of mnts for
// fleetDur, all starting at one instant, and returns each host's grants
// per second.
func (b *bench) fleetLoop(mnts []string, meter string, procs int) ([]float64, error) {
	c := b.cfg
	n := procs * len(mnts)
	start := time.Now().Add(300*time.Millisecond + time.Duration(n)*10*time.Millisecond)
	rates := make([]float64, len(mnts))
	errs := make([]error, len(mnts))
	var wg sync.WaitGroup
	for i, m := range mnts {
		wg.Go(func() {
			outs, err := runClients(procs, b.self, "client", "loop", "-path", filepath.Join(m, meter, "acquire"),
				"-start", strconv.FormatInt(start.UnixNano(), 10), "-dur", c.fleetDur.String())
			if err != nil {
				errs[i] = err
				return
			}
			for _, o := range outs {
				f := strings.Fields(o)
				if len(f) != 2 {
					errs[i] = fmt.Errorf("client said %q", o)
					return
				}
				b.clientErrors("fleet loop on "+meter, f[1])
				v, _ := strconv.ParseFloat(f[0], 64)
				rates[i] += v / c.fleetDur.Seconds()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return rates, nil
}

// loopCost runs fleetLoop and returns, besides each host's grants per
// second, the grants made, and Redis's CPU (µs) and socket reads per grant
// over the loop.
func (b *bench) loopCost(addr string, mnts []string, meter string, procs int) (rates []float64, grants, cpu, reads float64, err error) {
	c0, err := redisCounters(addr)
	if err != nil {
		return nil, 0, 0, 0, err
	}
	if rates, err = b.fleetLoop(mnts, meter, procs); err != nil {
		return nil, 0, 0, 0, err
	}
	c1, err := redisCounters(addr)
	if err != nil {
		return nil, 0, 0, 0, err
	}
	for _, v := range rates {
		grants += v * b.cfg.fleetDur.Seconds()
	}
	n := max(grants, 1)
	return rates, grants, (c1.cpu - c0.cpu) * 1e6 / n, (c1.reads - c0.reads) / n, nil
}

// issueProcs is how many processes per host issue 17's load runs (on 2
// hosts).
const issueProcs = 4

// issueLoad measures Redis's CPU per grant as issue 17 did (rows x6): 2
// hosts × 4 processes looping on a concurrency=5000 meter, then on a
// 1000000/1h,concurrency=0 meter that holds 2,000 calls before the first
// round, each for fleetDur, then in the same round the bare GCRA decision
// on 2 clients × 4 goroutines for as long; the ratio is each round's.
func (b *bench) issueLoad(f *fleetRun) error {
	c := b.cfg
	mnts := f.mnts[:2]
	b.progress("fleet%s: issue 17's load: fill win with 2000 calls", f.suffix)
	out, err := runClients(1, b.self, "client", "cycle", "-api", "raw", "-path", filepath.Join(mnts[0], "win", "acquire"),
		"-n", "2000", "-warm", "0")
	if err != nil {
		return fmt.Errorf("fill win: %w", err)
	}
	if fl := strings.Fields(out[0]); len(fl) != 2 || fl[1] != "none" {
		return fmt.Errorf("fill win: client said %q", out[0])
	}
	f.res.winCalls = 2000
	for round := range c.rounds {
		for _, m := range []struct{ key, meter string }{{"c", "conc"}, {"w", "win"}} {
			b.progress("fleet%s: issue 17's load round %d/%d on %s: 2 hosts × %d processes for %s", f.suffix, round+1, c.rounds, m.meter, issueProcs, c.fleetDur)
			_, grants, cpu, _, err := b.loopCost(f.redis.addr, mnts, m.meter, issueProcs)
			if err != nil {
				return err
			}
			if m.meter == "win" {
				f.res.winCalls += int(grants)
			}
			_, gcpu, _, err := gcraRound(f.redis.addr, len(mnts), issueProcs, c.fleetDur, gcra.Function, gcra.Args)
			if err != nil {
				return err
			}
			lcpu, err := b.gcraUnderLoad(f.redis.addr, len(mnts), issueProcs)
			if err != nil {
				return err
			}
			k := "x6." + m.key
			b.s.add(k+".loadgcra"+f.key, lcpu)
			b.s.add(k+".loadratio"+f.key, cpu/lcpu)
			b.s.add(k+".cpu"+f.key, cpu)
			b.s.add(k+".gcra"+f.key, gcpu)
			b.s.add(k+".ratio"+f.key, cpu/gcpu)
			b.s.add(k+".rate"+f.key, grants/c.fleetDur.Seconds())
		}
	}
	return nil
}

// gcraUnderLoad runs the bare GCRA baseline on addr while the machine
// carries x1's load without Redis: as many SQLite daemons as the fleet has
// hosts, each with as many client processes looping on its idle meter for
// as long. The fleet's grants are measured with 24 processes and 3 daemons
// busy on the same cores as Redis, the baseline alone is not: this one
// shares the cores alike. It returns Redis's CPU per decision (µs). A load
// client that reports an error voids the figure (an error is no load).
func (b *bench) gcraUnderLoad(addr string, hosts, procs int) (float64, error) {
	c := b.cfg
	if len(b.loadPaths) < hosts {
		for i := len(b.loadPaths); i < hosts; i++ {
			name := "rlfs-load" + strconv.Itoa(i)
			p, _, err := b.d.startRlfs(name, c.rlfs, filepath.Join(b.work, name+".db"), filepath.Join(b.work, "mnt-"+name), b.work, nil,
				"--meter", "idle=concurrency=0")
			if err != nil {
				return 0, fmt.Errorf("GCRA's load: %w", err)
			}
			b.loadPaths = append(b.loadPaths, filepath.Join(p.mnt, "idle", "acquire"))
		}
	}
	lead := 300*time.Millisecond + time.Duration(procs*hosts)*10*time.Millisecond
	start := time.Now().Add(lead)
	errs := make(chan error, hosts)
	for _, path := range b.loadPaths[:hosts] {
		go func() {
			outs, err := runClients(procs, b.self, "client", "loop", "-path", path,
				"-start", strconv.FormatInt(start.UnixNano(), 10), "-dur", c.fleetDur.String())
			for _, o := range outs {
				if f := strings.Fields(o); err == nil && len(f) == 2 && f[1] != "none" {
					err = fmt.Errorf("a client on %s reported %s", path, f[1])
				}
			}
			errs <- err
		}()
	}
	time.Sleep(time.Until(start))
	_, cpu, _, err := gcraRound(addr, hosts, procs, c.fleetDur, gcra.Function, gcra.Args)
	for range hosts {
		if lerr := <-errs; err == nil && lerr != nil {
			err = fmt.Errorf("GCRA's load on the SQLite daemons: %w", lerr)
		}
	}
	return cpu, err
}

// handoffs runs one client that passes the hand meter back and forth
// between host A and host B (see clientHandoff).
func (b *bench) handoffs(mnts []string, fr *fleetResult) error {
	a, bb := filepath.Join(mnts[0], "hand"), filepath.Join(mnts[1], "hand")
	outs, err := runClients(1, b.self, "client", "handoff", "-a", filepath.Join(a, "acquire"), "-b", filepath.Join(bb, "acquire"),
		"-status", filepath.Join(a, "status"), "-n", strconv.Itoa(b.cfg.handoffs))
	if err != nil {
		return err
	}
	for i, line := range strings.Split(outs[0], "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "errors" {
			b.clientErrors("handoff", f[1])
			continue
		}
		ns, err := strconv.ParseFloat(strings.TrimSpace(line), 64)
		if err != nil {
			return fmt.Errorf("handoff client said %q", line)
		}
		fr.handoffs = append(fr.handoffs, ns/1e3)
		fr.dirs[i%2] = append(fr.dirs[i%2], ns/1e3)
	}
	if len(fr.handoffs) == 0 {
		return fmt.Errorf("no handoff measured")
	}
	return nil
}

// countCommands runs cfg.grants idle cycles, one after the other, on host
// A's thr meter, with hosts B and C mounted and idle, and counts the
// commands the hosts send to Redis (MONITOR) and those Redis runs,
// functions' own commands included (INFO commandstats).
func (b *bench) countCommands(r *redisServer, mnt string, fr *fleetResult) error {
	time.Sleep(500 * time.Millisecond) // the handoff client's last release
	before, err := commandStats(r.addr)
	if err != nil {
		return err
	}
	mon, err := startMonitor(r.addr)
	if err != nil {
		return err
	}
	outs, err := runClients(1, b.self, "client", "cycle", "-api", "raw", "-path", filepath.Join(mnt, "thr", "acquire"),
		"-n", strconv.Itoa(b.cfg.grants), "-warm", "0")
	fr.client = mon.stop()
	if err != nil {
		return err
	}
	if f := strings.Fields(outs[0]); len(f) == 2 {
		b.clientErrors("commands per grant", f[1])
	}
	after, err := commandStats(r.addr)
	if err != nil {
		return err
	}
	fr.grants = b.cfg.grants
	fr.inside = after.minus(before)
	delete(fr.inside, "monitor")
	if f := fr.inside["fcall"]; f.calls > 0 {
		fr.fcallUs = f.usec / f.calls
	}
	return nil
}

// clientCommands is the number of commands the hosts sent.
func (fr *fleetResult) clientCommands() int {
	n := 0
	for _, v := range fr.client {
		n += v
	}
	return n
}

// ownCalls counts the FCALLs of acquire and release the hosts sent,
// whatever the library's version (rlfs1_acquire, rlfs2_acquire, …).
func (fr *fleetResult) ownCalls() int {
	n := 0
	for name, v := range fr.client {
		if _, fn, ok := strings.Cut(name, "_"); ok && strings.HasPrefix(name, "rlfs") && (fn == "acquire" || fn == "release") {
			n += v
		}
	}
	return n
}

// fleetRows are rows r (Redis against SQLite, by rounds) and x (fleet).
func (b *bench) fleetRows() []row {
	var rs []row
	s := b.s
	if len(s["r.redis"]) > 0 {
		extra := s.med("r.extra")
		rs = append(rs,
			row{id: "r1", what: "Redis round trip (PING from Go, loopback, median of " + strconv.Itoa(rttPings) + ")", rlfs: us(s.med("r.rtt"))},
			row{id: "r2", what: "idle cycle on Redis (Go syscall.Open+Close); SQLite daemon in ()",
				rlfs:   fmt.Sprintf("%s (%s)", us(s.med("r.redis")), us(s.med("r.sqlite"))),
				ratio:  fmt.Sprintf("%s SQLite; +%.2f RTT", x(s.ratio("r.redis", "r.sqlite")), extra),
				target: "≤ SQLite + 1.5 RTT", result: verdict(extra <= 1.5)},
			row{id: "r2b", what: "r2's cycle against the SQLite daemon's (issue 17), and against r3's floor",
				rlfs:   fmt.Sprintf("%s (%s)", us(s.med("r.redis")), us(s.med("r.sqlite"))),
				ratio:  fmt.Sprintf("%s SQLite; %s r3", x(s.ratio("r.redis", "r.sqlite")), x(s.ratio("r.redis", "r.gcrafloor"))),
				target: "≤ 3× SQLite", result: verdict(s.ratio("r.redis", "r.sqlite") <= 3)})
		if len(s["r.gcrafloor"]) > 0 {
			rs = append(rs, row{id: "r3", what: "idle cycle of a do-nothing go-fuse file whose open makes one bare GCRA decision on the same Redis (rueidis, as rlfs): the floor of asking the store once per grant; SQLite daemon in ()",
				rlfs:  fmt.Sprintf("%s (%s)", us(s.med("r.gcrafloor")), us(s.med("r.sqlite"))),
				ratio: fmt.Sprintf("%s SQLite", x(s.ratio("r.gcrafloor", "r.sqlite")))})
		}
		if len(s["r.leasedfloor"]) > 0 {
			rs = append(rs, row{id: "r4", what: "idle cycle of r3's file asking for grants in blocks of " + strconv.Itoa(leaseBlock) + " (one GCRA decision per block) and reporting closes in blocks: the floor of a store that leases grants to hosts, which strict FIFO across hosts forbids; SQLite daemon in ()",
				rlfs:  fmt.Sprintf("%s (%s)", us(s.med("r.leasedfloor")), us(s.med("r.sqlite"))),
				ratio: fmt.Sprintf("%s SQLite", x(s.ratio("r.leasedfloor", "r.sqlite")))})
		}
	}
	fr := b.fl
	if fr == nil {
		return rs
	}
	if len(fr.perHost) > 0 {
		mid := medianIndex(s["x.total"])
		var hs []string
		for i, v := range fr.perHost[mid] {
			hs = append(hs, fmt.Sprintf("%s %s", fleetHosts[i], rate(v)))
		}
		rs = append(rs, row{id: "x1", what: fmt.Sprintf("fleet throughput: 3 hosts × %d processes, concurrency=0, grants/s; GCRA baseline in ()", b.cfg.fleetProcs),
			rlfs: fmt.Sprintf("%s (%s) (GCRA %s)", rate(s.med("x.total")), strings.Join(hs, ", "), rate(s.med("x.gcra.rate")))})
		if len(s["x.cpuratio"]) > 0 {
			r := s.med("x.cpuratio")
			rs = append(rs, row{id: "x5", what: "Redis CPU per grant under x1's load; per GCRA decision in () (bare; as redis_rate serves it); Redis's socket reads per grant, per bare decision",
				rlfs: fmt.Sprintf("%s (%s; %s); reads %.2f, %.2f", us(s.med("x.cpu")), us(s.med("x.gcra.cpu")), us(s.med("x.gcra.ratecpu")),
					s.med("x.reads"), s.med("x.gcra.reads")),
				ratio: fmt.Sprintf("%s GCRA (%s redis_rate's)", x(r), x(s.med("x.cpuratio.rate"))), target: "≤ 3× GCRA", result: verdict(r <= 3)})
			if len(s["x.cpuratio.load"]) > 0 {
				rs = append(rs, row{id: "x5l", what: "x5's grant against the bare GCRA decision run while as many client processes loop on 3 SQLite daemons (the same load on the cores, none on Redis)",
					rlfs:  fmt.Sprintf("%s (%s)", us(s.med("x.cpu")), us(s.med("x.gcra.loadcpu"))),
					ratio: x(s.med("x.cpuratio.load")) + " GCRA", target: "≤ 3× GCRA", result: verdict(s.med("x.cpuratio.load") <= 3)})
			}
		}
	}
	for _, m := range []struct{ key, what string }{
		{"c", "`concurrency=5000`"},
		{"w", fmt.Sprintf("`1000000/1h,concurrency=0`, 2,000 calls in the window before the first round, %d after the last", fr.winCalls)},
	} {
		k := "x6." + m.key
		if len(s[k+".cpu"]) == 0 {
			continue
		}
		rs = append(rs, row{id: "x6" + m.key, what: fmt.Sprintf("issue 17's load: Redis CPU per grant, 2 hosts × %d processes on %s; per bare GCRA decision (2 clients × %d) in ()", issueProcs, m.what, issueProcs),
			rlfs:  fmt.Sprintf("%s (%s; %s under the same load); %s", us(s.med(k+".cpu")), us(s.med(k+".gcra")), us(s.med(k+".loadgcra")), rate(s.med(k+".rate"))),
			ratio: fmt.Sprintf("%s GCRA; %s under the same load", x(s.med(k+".ratio")), x(s.med(k+".loadratio"))), target: "≤ 3× GCRA", result: verdict(s.med(k+".ratio") <= 3)})
	}
	if len(fr.handoffs) > 0 {
		sorted := slices.Sorted(slices.Values(fr.handoffs))
		rs = append(rs,
			row{id: "x2", what: fmt.Sprintf("cross-host handoff on concurrency=1, p50 (%d handoffs, A→B and B→A)", len(sorted)), rlfs: us(quantile(sorted, 0.5))},
			row{id: "x3", what: fmt.Sprintf("cross-host handoff p99 (max %s)", us(sorted[len(sorted)-1])), rlfs: us(quantile(sorted, 0.99))})
	}
	if fr.grants > 0 {
		n := float64(fr.grants)
		all := float64(fr.clientCommands())
		own := float64(fr.ownCalls())
		rs = append(rs,
			row{id: "x4", what: fmt.Sprintf("Redis commands sent per grant (%d grants, idle cycle, 3 hosts up)", fr.grants),
				rlfs: fmt.Sprintf("%.3f: %.3f acquire+release FCALL, %.3f background (run inside functions: %.1f)",
					all/n, own/n, (all-own)/n, (fr.inside.total()-all)/n),
				target: "≤ 2 amortized", result: verdict(all/n <= 2)})
	}
	return rs
}

// fleetDoc describes rows r and x in the report.
func (b *bench) fleetDoc(p func(string, ...any)) {
	c := b.cfg
	p("- **Redis**: `redis-server` (%s) started by the bench on a free loopback port, configured as", redisVersion(c.redisServer))
	p("  docs/fleet.md recommends (`--appendonly yes --appendfsync everysec`, no RDB snapshots); each step has its own.")
	p("- **r** Redis against SQLite: a second daemon of the rounds, `--store redis://…` (host `bench-r`), serves the same")
	p("  `idle=concurrency=0` meter. Each round measures the Redis round trip (r1: median of %d PINGs from the bench", rttPings)
	p("  process, one connection, after %d untimed) and the idle cycle of both daemons one after the other, as in a1", rttPings/10)
	p("  (r2). The target is issue 9's: the Redis cycle ≤ the SQLite cycle + 1.5 × the round trip, judged on the")
	p("  median over rounds of (Redis cycle − SQLite cycle) / RTT, all three from the same round. r2b: issue 17's")
	p("  target, the same cycle ≤ 3× the SQLite daemon's (median of same-round ratios). r3, measured in the same")
	p("  rotation: the typical floor (a do-nothing go-fuse file, row a) whose open first makes one bare GCRA decision")
	p("  (test/gcra) on the same Redis through a rueidis client set up as rlfs's (no cache, no retries, a deadline")
	p("  per call): what any fleet design pays that asks the store once per grant, with nothing else on the path.")
	p("  r4, in the same rotation: r3's file asking for a block of %d grants with one decision when its block is", leaseBlock)
	p("  used up, and reporting %d closes with one more in the background: the floor of a design that leases", leaseBlock)
	p("  blocks of grants to hosts, which issue 17's strict FIFO across hosts forbids (performance.md).")
	p("- **x** fleet: 3 daemons (hosts %s) on one Redis, each with `thr=concurrency=0` and", strings.Join(fleetHosts, ", "))
	p("  `hand=concurrency=1`. x1: %d client processes per host loop raw open+close on their host's `thr` for %s,", c.fleetProcs, c.fleetDur)
	p("  all starting at one instant (%d rounds; the median round, and its split by host). In each round, right", c.rounds)
	p("  after, the GCRA baseline runs on the same Redis for as long: %d goroutines per host on one rueidis client", c.fleetProcs)
	p("  per host (as the daemons'), each looping one GCRA decision (a function: TIME, GET and SET of a TAT key;")
	p("  the rule redis-cell and redis_rate run). x5: Redis's CPU (INFO cpu) per grant over the round, and per GCRA")
	p("  decision over its baseline; the ratio is the median over rounds of each round's. x5l: the same baseline")
	p("  run once more in each round while the cores carry x1's load without Redis: 3 SQLite daemons (`idle=concurrency=0`),")
	p("  %d client processes looping raw open+close on each, for as long (a load client's error voids the round).", c.fleetProcs)
	p("  x6c, x6w: issue 17's own measurement with real daemons: hosts a and b, %d client processes each looping raw", issueProcs)
	p("  open+close on `conc=concurrency=5000`, then on `win=1000000/1h,concurrency=0` (2,000 calls put in before the first")
	p("  round; nothing leaves a 1-hour window, so it grows round by round), each for the throughput's duration; then, in")
	p("  the same round, the bare GCRA decision on 2 clients × %d goroutines for as long. Redis's CPU per grant over", issueProcs)
	p("  the loop, per decision over the baseline; the ratio is the median over rounds of each round's. Each round")
	p("  also runs the baseline under the same load without Redis, as x5l: %d processes looping on each of 2 SQLite daemons.", issueProcs)
	p("  x2, x3: one client")
	p("  process holds `hand` through host-a; a thread opens it through host-b and blocks; once `status` shows it")
	p("  waiting, the holder closes; the latency is from just before `close()` to the waiter's open returning")
	p("  (the RELEASE's trip to host-a, its FCALL, the message to host-b, host-b's grant, the waking of the")
	p("  client). The waiter then holds, and the next waiter opens through the other host: %d handoffs,", c.handoffs)
	p("  alternating A→B and B→A. x4: %d idle cycles one after the other on host-a's `thr`, hosts b and c up and", c.grants)
	p("  idle; Redis's MONITOR counts the commands the hosts send (those the functions run show as `lua` and are")
	p("  left out) and INFO commandstats those Redis runs, functions' own included; the bench's own INFO and")
	p("  MONITOR are not counted. Lease renewals and other background commands of the 3 hosts count.")
}

// fleetDetails writes the fleet's figures that the table leaves out.
func (b *bench) fleetDetails(p func(string, ...any)) {
	fr := b.fl
	if fr == nil {
		return
	}
	if len(fr.handoffs) > 0 {
		for i, dir := range []string{"A→B", "B→A"} {
			d := slices.Sorted(slices.Values(fr.dirs[i]))
			if len(d) > 0 {
				p("- Handoffs %s: %d, p50 %s, p99 %s, max %s.", dir, len(d), us(quantile(d, 0.5)), us(quantile(d, 0.99)), us(d[len(d)-1]))
			}
		}
	}
	if fr.grants > 0 {
		p("- Commands over %d grants: sent by the hosts (MONITOR) %s; run by Redis (commandstats) %s.", fr.grants, countsString(fr.client), fr.inside)
		p("  Server time per FCALL %s.", us(fr.fcallUs))
	}
	if fr.loadN > 0 {
		fcalls := fr.load["fcall"].calls
		p("- Under the load of x1 (last round, %.0f grants): %.2f FCALL per grant, %s of server time per FCALL; commands run: %s.",
			fr.loadN, fcalls/fr.loadN, us(fr.load["fcall"].usec/max(fcalls, 1)), fr.load)
	}
}

func countsString(m map[string]int) string {
	st := cmdStats{}
	for k, v := range m {
		st[k] = struct{ calls, usec float64 }{float64(v), 0}
	}
	return st.String()
}

// redisVersion is redis-server's version, from --version.
func redisVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "version unknown"
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return "Redis " + v
		}
	}
	return strings.TrimSpace(string(out))
}
