package main

import (
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
)

// series is one line of a panel: a value per scrape, NaN for none.
type series struct {
	name string
	pts  []float64
}

// panel is one panel of the dashboard, computed.
type panel struct {
	title string
	unit  string  // "/s", "s", "%", ""
	ymax  float64 // 0: from the data
	lines []series
	empty string // what to say when there is no line
}

// Windows of the rates and quantiles, in scrapes: what Grafana's
// $__rate_interval is at a 1 s scrape interval with a few points of slack.
const (
	rateWindow     = 5
	quantileWindow = 10
)

// computePanels works out the dashboard's panels from the scrapes; hosts
// name the daemons, in the order of the scrapes' families.
func computePanels(sc []scrape, hosts []string) []panel {
	byMeter := func(m metricRef) string { return label(m.m, "meter") }
	byHost := func(m metricRef) string { return hosts[m.daemon] }
	pauses := panel{title: "Pauses", lines: gauge(sc, "rlfs_paused", byMeter, "paused ")}
	pauses.lines = append(pauses.lines, rate(sc, "rlfs_pauses_total", byMeter, "pauses started ")...)
	pauses.empty = "no data: this daemon does not export rlfs_paused yet (the pause is being merged)"
	return []panel{
		{title: "Grants per second", unit: "/s", lines: rate(sc, "rlfs_grants_total", byMeter, "")},
		{title: "Wait for a grant: p50 and p99", unit: "s", lines: quantiles(sc, "rlfs_wait_seconds")},
		{title: "Usage against each limit", unit: "%", ymax: 1, lines: usage(sc)},
		{title: "Waiting and in progress", lines: append(gauge(sc, "rlfs_waiters", byMeter, "waiting "), gauge(sc, "rlfs_holders", byMeter, "in progress ")...)},
		{title: "Hold time: p50 and p99", unit: "s", lines: quantiles(sc, "rlfs_hold_seconds")},
		pauses,
		{title: "Store outages (1: failing)", ymax: 1, lines: gauge(sc, "rlfs_store_writes_failing", byHost, "failing ")},
		{title: "Refused and timed out", unit: "/s", lines: append(rate(sc, "rlfs_rejections_total", byMeter, "refused "), rate(sc, "rlfs_timeouts_total", byMeter, "timed out ")...)},
	}
}

// metricRef is one metric of one daemon's scrape.
type metricRef struct {
	daemon int
	m      metricPtr
}

// each calls f with every metric of family name in scrape s.
func each(s scrape, name string, f func(metricRef)) {
	for d, fams := range s.fam {
		if fam := fams[name]; fam != nil {
			for _, m := range fam.GetMetric() {
				f(metricRef{d, m})
			}
		}
	}
}

// collect makes one series per key: at each scrape, the values of the
// metrics with that key combined by add (a sum or a max).
func collect(sc []scrape, name string, key func(metricRef) string, add func(a, b float64) float64) map[string][]float64 {
	out := map[string][]float64{}
	for i, s := range sc {
		each(s, name, func(r metricRef) {
			k := key(r)
			if out[k] == nil {
				out[k] = nanSlice(len(sc))
			}
			if math.IsNaN(out[k][i]) {
				out[k][i] = value(r.m)
			} else {
				out[k][i] = add(out[k][i], value(r.m))
			}
		})
	}
	return out
}

func nanSlice(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = math.NaN()
	}
	return s
}

func sorted(m map[string][]float64, prefix string) []series {
	var out []series
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, series{prefix + k, m[k]})
	}
	return out
}

func sum(a, b float64) float64 { return a + b }

// gauge is max by key of a gauge over the daemons (the store's figures
// are the same on each).
func gauge(sc []scrape, name string, key func(metricRef) string, prefix string) []series {
	return sorted(collect(sc, name, key, math.Max), prefix)
}

// rate is sum by key of a counter's per-second rate over rateWindow.
func rate(sc []scrape, name string, key func(metricRef) string, prefix string) []series {
	totals := collect(sc, name, key, sum)
	out := map[string][]float64{}
	for k, v := range totals {
		r := nanSlice(len(v))
		for i := rateWindow; i < len(v); i++ {
			if dt := sc[i].at.Sub(sc[i-rateWindow].at).Seconds(); dt > 0 && v[i] >= v[i-rateWindow] {
				r[i] = (v[i] - v[i-rateWindow]) / dt
			}
		}
		out[k] = r
	}
	return sorted(out, prefix)
}

// usage is each window's calls over its limit, by meter and window.
func usage(sc []scrape) []series {
	key := func(r metricRef) string { return label(r.m, "meter") + " " + label(r.m, "window") }
	used := collect(sc, "rlfs_window_calls", key, math.Max)
	limit := collect(sc, "rlfs_window_limit_calls", key, math.Max)
	out := map[string][]float64{}
	for k, u := range used {
		r := nanSlice(len(u))
		for i := range u {
			if l := limit[k]; l != nil && l[i] > 0 {
				r[i] = u[i] / l[i]
			}
		}
		out[k] = r
	}
	return sorted(out, "")
}

// quantiles is the p50 and p99 by meter of histogram name, summed over
// the daemons, over quantileWindow.
func quantiles(sc []scrape, name string) []series {
	// buckets[meter][scrape][le] = cumulative count, summed over daemons
	buckets := map[string][]map[float64]float64{}
	for i, s := range sc {
		each(s, name, func(r metricRef) {
			m := label(r.m, "meter")
			if buckets[m] == nil {
				buckets[m] = make([]map[float64]float64, len(sc))
			}
			if buckets[m][i] == nil {
				buckets[m][i] = map[float64]float64{}
			}
			for _, b := range r.m.GetHistogram().GetBucket() {
				if math.IsInf(b.GetUpperBound(), 1) {
					continue // counted from the sample count below
				}
				buckets[m][i][b.GetUpperBound()] += float64(b.GetCumulativeCount())
			}
			buckets[m][i][math.Inf(1)] += float64(r.m.GetHistogram().GetSampleCount())
		})
	}
	var out []series
	for _, q := range []float64{0.5, 0.99} {
		for _, m := range slices.Sorted(maps.Keys(buckets)) {
			pts := nanSlice(len(sc))
			for i := quantileWindow; i < len(sc); i++ {
				pts[i] = quantile(q, buckets[m][i-quantileWindow], buckets[m][i])
			}
			out = append(out, series{"p" + strconv.Itoa(int(q*100)) + " " + m, pts})
		}
	}
	return out
}

// quantile is the q-quantile of the observations between two readings of
// a histogram's cumulative buckets, interpolated linearly within its
// bucket; the largest finite bound if it falls in +Inf; NaN with none.
func quantile(q float64, before, after map[float64]float64) float64 {
	if after == nil {
		return math.NaN()
	}
	les := slices.Collect(maps.Keys(after))
	sort.Float64s(les)
	total := after[math.Inf(1)] - before[math.Inf(1)]
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, le := range les {
		n := after[le] - before[le]
		if n >= rank {
			if math.IsInf(le, 1) {
				return lower
			}
			if n == below {
				return le
			}
			return lower + (le-lower)*(rank-below)/(n-below)
		}
		lower, below = le, n
	}
	return lower
}
