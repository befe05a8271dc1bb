package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// row is one line of the results table; empty cells print as "–".
type row struct {
	id, what, rlfs, typical, minimal, ratio, target, result string
}

type reportText struct{ table, doc string }

func (b *bench) report() reportText {
	rows := b.rows()
	table := renderTable(rows)
	if cmp, worse := b.compareTable(); cmp != "" {
		table += "\nBefore (" + b.cfg.beforeLabel + ") → after (" + b.cfg.afterLabel + "):\n\n" + cmp
		for _, w := range worse {
			table += "WORSE by more than 10%: " + w + "\n"
		}
	}
	var doc strings.Builder
	b.writeDoc(&doc, renderTable(rows))
	return reportText{table: table, doc: doc.String()}
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func us(v float64) string   { return fmt.Sprintf("%.1f µs", v) }
func ms(v float64) string   { return fmt.Sprintf("%.1f ms", v) }
func rate(v float64) string { return fmt.Sprintf("%.0f /s", v) }
func mb(kib float64) string { return fmt.Sprintf("%.1f MB", kib*1024/1e6) }
func x(v float64) string    { return fmt.Sprintf("%.2f×", v) }

func (b *bench) rows() []row {
	rs := b.floorRows()
	rs = append(rs, b.onceRows()...)
	rs = append(rs, b.syncRows()...)
	rs = append(rs, b.unitsRows()...)
	rs = append(rs, b.fleetRows()...)
	rs = append(rs, b.quotaRows()...)
	return append(rs, b.sizeRows()...)
}

// floorRows are the measurements made against the floors (a, b).
func (b *bench) floorRows() []row {
	var rs []row
	s := b.s
	apis := []struct{ key, label string }{
		{"raw", "idle cycle, Go syscall.Open+Close"},
		{"os", "idle cycle, Go os.Open+Close"},
		{"python", "idle cycle, Python os.open+os.close"},
	}
	for i, a := range apis {
		k := "a." + a.key + "."
		if len(s[k+"rlfs"]) == 0 {
			continue
		}
		rt, rm := s.ratio(k+"rlfs", k+"typical"), s.ratio(k+"rlfs", k+"minimal")
		rs = append(rs, row{id: fmt.Sprintf("a%d", i+1), what: a.label,
			rlfs: us(s.med(k + "rlfs")), typical: us(s.med(k + "typical")), minimal: us(s.med(k + "minimal")),
			ratio:  fmt.Sprintf("%s typ, %s min", x(rt), x(rm)),
			target: "≤ 1.3× typ, ≤ 2.0× min", result: verdict(rt <= 1.3 && rm <= 2.0)})
	}
	for i, n := range []int{1, 4, 16} {
		k := fmt.Sprintf("b.%d.", n)
		if len(s[k+"rlfs"]) == 0 {
			continue
		}
		rt, rm := s.ratio(k+"rlfs", k+"typical"), s.ratio(k+"rlfs", k+"minimal")
		r := row{id: fmt.Sprintf("b%d", i+1), what: fmt.Sprintf("throughput, %d client process(es), cycles/s", n),
			rlfs: rate(s.med(k + "rlfs")), typical: rate(s.med(k + "typical")), minimal: rate(s.med(k + "minimal")),
			ratio: fmt.Sprintf("%s typ, %s min", x(rt), x(rm))}
		if n == 16 {
			r.target, r.result = "≥ 0.8× typ", verdict(rt >= 0.8)
		}
		rs = append(rs, r)
	}
	if k := "cpu.16."; len(s[k+"rlfs"]) > 0 {
		rs = append(rs, row{id: "b4", what: "daemon CPU per cycle, 16 client processes",
			rlfs: us(s.med(k + "rlfs")), typical: us(s.med(k + "typical")), minimal: us(s.med(k + "minimal")),
			ratio: fmt.Sprintf("%s typ, %s min", x(s.ratio(k+"rlfs", k+"typical")), x(s.ratio(k+"rlfs", k+"minimal")))})
	}
	return rs
}

// onceRows are fairness (c, medians over rounds) and the measurements made
// once (d, e, f).
func (b *bench) onceRows() []row {
	var rs []row
	s := b.s
	if len(s["c.maxmin"]) > 0 {
		mid := medianIndex(s["c.maxmin"])
		counts := b.fairCounts[mid]
		var cs []string
		for _, c := range counts {
			cs = append(cs, fmt.Sprintf("%.0f", c))
		}
		v := s.med("c.maxmin")
		rs = append(rs, row{id: "c", what: fmt.Sprintf("fairness, 4 processes on concurrency=1 for %s: max/min calls", b.cfg.fairDur),
			rlfs: fmt.Sprintf("%.3f (calls %s)", v, strings.Join(cs, "/")), target: "≤ 1.1", result: verdict(v <= 1.1)})
	}
	if b.late.n > 0 {
		l := b.late
		rs = append(rs,
			row{id: "d1", what: fmt.Sprintf("grant lateness p50, %d waiters on 100/1s", l.n), rlfs: us(l.p50)},
			row{id: "d2", what: fmt.Sprintf("grant lateness p99 (max %s)", us(l.max)), rlfs: us(l.p99), target: "≤ 1 ms", result: verdict(l.p99 <= 1000)})
	}
	if w := b.wait; w != nil {
		with := float64(w.bulk.rssWith)
		per := (with - float64(w.rssBefore)) * 1024 / float64(w.n) / 1e3
		rs = append(rs,
			row{id: "e1", what: fmt.Sprintf("%d blocked waiters: daemon RSS (idle %s, +%.1f KB per waiter)", w.n, mb(float64(w.rssBefore)), per),
				rlfs: mb(with), target: "≤ 100 MB", result: verdict(with*1024/1e6 <= 100)},
			row{id: "e2", what: fmt.Sprintf("%d waiters queued one by one: grant order vs arrival order", w.n),
				rlfs:   fmt.Sprintf("%d of %d granted, %d out of order, waiters/ listed %d", w.seq.granted, w.n, w.seq.mismatches, w.seq.listed),
				target: "exact FIFO", result: verdict(w.fifo())})
	}
	if m := b.met; m != nil {
		rs = append(rs,
			row{id: "f1", what: fmt.Sprintf("%d meters: `ls MNT`, first after start (median of %d starts)", m.n, len(m.starts)),
				rlfs: ms(median(m.lsCold)), target: "≤ 100 ms", result: verdict(median(m.lsCold) <= 100)},
			row{id: "f2", what: fmt.Sprintf("%d meters: `ls MNT`, repeated", m.n), rlfs: ms(median(m.lsWarm)), target: "≤ 100 ms", result: verdict(median(m.lsWarm) <= 100)},
			row{id: "f3", what: fmt.Sprintf("%d meters: start-up, exec to mounted", m.n), rlfs: ms(median(m.starts)), target: "≤ 1 s", result: verdict(median(m.starts) <= 1000)},
			row{id: "f4", what: fmt.Sprintf("%d meters: daemon RSS after start / after ls", m.n), rlfs: mb(median(m.rssStart)) + " / " + mb(median(m.rssLs))})
	}
	return rs
}

// syncRows compare --sync=full with normal (g).
func (b *bench) syncRows() []row {
	var rs []row
	s := b.s
	for i, n := range []int{1, 4} {
		k := fmt.Sprintf("g.%d.", n)
		if len(s[k+"full"]) == 0 {
			continue
		}
		r := row{id: fmt.Sprintf("g%d", i+1), what: fmt.Sprintf("--sync=full, %d client(s): wall time per grant (normal)", n),
			rlfs:  fmt.Sprintf("%s (%s)", us(s.med(k+"full")), us(s.med(k+"normal"))),
			ratio: x(s.ratio(k+"full", k+"normal")) + " normal"}
		if n == 4 {
			amort := s.ratio("g.4.full", "g.1.full")
			r.target = "≤ 0.5× the 1-client figure (group commit)"
			r.result = verdict(amort <= 0.5)
			r.ratio += fmt.Sprintf(", %s g1", x(amort))
		}
		rs = append(rs, r)
	}
	return rs
}

func renderTable(rs []row) string {
	head := row{"#", "measurement", "rlfs", "typical floor", "minimal floor", "ratio (median of rounds)", "target", "result"}
	cells := func(r row) []string {
		return []string{r.id, r.what, r.rlfs, r.typical, r.minimal, r.ratio, r.target, r.result}
	}
	all := [][]string{cells(head)}
	for _, r := range rs {
		all = append(all, cells(r))
	}
	return renderGrid(all)
}

// renderGrid renders a markdown table whose first line is the header;
// empty cells print as "–".
func renderGrid(all [][]string) string {
	width := make([]int, len(all[0]))
	for _, c := range all {
		for i, v := range c {
			if v == "" {
				c[i], v = "–", "–"
			}
			width[i] = max(width[i], len([]rune(v)))
		}
	}
	var out strings.Builder
	line := func(c []string) {
		for i, v := range c {
			fmt.Fprintf(&out, "| %s%s ", v, strings.Repeat(" ", width[i]-len([]rune(v))))
		}
		out.WriteString("|\n")
	}
	line(all[0])
	sep := make([]string, len(width))
	for i, w := range width {
		sep[i] = strings.Repeat("-", w)
	}
	line(sep)
	for _, c := range all[1:] {
		line(c)
	}
	return out.String()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// medianIndex is the index of a median element of xs (the lower one).
func medianIndex(xs []float64) int {
	idx := make([]int, len(xs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case xs[a] < xs[b]:
			return -1
		case xs[a] > xs[b]:
			return 1
		}
		return 0
	})
	return idx[(len(idx)-1)/2]
}

// quantile of sorted xs, nearest rank.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// machine describes the host for the report.
func machine(work string) []string {
	var out []string
	cpu, _ := os.ReadFile("/proc/cpuinfo")
	model, mhz := "?", ""
	for line := range strings.SplitSeq(string(cpu), "\n") {
		k, v, _ := strings.Cut(line, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "model name" && model == "?" {
			model = v
		}
		if k == "cpu MHz" && mhz == "" {
			mhz = v
		}
	}
	out = append(out, fmt.Sprintf("CPU: %s (%s MHz), nproc %d", model, mhz, runtime.NumCPU()))
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	osName := "?"
	if rel, err := os.ReadFile("/etc/os-release"); err == nil {
		for line := range strings.SplitSeq(string(rel), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				osName = strings.Trim(v, `"`)
			}
		}
	}
	out = append(out, fmt.Sprintf("Kernel: Linux %s, %s", strings.TrimSpace(string(kernel)), osName))
	if kib := procMeminfo("MemTotal"); kib > 0 {
		out = append(out, fmt.Sprintf("Memory: %.1f GB", float64(kib)*1024/1e9))
	}
	fuseVer := "?"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/hanwen/go-fuse/v2" {
				fuseVer = d.Version
			}
		}
	}
	out = append(out, fmt.Sprintf("Go %s, go-fuse %s", runtime.Version(), fuseVer))
	if f := fsyncLatency(work); f > 0 {
		out = append(out, fmt.Sprintf("Scratch directory %s: fsync of a 4 KiB write takes %s (median of 50)", work, us(f)))
	}
	return out
}

func procMeminfo(key string) int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	return -1
}

// fsyncLatency times write+fsync of 4 KiB in dir, in µs.
func fsyncLatency(dir string) float64 {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return -1
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	var ts []float64
	for i := range 50 {
		t0 := time.Now()
		if _, err := f.WriteAt(buf, int64(i%4)*4096); err != nil {
			return -1
		}
		if err := f.Sync(); err != nil {
			return -1
		}
		ts = append(ts, time.Since(t0).Seconds()*1e6)
	}
	return median(ts)
}
