// Command bench is rlfs's benchmark harness: it measures the rlfs daemon
// against two do-nothing go-fuse filesystems (the floors) in the same run and
// prints a table of medians, ratios and targets (docs/benchmarks.md is
// regenerated from it). Run it through test/bench/run.sh, which builds rlfs,
// a profiling build of rlfs and this program.
//
//	bench run -rlfs BIN -rlfs-prof BIN [-doc docs/benchmarks.md] [flags]
//	bench run -rlfs BIN -rlfs-before OLD [-only rounds,units,fleet,s1,s2] [flags]
//
// With -rlfs-before, the steps rounds, units, fleet, s1 and s2 measure
// both binaries in the same rounds, the steps late, waiters and meters
// measure one right after the other, and the report adds a table
// "before → after".
//
// The same binary also serves the floors and plays the clients, each in its
// own process (no process ever opens a file of a mount it serves):
//
//	bench floor -kind typical|minimal MOUNTPOINT
//	bench client cycle|loop|late|fifo ...
//
// It is a benchmark, not a test: nothing here fails on a slow figure; the
// table says PASS or FAIL beside each target.
package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench run|floor|client ... (see test/bench/run.sh)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runMain(os.Args[2:])
	case "floor":
		err = floorMain(os.Args[2:])
	case "client":
		err = clientMain(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q: want run, floor or client", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config is the run's scale; run.sh's defaults fit in 5 minutes on 2 cores.
type config struct {
	rlfs, rlfsProf, doc, command, work string
	rlfsBefore                         string // the binary to compare with ("" : none)
	beforeLabel, afterLabel            string // how the report names the two binaries

	rounds, cycles, pyCycles          int
	dur, fairDur, profileDur          time.Duration
	lateWaiters, lateThreads, waiters int
	meters, meterStarts               int
	redisServer                       string
	fleetDur                          time.Duration
	fleetProcs, handoffs, grants      int
	quotaPlans                        []string // the quota step's plans, such as 3500/1m
	quotaProcs                        int
	quotaDur                          time.Duration
	only                              map[string]bool // empty: every step

	// the size sweeps (s1, s2)
	s1Sizes, s2Sizes               []int
	sizeRounds, s1Cycles, s2Cycles int
	fillProcs                      int
	sizeMax, fillBudget            time.Duration
}

// runs says whether the step named name is to run.
func (c config) runs(name string) bool { return len(c.only) == 0 || c.only[name] }

// bench is one run: its daemons, its samples and its findings.
type bench struct {
	cfg   config
	self  string
	work  string
	began time.Time
	d     daemons

	main, full  *proc
	targets     []target // rlfs idle meter, typical floor, minimal floor
	redis       *redisServer
	onRedis     *target  // the idle meter of rlfs on redis (rows r)
	gcraFloor   *target  // the gcra floor on the same Redis (row r3)
	leasedFloor *target  // the leased floor on the same Redis (row r4)
	loadPaths   []string // the idle meters of the SQLite daemons of x5l's load
	fl          *fleetResult
	quotas      []*quotaResult

	s          samples
	fairCounts [][]float64
	late       lateResult
	wait       *waitResult
	met        *meterResult
	profs      []profResult
	sized      []*sizeTarget // the daemons of the size sweeps, for their notes
	before     *beforeSet    // the daemons of -rlfs-before

	failed     []string // steps that could not run
	suspicious []string
	clientErrs map[string]map[string]int // measurement → errno name → count
	loadavg    []string                  // /proc/loadavg at start and end
}

func runMain(args []string) error {
	c, err := parseRun(args)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b := &bench{cfg: c, self: self, began: time.Now(), s: samples{}}
	if c.rlfsBefore != "" {
		b.before = &beforeSet{}
	}
	temp := c.work == ""
	if b.work = c.work; temp {
		if b.work, err = os.MkdirTemp("", "rlfs-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(b.work)
	}
	if b.work, err = filepath.Abs(b.work); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "bench: interrupted; stopping the daemons")
		b.d.stopAll()
		b.checkLeftovers()
		if temp {
			os.RemoveAll(b.work)
		}
		os.Exit(130)
	}()
	defer b.stopAll()
	b.runSteps()
	report := b.report()
	fmt.Print(report.table)
	if c.doc != "" {
		if err := os.WriteFile(c.doc, []byte(report.doc), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s\n", c.doc)
	}
	return nil
}

func parseRun(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench run", flag.ContinueOnError)
	fs.StringVar(&c.rlfs, "rlfs", "", "the rlfs binary (required)")
	fs.StringVar(&c.rlfsProf, "rlfs-prof", "", "rlfs built with test/bench/profile_hook.go.in (for the profile)")
	fs.StringVar(&c.doc, "doc", "", "write the report to this markdown file")
	fs.StringVar(&c.command, "command", "bench run", "the command line to quote in the report")
	fs.StringVar(&c.work, "work", "", "scratch directory for databases and mounts (default: a new temp dir)")
	fs.IntVar(&c.rounds, "rounds", 5, "rounds of the repeated measurements (medians are over rounds)")
	fs.IntVar(&c.cycles, "cycles", 10000, "timed cycles per Go idle-cycle measurement")
	fs.IntVar(&c.pyCycles, "py-cycles", 5000, "timed cycles per Python idle-cycle measurement")
	fs.DurationVar(&c.dur, "dur", 800*time.Millisecond, "duration of each throughput and sync measurement")
	fs.DurationVar(&c.fairDur, "fair-dur", 3*time.Second, "duration of each fairness measurement")
	fs.DurationVar(&c.profileDur, "profile-dur", 4*time.Second, "how long the idle cycle is profiled")
	fs.IntVar(&c.lateWaiters, "late-waiters", 1000, "waiters of the lateness measurement")
	fs.IntVar(&c.lateThreads, "late-threads", 20, "threads per lateness client process")
	fs.IntVar(&c.waiters, "waiters", 10000, "blocked waiters on one meter")
	fs.IntVar(&c.meters, "meters", 10000, "meters for the many-meters measurement")
	fs.IntVar(&c.meterStarts, "meter-starts", 3, "daemon starts timed on the many-meters database")
	fs.StringVar(&c.redisServer, "redis-server", "redis-server", "the redis-server binary of the fleet rows")
	fs.DurationVar(&c.fleetDur, "fleet-dur", 2*time.Second, "duration of each fleet throughput measurement")
	fs.IntVar(&c.fleetProcs, "fleet-procs", 8, "client processes per host of the fleet throughput")
	fs.IntVar(&c.handoffs, "handoffs", 400, "cross-host handoffs timed")
	fs.IntVar(&c.grants, "grants", 2000, "grants over which Redis commands are counted")
	quotas := fs.String("quota-plans", "3500/1m,10000/1m", "the quota step's plans (N/PERIOD, comma-separated)")
	fs.IntVar(&c.quotaProcs, "quota-procs", 8, "client processes per host of the quota step")
	fs.DurationVar(&c.quotaDur, "quota-dur", 75*time.Second, "how long the quota step's clients loop (more than the period: the violations after it count)")
	fs.StringVar(&c.rlfsBefore, "rlfs-before", "", "another rlfs binary (an older build) to measure beside -rlfs in the same rounds")
	fs.StringVar(&c.beforeLabel, "before-label", "", "the name of -rlfs-before in the report (default: its path)")
	fs.StringVar(&c.afterLabel, "after-label", "", "the name of -rlfs in the before → after table (default: its path)")
	s1, s2 := sizeFlags(fs, &c)
	only := fs.String("only", "", "comma-separated steps to run (rounds,late,fleet,quota,waiters,meters,units,s1,s2,profile); default all")
	godebug := fs.String("client-godebug", "asyncpreemptoff=1", "GODEBUG of the Go client processes")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.rlfs == "" {
		return c, errors.New("run: -rlfs BIN is required")
	}
	clientEnv = append(os.Environ(), "GODEBUG="+*godebug)
	c.beforeLabel = cmp.Or(c.beforeLabel, c.rlfsBefore)
	c.afterLabel = cmp.Or(c.afterLabel, c.rlfs)
	var err error
	if c.s1Sizes, err = sizeList("s1-sizes", *s1); err != nil {
		return c, err
	}
	if c.s2Sizes, err = sizeList("s2-sizes", *s2); err != nil {
		return c, err
	}
	c.quotaPlans = strings.Split(*quotas, ",")
	c.only = map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if s != "" {
			c.only[s] = true
		}
	}
	return c, nil
}

