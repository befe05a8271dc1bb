package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Comparing two binaries (issue 16: no benchmark regresses by more than
// 10%). With -rlfs-before OLD, the steps rounds, units, fleet, s1 and s2
// run OLD's daemons beside those of -rlfs, measured in the same rounds in
// an order that rotates; the report adds a table of same-round ratios,
// after / before.

// beforeSet holds the daemons of the -rlfs-before binary and what was
// measured of it once.
type beforeSet struct {
	main, full *proc
	onRedis    *target
	fl         *fleetResult
	late       lateResult
	wait       *waitResult
	met        *meterResult
}

// onBefore runs a step that measures once (late, waiters, meters) again on
// the -rlfs-before binary, right after the measured one: with its files in
// WORK/before, on its own daemon of the rounds, keeping what it measured in
// b.before.
func (b *bench) onBefore(f func() error) error {
	bf := b.before
	if bf == nil {
		return nil
	}
	rlfs, work, main := b.cfg.rlfs, b.work, b.main
	wait, met, late := b.wait, b.met, b.late
	defer func() {
		if b.wait != nil { // what this step measured
			bf.wait = b.wait
		}
		if b.met != nil {
			bf.met = b.met
		}
		if b.late.n > 0 {
			bf.late = b.late
		}
		b.cfg.rlfs, b.work, b.main = rlfs, work, main
		b.wait, b.met, b.late = wait, met, late
	}()
	b.cfg.rlfs, b.work, b.main = b.cfg.rlfsBefore, filepath.Join(work, "before"), bf.main
	b.wait, b.met, b.late = nil, nil, lateResult{}
	if err := os.MkdirAll(b.work, 0o755); err != nil {
		return err
	}
	return f()
}

// comparison is one line of the before → after table: the samples key of
// each binary; higher says more is better (a rate).
type comparison struct {
	id, what      string
	after, before string
	higher        bool
}

// regressionLimit is issue 16's bound: a figure more than 10% worse fails.
const regressionLimit = 0.10

// comparisons lists what both binaries were measured on, in the order of
// the results table.
func (b *bench) comparisons() []comparison {
	cs := []comparison{
		{"a1", "idle cycle, Go syscall.Open+Close (µs)", "a.raw.rlfs", "a.raw.before", false},
		{"a2", "idle cycle, Go os.Open+Close (µs)", "a.os.rlfs", "a.os.before", false},
		{"a3", "idle cycle, Python (µs)", "a.python.rlfs", "a.python.before", false},
	}
	for i, n := range []int{1, 4, 16} {
		cs = append(cs, comparison{fmt.Sprintf("b%d", i+1), fmt.Sprintf("throughput, %d client process(es) (cycles/s)", n),
			fmt.Sprintf("b.%d.rlfs", n), fmt.Sprintf("b.%d.before", n), true})
	}
	cs = append(cs,
		comparison{"b4", "daemon CPU per cycle, 16 clients (µs)", "cpu.16.rlfs", "cpu.16.before", false},
		comparison{"c", "fairness, max/min calls", "c.maxmin", "c.maxmin.before", false},
		comparison{"g1", "--sync=full, 1 client: µs per grant", "g.1.full", "g.1.full.before", false},
		comparison{"g2", "--sync=full, 4 clients: µs per grant", "g.4.full", "g.4.full.before", false},
		comparison{"u0", "idle cycle, plain acquire on the units meter (µs)", "u.plain", "u.plain.before", false},
		comparison{"u1", "idle cycle, acquire@10 (µs)", "u.cost", "u.cost.before", false},
		comparison{"u2", "idle cycle, acquire@10 + settlement (µs)", "u.settle", "u.settle.before", false},
		comparison{"r2", "idle cycle on Redis (µs)", "r.redis", "r.redis.before", false},
		comparison{"r2q", "idle cycle of the SQLite daemon beside it (µs)", "r.sqlite", "r.sqlite.before", false},
		comparison{"x1", "fleet throughput, 3 hosts (grants/s)", "x.total", "x.total.before", true},
	)
	for _, sw := range sweeps {
		for _, st := range sizeStores {
			for _, n := range sw.sizes(b.cfg) {
				k := sweepKey(sw.id, st.id, n, "")
				cs = append(cs, comparison{sw.id + st.id, fmt.Sprintf("%s, %s %s: cycle (µs)", st.name, sizeLabel(n), sw.label), k, k + ".before", false})
			}
		}
	}
	for _, sw := range sweeps {
		fkey := map[string]string{"s1": "s1f", "s2": "s2f"}[sw.id]
		for _, st := range sizeStores {
			for _, n := range sw.sizes(b.cfg)[1:] {
				k := sweepKey(fkey, st.id, n, "")
				cs = append(cs, comparison{fkey + st.id, fmt.Sprintf("%s, time to reach %s %s (s)", st.name, sizeLabel(n), sw.label), k, k + ".before", false})
			}
		}
	}
	return cs
}

// compareTable renders the before → after table, and the lines that got
// worse by more than regressionLimit.
func (b *bench) compareTable() (string, []string) {
	if b.cfg.rlfsBefore == "" {
		return "", nil
	}
	var rs []row
	var worse []string
	for _, c := range b.comparisons() {
		r, bad, ok := b.compareRow(c)
		if !ok {
			continue
		}
		rs = append(rs, r)
		if bad {
			worse = append(worse, fmt.Sprintf("%s %s: %s, %s", c.id, c.what, r.ratio, r.result))
		}
	}
	for _, r := range b.compareOnce() {
		rs = append(rs, r)
		if r.result == "WORSE" {
			worse = append(worse, fmt.Sprintf("%s %s: %s", r.id, r.what, r.ratio))
		}
	}
	return renderCompare(rs), worse
}

// compareRow is one comparison: medians of each binary, the median of
// the same-round ratios, and whether it is worse by more than the limit.
// Points that one binary did not reach compare as "n/r".
func (b *bench) compareRow(c comparison) (row, bool, bool) {
	s := b.s
	na, nb := len(s[c.after]), len(s[c.before])
	if na == 0 && nb == 0 {
		return row{}, false, false
	}
	cell := func(k string) string {
		if len(s[k]) == 0 {
			return "n/r"
		}
		return fmt.Sprintf("%.2f", s.med(k))
	}
	r := row{id: c.id, what: c.what, rlfs: cell(c.before), typical: cell(c.after)}
	if na == 0 || nb == 0 {
		r.ratio, r.result = "–", "not comparable"
		return r, false, true
	}
	ratio := s.ratio(c.after, c.before)
	if math.IsNaN(ratio) { // measured once each: the ratio of the two
		ratio = s.med(c.after) / s.med(c.before)
	}
	worse := func(v float64) bool {
		if c.higher {
			return v < 1-regressionLimit
		}
		return v > 1+regressionLimit
	}
	bad := worse(ratio)
	r.ratio = x(ratio)
	r.result = map[bool]string{true: "WORSE", false: "ok"}[bad]
	if n := min(na, nb); n > 1 {
		k := 0
		for i := range n {
			if worse(s[c.after][i] / s[c.before][i]) {
				k++
			}
		}
		r.result += fmt.Sprintf(" (%d of %d rounds worse)", k, n)
	}
	return r, bad, true
}

// compareOnce compares the figures measured once per binary: lateness,
// waiters, meters, the fleet's handoffs and commands per grant.
func (b *bench) compareOnce() []row {
	if b.before == nil {
		return nil
	}
	var rs []row
	add := func(id, what string, after, before float64) {
		ratio := after / before
		rs = append(rs, row{id: id, what: what, rlfs: fmt.Sprintf("%.2f", before), typical: fmt.Sprintf("%.2f", after),
			ratio: x(ratio), result: map[bool]string{true: "WORSE", false: "ok"}[ratio > 1+regressionLimit]})
	}
	if a, o := b.late, b.before.late; a.n > 0 && o.n > 0 {
		add("d1", "grant lateness p50 (µs, measured once each)", a.p50, o.p50)
		add("d2", "grant lateness p99 (µs, measured once each)", a.p99, o.p99)
	}
	if a, o := b.wait, b.before.wait; a != nil && o != nil {
		add("e1", "blocked waiters: daemon RSS with the queue (MB, once each)", float64(a.bulk.rssWith)*1024/1e6, float64(o.bulk.rssWith)*1024/1e6)
		add("e1q", "blocked waiters: queuing them all at once (ms, once each)", ms64(a.bulk.enqueue), ms64(o.bulk.enqueue))
		add("e2", "waiters one by one: grant handover (µs per grant, once each)", perGrant(a.seq), perGrant(o.seq))
		add("e2q", "waiters one by one: queuing them (ms, once each)", ms64(a.seq.enqueue), ms64(o.seq.enqueue))
	}
	if a, o := b.met, b.before.met; a != nil && o != nil {
		add("f1", "meters: first `ls` after start (ms, median of starts)", median(a.lsCold), median(o.lsCold))
		add("f2", "meters: `ls` repeated (ms)", median(a.lsWarm), median(o.lsWarm))
		add("f3", "meters: start-up, exec to mounted (ms)", median(a.starts), median(o.starts))
		add("f4s", "meters: daemon RSS after start (MB)", median(a.rssStart)*1024/1e6, median(o.rssStart)*1024/1e6)
		add("f4", "meters: daemon RSS after ls (MB)", median(a.rssLs)*1024/1e6, median(o.rssLs)*1024/1e6)
	}
	return append(rs, b.compareFleetOnce()...)
}

func ms64(d time.Duration) float64 { return d.Seconds() * 1e3 }

func perGrant(r fifoRun) float64 { return r.grant.Seconds() * 1e6 / float64(max(r.granted, 1)) }

// compareFleetOnce compares the fleet's handoffs and commands per grant.
func (b *bench) compareFleetOnce() []row {
	if b.fl == nil || b.before.fl == nil {
		return nil
	}
	a, o := b.fl, b.before.fl
	var rs []row
	add := func(id, what string, after, before float64) {
		ratio := after / before
		rs = append(rs, row{id: id, what: what, rlfs: fmt.Sprintf("%.2f", before), typical: fmt.Sprintf("%.2f", after),
			ratio: x(ratio), result: map[bool]string{true: "WORSE", false: "ok"}[ratio > 1+regressionLimit]})
	}
	if len(a.handoffs) > 0 && len(o.handoffs) > 0 {
		sa, so := slices.Sorted(slices.Values(a.handoffs)), slices.Sorted(slices.Values(o.handoffs))
		add("x2", "cross-host handoff p50 (µs, measured once each)", quantile(sa, 0.5), quantile(so, 0.5))
		add("x3", "cross-host handoff p99 (µs, measured once each)", quantile(sa, 0.99), quantile(so, 0.99))
	}
	if a.grants > 0 && o.grants > 0 {
		add("x4", "Redis commands sent per grant (measured once each)", float64(a.clientCommands())/float64(a.grants), float64(o.clientCommands())/float64(o.grants))
		add("x4f", "Redis server time per FCALL (µs, measured once each)", a.fcallUs, o.fcallUs)
	}
	return rs
}

// renderCompare renders the comparison rows: rlfs holds the before
// figure, typical the after one.
func renderCompare(rs []row) string {
	all := [][]string{{"#", "measurement", "before", "after", "after / before (median of same-round ratios)", "verdict"}}
	for _, r := range rs {
		all = append(all, []string{r.id, r.what, r.rlfs, r.typical, r.ratio, r.result})
	}
	return renderGrid(all)
}
