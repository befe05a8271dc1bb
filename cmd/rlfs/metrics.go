package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rlfs/rlfs/meter"
)

// metrics exports every meter's state to Prometheus. Gauges and counters
// are read from the meters at scrape time; the wait histogram is fed by
// grants, the hold histogram by releases (this host's calls only, on a
// fleet too: each daemon reports its own host's waits and holds).
type metrics struct {
	reg    *meter.Registry
	health func() storeHealth // nil: not known
	wait   *prometheus.HistogramVec
	hold   *prometheus.HistogramVec
	pr     *prometheus.Registry
}

// durationBuckets are the upper bounds, in seconds, of the wait and hold
// histograms: from a tenth of a millisecond (an uncontended grant) through
// milliseconds and seconds to minutes, and on to the hours that a hold of a
// nightly job or a wait behind an hourly quota lasts. Twenty-two bounds,
// about two or three per decade, so that p50 and p99 read from them are
// within a bucket's width of the truth at every scale.
var durationBuckets = []float64{
	0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, // up to half a second
	1, 2.5, 5, 10, 30, // seconds
	60, 120, 300, 600, 1800, // minutes
	3600, 7200, 14400, // hours
}

var (
	descGrants     = prometheus.NewDesc("rlfs_grants_total", "Calls granted since the daemon started.", []string{"meter"}, nil)
	descReleases   = prometheus.NewDesc("rlfs_releases_total", "Calls completed by the last close of acquire since the daemon started.", []string{"meter"}, nil)
	descTimeouts   = prometheus.NewDesc("rlfs_timeouts_total", "Opens that failed with ETIMEDOUT after max_wait.", []string{"meter"}, nil)
	descInterrupts = prometheus.NewDesc("rlfs_interrupts_total", "Opens interrupted by a signal while waiting (EINTR).", []string{"meter"}, nil)
	descExpired    = prometheus.NewDesc("rlfs_max_hold_expirations_total", "Calls counted completed because they were held longer than max_hold.", []string{"meter"}, nil)
	descRejected   = prometheus.NewDesc("rlfs_rejections_total", "Opens refused at once: EAGAIN (O_NONBLOCK or max_waiters) or E2BIG (a cost no units limit can admit).", []string{"meter"}, nil)
	descRevoked    = prometheus.NewDesc("rlfs_revocations_total", "Grants taken back because their open failed afterwards (an O_TRUNC open of acquire); rlfs_grants_total still counts them.", []string{"meter"}, nil)
	descUnits      = prometheus.NewDesc("rlfs_units_granted_total", "Units of cost granted (acquire@N: N; acquire: 1), by their estimates.", []string{"meter"}, nil)
	descSettled    = prometheus.NewDesc("rlfs_settlements_total", "Calls whose actual cost was written to their descriptor.", []string{"meter"}, nil)
	descUnitsSet   = prometheus.NewDesc("rlfs_units_settled_total", "Actual costs written by the settled calls, summed.", []string{"meter"}, nil)
	descStoreErrs  = prometheus.NewDesc("rlfs_store_errors_total", "Database writes that failed.", []string{"meter"}, nil)
	descWaiters    = prometheus.NewDesc("rlfs_waiters", "Opens of acquire blocked in the queue.", []string{"meter"}, nil)
	descHolders    = prometheus.NewDesc("rlfs_holders", "Calls in progress.", []string{"meter"}, nil)
	descWindowUsed = prometheus.NewDesc("rlfs_window_calls", "Calls counting against a window limit now.", []string{"meter", "window"}, nil)
	descWindowMax  = prometheus.NewDesc("rlfs_window_limit_calls", "The window's limit N of N/PER.", []string{"meter", "window"}, nil)
	descPaused     = prometheus.NewDesc("rlfs_paused", "1 while the meter is paused (its pause file, a retry-after on an acquire descriptor), else 0.", []string{"meter"}, nil)
	descPauses     = prometheus.NewDesc("rlfs_pauses_total", "Pauses set or extended through this daemon since it started.", []string{"meter"}, nil)

	descWriteErrs = prometheus.NewDesc("rlfs_store_write_errors_total", "Writes to the database (its grant journal or SQLite) that failed, such as on a full disk; each is retried.", nil, nil)
	descOutages   = prometheus.NewDesc("rlfs_store_outages_total", "Times the database's writes started to fail after working.", nil, nil)
	descDownFor   = prometheus.NewDesc("rlfs_store_failing_seconds", "How long the store has failed (writes failing, or a fleet's shared store unreachable); 0 while it works.", nil, nil)
	descFailing   = prometheus.NewDesc("rlfs_store_writes_failing", "1 while the database's writes fail (from a failed write until one works), else 0.", nil, nil)
)