// sizeFlags declares the flags of the size sweeps; the lists of sizes are
// returned as text, to parse.
func sizeFlags(fs *flag.FlagSet, c *config) (s1, s2 *string) {
	s1 = fs.String("s1-sizes", "0,100,1000,10000", "s1: calls held")
	s2 = fs.String("s2-sizes", "0,1000,5000,10000,100000", "s2: completed calls in the window")
	fs.IntVar(&c.sizeRounds, "size-rounds", 5, "rounds of the size sweeps (s2 fills a fresh meter each round)")
	fs.IntVar(&c.s1Cycles, "s1-cycles", 2000, "s1: timed cycles per measurement")
	fs.IntVar(&c.s2Cycles, "s2-cycles", 500, "s2: timed cycles per measurement (each adds a call to the window)")
	fs.DurationVar(&c.sizeMax, "size-max", 2*time.Second, "size sweeps: a measurement stops after this long (at least 20 cycles)")
	fs.DurationVar(&c.fillBudget, "fill-budget", 60*time.Second, "size sweeps: time allowed to fill from one size to the next")
	fs.IntVar(&c.fillProcs, "fill-procs", 4, "s2: processes that fill the window")
	return s1, s2
}

// sizeList parses a comma-separated list of sizes, ascending, from 0.
func sizeList(flagName, text string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(text, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || (len(out) > 0 && n <= out[len(out)-1]) {
			return nil, fmt.Errorf("run: -%s %q: want sizes ascending, such as 0,100,1000", flagName, text)
		}
		out = append(out, n)
	}
	if len(out) == 0 || out[0] != 0 {
		return nil, fmt.Errorf("run: -%s %q: the first size must be 0 (the reference of the ratios)", flagName, text)
	}
	return out, nil
}

