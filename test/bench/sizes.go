package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The size sweeps of issue 17 (steps s1 and s2): the idle cycle of one
// client process while a meter remembers more and more calls, on both
// stores (q: the SQLite daemon; r: a daemon of a one-host fleet on a Redis
// the bench starts), and with -rlfs-before on both binaries.
//
//   - s1: calls held (in progress) by a helper process, on a meter whose
//     concurrency admits them all; the cycle is measured on that meter.
//   - s2: completed calls in a window (1000000/1h, concurrency=0), filled by
//     fillProcs processes looping open+close; each round fills a fresh
//     meter level by level.
//
// Every point is measured right beside the same cycle on a meter of the
// same spec that remembers nothing (the size-0 reference, "ref"), in an
// order that rotates; its ratio is the median of the same-round ratios.

// sizeTarget is one daemon of a sweep: a store served by one binary.
type sizeTarget struct {
	sweep string // s1 or s2
	store string // q or r
	bin   string // "" (the measured binary) or ".before"
	proc  *proc
	hold  *holder // s1
	// limit is the first level a fill could not reach within the budget
	// (0: none so far); levels from it on are not measured.
	limit int
	notes map[int]string // level → why it was not reached
	// fillSecs is the time spent filling since the sized meter was empty;
	// pace the time one call took in the last chunk of the fill.
	fillSecs float64
	pace     time.Duration
}

func (t *sizeTarget) dir(meter string) string { return filepath.Join(t.proc.mnt, meter) }

// key is the samples key of a point: "s1.q.1000", "s1.q.1000.ref.before".
func (t *sizeTarget) key(sweep string, level int, what string) string {
	k := fmt.Sprintf("%s.%s.%d", sweep, t.store, level)
	if what != "" {
		k += "." + what
	}
	return k + t.bin
}

func (t *sizeTarget) reaches(level int) bool { return t.limit == 0 || level < t.limit }

// stopAt records that level could not be reached, and why.
func (t *sizeTarget) stopAt(level int, why string) {
	if t.limit == 0 || level < t.limit {
		t.limit = level
	}
	if t.notes == nil {
		t.notes = map[int]string{}
	}
	if _, ok := t.notes[level]; !ok {
		t.notes[level] = why
	}
}

// binaries are the rlfs binaries measured: the one of -rlfs (suffix ""),
// and the one of -rlfs-before (".before").
func (b *bench) binaries() [][2]string {
	bins := [][2]string{{"", b.cfg.rlfs}}
	if b.cfg.rlfsBefore != "" {
		bins = append(bins, [2]string{".before", b.cfg.rlfsBefore})
	}
	return bins
}

