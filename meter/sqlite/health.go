package sqlite

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Health is how the store's writes fare since Open. A write that fails (a
// full disk, an I/O error) changes nothing and is retried: a grant by the
// next grant, the queue into SQLite by the next flush. So an outage ends by
// itself as soon as a write works again.
type Health struct {
	// WriteErrors counts the writes that failed: to the grant journal (the
	// grant then failed with EIO) and into SQLite (retried).
	WriteErrors uint64
	// Outages counts the times writes started to fail after working.
	Outages uint64
	// Failing is set from a failed write until a write works again.
	Failing bool
	// Since is when the current outage began; zero unless Failing.
	Since time.Time
}

// Health reports how the store's writes fare. Safe for concurrent use.
func (s *Store) Health() Health {
	var h Health
	for _, o := range []*outage{&s.journalOut, &s.sqliteOut} {
		o.mu.Lock()
		h.WriteErrors += o.errs
		h.Outages += o.outages
		if o.failing && (!h.Failing || o.since.Before(h.Since)) {
			h.Since = o.since
		}
		h.Failing = h.Failing || o.failing
		o.mu.Unlock()
	}
	return h
}

// outage follows the writes to one part of the store (the grant journal, or
// SQLite) and logs one Warn line when they start to fail and one Info line
// when they work again. The zero value logs nowhere; safe for concurrent use.
type outage struct {
	log      *slog.Logger
	part     string // "grant journal" or "SQLite"
	effect   string // what fails meanwhile
	path     string
	failingF atomic.Bool // a fast path for ok

	mu      sync.Mutex
	failing bool
	since   time.Time
	failedN uint64 // in this outage
	errs    uint64
	outages uint64
}

func (o *outage) init(log *slog.Logger, part, effect, path string) {
	o.log, o.part, o.effect, o.path = log, part, effect, path
}

// fail records a failed write.
func (o *outage) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errs++
	o.failedN++
	if o.failing {
		return
	}
	o.failing, o.since = true, time.Now()
	o.failingF.Store(true)
	o.outages++
	if o.log != nil {
		o.log.Warn("database writes fail; "+o.effect+" until a write works again",
			"part", o.part, "file", o.path, "err", err)
	}
}

// ok records a write that worked; it ends an outage.
func (o *outage) ok() {
	if !o.failingF.Load() {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.failing {
		return
	}
	if o.log != nil {
		o.log.Info("database writes work again", "part", o.part, "file", o.path,
			"failed_for", time.Since(o.since).Round(time.Millisecond), "failed_writes", o.failedN)
	}
	o.failing, o.since, o.failedN = false, time.Time{}, 0
	o.failingF.Store(false)
}