// runSteps runs every step asked for; a failed step is recorded and the
// others still run.
func (b *bench) runSteps() {
	c := b.cfg
	b.loadavg = append(b.loadavg, loadavg())
	if c.runs("rounds") || c.runs("late") {
		b.step("start rlfs and the floors", b.startMain)
	}
	if c.runs("rounds") && len(b.failed) == 0 {
		b.step("start Redis and rlfs on it", b.startRedisMain)
	}
	if len(b.failed) == 0 && b.main != nil {
		if c.runs("rounds") {
			b.step("repeated rounds (idle cycle, throughput, sync, fairness)", b.rounds)
		}
		if c.runs("late") {
			b.step("grant lateness", b.lateness)
			b.step("grant lateness (before)", func() error { return b.onBefore(b.lateness) })
		}
	}
	b.stopAll()
	if c.runs("fleet") {
		b.step("fleet of 3 hosts on Redis", b.fleet)
		b.stopAll()
	}
	if c.runs("quota") {
		b.step("fleet quotas", b.quota)
		b.stopAll()
	}
	if c.runs("waiters") {
		b.step("10k waiters", b.waiters)
		b.step("10k waiters (before)", func() error { return b.onBefore(b.waiters) })
	}
	if c.runs("meters") {
		b.step("10k meters", b.meters)
		b.step("10k meters (before)", func() error { return b.onBefore(b.meters) })
	}
	if c.runs("units") {
		b.step("weighted calls", b.units)
	}
	if c.runs("s1") {
		b.step("s1: calls held", b.sweepHeld)
	}
	if c.runs("s2") {
		b.step("s2: calls in the window", b.sweepWindow)
	}
	if c.runs("profile") {
		b.step("profile", b.profile)
	}
	b.stopAll()
	b.loadavg = append(b.loadavg, loadavg())
	b.reportClientErrors()
	b.scanLogs()
	b.checkLeftovers()
}

// stopAll stops the daemons still running and notes any that did not stop
// cleanly.
func (b *bench) stopAll() {
	for _, err := range b.d.stopAll() {
		b.suspect("%v", err)
	}
	b.loadPaths = nil // their daemons are stopped
}

// step runs f, recording a failure instead of stopping the run.
func (b *bench) step(name string, f func() error) {
	if err := guarded(f); err != nil {
		msg := fmt.Sprintf("%s: %v", name, err)
		b.failed = append(b.failed, msg)
		fmt.Fprintln(os.Stderr, "bench: FAILED:", msg)
	}
}

// guarded runs f, turning a panic into its error, so that a step that
// panics fails like any other and the run still stops every daemon,
// mount and Redis it started.
func guarded(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return f()
}

// scanLogs reports the WARN and ERROR lines the daemons logged
// (WORK/before holds those of -rlfs-before's once-measured steps.)
func (b *bench) scanLogs() {
	b.scanLogsIn(b.work)
	b.scanLogsIn(filepath.Join(b.work, "before"))
}

func (b *bench) scanLogsIn(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var bad []string
		for line := range strings.SplitSeq(string(data), "\n") {
			if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") || strings.Contains(line, "panic") {
				bad = append(bad, line)
			}
		}
		if len(bad) > 0 {
			b.suspect("%s logged %d WARN/ERROR lines, first: %s", strings.TrimSuffix(e.Name(), ".log"), len(bad), bad[0])
		}
	}
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// checkLeftovers makes sure no mount of this run is left behind.
func (b *bench) checkLeftovers() {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], b.work+"/") {
			_ = syscall.Unmount(f[4], syscall.MNT_DETACH)
			b.suspect("mount %s was left behind; detached it", f[4])
		}
	}
}