// startSizeTargets starts, for store q or r, one daemon per binary with
// the meters given (--meter NAME=SPEC each).
func (b *bench) startSizeTargets(sweep, store string, meters ...string) ([]*sizeTarget, error) {
	var args []string
	for _, m := range meters {
		args = append(args, "--meter", m)
	}
	var ts []*sizeTarget
	for _, bin := range b.binaries() {
		name := sweep + "-" + store + strings.ReplaceAll(bin[0], ".", "-")
		t := &sizeTarget{sweep: sweep, store: store, bin: bin[0]}
		var err error
		if store == "q" {
			t.proc, _, err = b.d.startRlfs("rlfs-"+name, bin[1], filepath.Join(b.work, name+".db"), filepath.Join(b.work, "mnt-"+name), b.work, nil, args...)
		} else {
			var r *redisServer
			if r, err = b.startRedis("redis-" + name); err == nil {
				t.proc, err = b.startRlfsRedis(name, bin[1], r, nil, args...)
			}
		}
		if err != nil {
			return ts, err
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// sizeStores are the stores of the sweeps, with their names in the report.
var sizeStores = []struct{ id, name string }{{"q", "SQLite"}, {"r", "Redis"}}

func storeName(id string) string {
	for _, s := range sizeStores {
		if s.id == id {
			return s.name
		}
	}
	return id
}

// heldSpec is the meter of s1: concurrency admits every call held (issue
// 17 measured a concurrency=5000 meter; holding 10,000 needs more).
func (c config) heldSpec() string {
	return fmt.Sprintf("concurrency=%d", max(5000, 2*slices.Max(c.s1Sizes)))
}

// windowSpec is the meter of s2: one wide window, unlimited concurrency.
const windowSpec = "1000000/1h,concurrency=0"

// sweepHeld is step s1 on each store.
func (b *bench) sweepHeld() error {
	for _, st := range sizeStores {
		if err := b.sweepHeldOn(st.id); err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
	}
	return nil
}

func (b *bench) sweepHeldOn(store string) error {
	spec := b.cfg.heldSpec()
	ts, err := b.startSizeTargets("s1", store, "held="+spec, "ref="+spec)
	defer b.stopSizeTargets(ts)
	if err != nil {
		return err
	}
	b.sized = append(b.sized, ts...)
	for _, t := range ts {
		if t.hold, err = startHolder(b.self, filepath.Join(t.dir("held"), "acquire")); err != nil {
			return err
		}
	}
	for li, level := range b.cfg.s1Sizes {
		for _, t := range ts {
			if level > 0 && t.reaches(level) {
				b.progress("s1 %s%s: hold %d calls", storeName(store), t.bin, level)
				if err := b.holdTo(t, level); err != nil {
					return err
				}
			}
		}
		for r := range b.cfg.sizeRounds {
			if err := b.measurePairs("s1", ts, level, li+r, b.cfg.s1Cycles, func(*sizeTarget) (string, error) { return "held", nil }); err != nil {
				return err
			}
		}
	}
	return nil
}

// holdTo makes t's holder hold level calls, in chunks, and stops when the
// fill budget would not suffice (see fillPlan). It records the time the
// holding took from 0 (s1f) and checks the meter's status.
func (b *bench) holdTo(t *sizeTarget, level int) error {
	have := t.hold.count
	plan := newFillPlan(b.cfg.fillBudget, have, level, &t.pace)
	if why := plan.hopeless(); why != "" {
		t.stopAt(level, why)
		return nil
	}
	for have < level {
		n := plan.chunk(have)
		took, err := t.hold.to(have + n)
		if err != nil {
			return err
		}
		t.fillSecs += took.Seconds()
		if t.hold.count < have+n {
			t.stopAt(level, fmt.Sprintf("an open failed at %d held: %s", t.hold.count, t.hold.errs))
			return nil
		}
		have = t.hold.count
		if why := plan.after(n, took, took, have); why != "" {
			t.stopAt(level, why)
			return nil
		}
	}
	b.s.add(t.key("s1f", level, ""), t.fillSecs)
	got, err := waitStatusValue(filepath.Join(t.dir("held"), "status"), "in_progress", level, 30*time.Second)
	if err != nil {
		return err
	}
	if got != level {
		b.suspect("s1 %s%s: status shows %d in progress, want %d", storeName(t.store), t.bin, got, level)
	}
	return nil
}

// measurePairs measures, for each target that reached level, the cycle on
// the reference meter and on the sized one (sized returns its name,
// preparing it), in an order rotated by r.
func (b *bench) measurePairs(sweep string, ts []*sizeTarget, level, r, cycles int, sized func(*sizeTarget) (string, error)) error {
	type point struct {
		t   *sizeTarget
		ref bool
	}
	var ps []point
	for _, t := range ts {
		if t.reaches(level) {
			ps = append(ps, point{t, true}, point{t, false})
		}
	}
	if len(ps) == 0 {
		return nil
	}
	k := r % len(ps)
	for _, p := range append(ps[k:], ps[:k]...) {
		meter, what := "ref", "ref"
		if !p.ref {
			var err error
			if meter, err = sized(p.t); err != nil {
				return err
			}
			what = ""
		} else if sweep == "s2" {
			if err := b.freshMeter(p.t, "ref"); err != nil {
				return err
			}
		}
		us, err := b.cycleN(filepath.Join(p.t.dir(meter), "acquire"), cycles, b.cfg.sizeMax)
		if err != nil {
			return fmt.Errorf("%s cycle at %d on %s%s (%s): %w", sweep, level, storeName(p.t.store), p.t.bin, meter, err)
		}
		b.s.add(p.t.key(sweep, level, what), us)
		if sweep == "s2" && !p.ref { // the calls the measurement added
			n, _ := waitStatusValue(filepath.Join(p.t.dir(meter), "status"), windowKey, 0, time.Second)
			b.s.add(p.t.key("s2e", level, ""), float64(n))
		}
	}
	return nil
}

// cycleN measures one client's raw open+close cycle on path: n timed
// cycles after n/10, or fewer when max runs out; in µs.
func (b *bench) cycleN(path string, n int, most time.Duration) (float64, error) {
	out, err := runClients(1, b.self, "client", "cycle", "-api", "raw", "-path", path,
		"-n", strconv.Itoa(n), "-warm", strconv.Itoa(n/10), "-max", most.String())
	if err != nil {
		return 0, err
	}
	f := strings.Fields(out[0])
	if len(f) != 2 {
		return 0, fmt.Errorf("client said %q", out[0])
	}
	b.clientErrors("size sweep cycle", f[1])
	ns, err := strconv.ParseFloat(f[0], 64)
	return ns / 1e3, err
}

// freshMeter (re)creates meter name of t with the window spec: rmdir if
// it exists, mkdir, write limits.
func (b *bench) freshMeter(t *sizeTarget, name string) error {
	dir := t.dir(name)
	if _, err := os.Stat(dir); err == nil {
		if err := removeMeter(dir); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "limits"), []byte(windowSpec+"\n"), 0o644); err != nil {
		return fmt.Errorf("write %s/limits: %w", dir, err)
	}
	return nil
}

// removeMeter removes the meter directory dir, waiting up to 5s for the
// RELEASE of its last call (asynchronous: rmdir says EBUSY meanwhile).
func removeMeter(dir string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := os.Remove(dir)
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("rmdir %s: %w", dir, err)
			}
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stopSizeTargets stops the daemons first, then their holders: calls held
// end with the daemon, not one release at a time.
func (b *bench) stopSizeTargets(ts []*sizeTarget) {
	for _, t := range ts {
		b.stopDaemon(t.proc)
	}
	for _, t := range ts {
		if t.hold != nil {
			t.hold.stop()
		}
	}
}