func newMetrics() *metrics {
	m := &metrics{pr: prometheus.NewRegistry()}
	m.wait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rlfs_wait_seconds",
		Help:    "How long opens of acquire on this host waited for their grant.",
		Buckets: durationBuckets,
	}, []string{"meter"})
	m.hold = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rlfs_hold_seconds",
		Help:    "How long calls granted on this host were held, from grant to the last close of acquire (past max_hold too).",
		Buckets: durationBuckets,
	}, []string{"meter"})
	// The Go and process collectors give go_goroutines, process_open_fds and
	// process_resident_memory_bytes: leaks show there first.
	m.pr.MustRegister(m, m.wait, m.hold, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observe records a grant's wait; it is the registry's OnGrant hook.
func (m *metrics) observe(meterName string, waited time.Duration) {
	m.wait.WithLabelValues(meterName).Observe(waited.Seconds())
}

// observeHold records how long a call was held; it is the registry's
// OnRelease hook.
func (m *metrics) observeHold(meterName string, held time.Duration) {
	m.hold.WithLabelValues(meterName).Observe(held.Seconds())
}

// Describe sends the descriptors of the scrape-time metrics.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGrants, descReleases, descTimeouts, descInterrupts, descExpired,
		descRejected, descRevoked, descUnits, descSettled, descUnitsSet, descStoreErrs, descWaiters, descHolders, descWindowUsed, descWindowMax,
		descPaused, descPauses,
		descWriteErrs, descOutages, descFailing, descDownFor} {
		ch <- d
	}
}

// Collect reads every meter's snapshot, and the store's health.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	if m.health != nil {
		h := m.health()
		ch <- prometheus.MustNewConstMetric(descWriteErrs, prometheus.CounterValue, float64(h.WriteErrors))
		ch <- prometheus.MustNewConstMetric(descOutages, prometheus.CounterValue, float64(h.Outages))
		failing := 0.0
		if h.Failing {
			failing = 1
		}
		ch <- prometheus.MustNewConstMetric(descFailing, prometheus.GaugeValue, failing)
		downFor := 0.0
		if h.Failing && !h.Since.IsZero() {
			downFor = time.Since(h.Since).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(descDownFor, prometheus.GaugeValue, downFor)
	}
	if m.reg == nil {
		return
	}
	for _, s := range m.statuses() {
		m.collectMeter(ch, s)
	}
}

// collectBudget bounds how long a scrape waits for the meters' figures. A
// meter's status asks the store; while a fleet's store does not answer
// (stopped, or cut off without a reset), each ask waits for the store
// client's timeout, one meter after the other: scrapes took 3 to 6 s
// with two meters, longer than Prometheus waits with a dozen, so the
// store's health above never arrived just when it matters.
const collectBudget = 2 * time.Second

// statuses reads every meter's status at once, and returns, in name
// order, those that came within collectBudget; the others are left out of
// this scrape (their reads end on their own).
func (m *metrics) statuses() []meter.Snapshot {
	names := m.reg.Names()
	got := make(chan meter.Snapshot, len(names)) // never blocks a late read
	n := 0
	for _, name := range names {
		mt := m.reg.Get(name)
		if mt == nil {
			continue
		}
		n++
		go func() { got <- mt.Status() }()
	}
	timeout := time.NewTimer(collectBudget)
	defer timeout.Stop()
	var out []meter.Snapshot
wait:
	for ; n > 0; n-- {
		select {
		case s := <-got:
			out = append(out, s)
		case <-timeout.C:
			break wait
		}
	}
	slices.SortFunc(out, func(a, b meter.Snapshot) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// collectMeter sends the scrape-time metrics of one meter's status.
func (m *metrics) collectMeter(ch chan<- prometheus.Metric, s meter.Snapshot) {
	name := s.Name
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), name)
	}
	counter(descGrants, s.Stats.Grants)
	counter(descReleases, s.Stats.Releases)
	counter(descTimeouts, s.Stats.Timeouts)
	counter(descInterrupts, s.Stats.Interrupts)
	counter(descExpired, s.Stats.Expired)
	counter(descRejected, s.Stats.Rejected)
	counter(descRevoked, s.Stats.Revoked)
	counter(descUnits, uint64(s.Stats.Units))
	counter(descSettled, s.Stats.Settled)
	counter(descUnitsSet, uint64(s.Stats.UnitsSettled))
	counter(descStoreErrs, s.Stats.StoreErrs)
	counter(descPauses, s.Stats.Pauses)
	paused := 0.0
	if s.Pause.Active(s.Now) {
		paused = 1
	}
	ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, paused, name)
	ch <- prometheus.MustNewConstMetric(descWaiters, prometheus.GaugeValue, float64(s.WaitersN), name)
	ch <- prometheus.MustNewConstMetric(descHolders, prometheus.GaugeValue, float64(s.HoldersN), name)
	for _, u := range s.Usage {
		w := u.Window.String()
		ch <- prometheus.MustNewConstMetric(descWindowUsed, prometheus.GaugeValue, float64(u.Used), name, w)
		ch <- prometheus.MustNewConstMetric(descWindowMax, prometheus.GaugeValue, float64(u.Window.N), name, w)
	}
}

// serve listens on addr and serves /metrics until the returned stop is called.
func (m *metrics) serve(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %v; pick a free address such as 127.0.0.1:9187", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.pr, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}
