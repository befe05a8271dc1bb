package main

import (
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/redis"
	"github.com/rlfs/rlfs/meter/sqlite"
)

// backend is the store a daemon serves: the embedded SQLite database, or a
// fleet's shared Redis.
type backend struct {
	store  meter.Store
	name   string // the database path or the store's URL, for messages
	attrs  []any  // for the "mounted" log line
	health func() storeHealth
	watch  func(*meter.Registry) (stop func())
	close  func() error
}

// storeHealth is how the store fares, for metrics: failed writes (or calls
// to an unreachable shared store), outages, and whether one is going on.
type storeHealth struct {
	WriteErrors, Outages uint64
	Failing              bool
	Since                time.Time
}

// openBackend opens the store c names.
func openBackend(c mountConfig, own *ownMount, log *slog.Logger) (*backend, error) {
	if c.fleet.store != "" {
		return openRedisBackend(c, log)
	}
	s, err := sqlite.Open(c.db, sqlite.Options{Sync: c.sync, Mountpoint: own.dir, Logger: log})
	if err != nil {
		return nil, err
	}
	return &backend{
		store: s, name: c.db, attrs: []any{"db", c.db, "sync", c.sync},
		health: func() storeHealth {
			h := s.Health()
			return storeHealth{WriteErrors: h.WriteErrors, Outages: h.Outages, Failing: h.Failing, Since: h.Since}
		},
		watch: func(reg *meter.Registry) func() { return watchDB(s, reg, own, log) },
		close: onceErr(s.Close),
	}, nil
}

func openRedisBackend(c mountConfig, log *slog.Logger) (*backend, error) {
	s, err := openFleet(c.fleet, c.history, log)
	if err != nil {
		return nil, err
	}
	return &backend{
		store: redis.Legacy(s), name: c.fleet.store,
		attrs: []any{"store", redactURL(c.fleet.store), "host", s.Host(), "lease", c.fleet.lease.String(), "store_prefix", c.fleet.prefix},
		health: func() storeHealth {
			h := s.Health()
			return storeHealth{WriteErrors: h.Failures, Outages: h.Outages, Failing: !h.Down.IsZero(), Since: h.Down}
		},
		watch: func(*meter.Registry) func() { return func() {} },
		close: onceErr(s.Close),
	}, nil
}

// onceErr makes close idempotent: the deferred call and the explicit one.
func onceErr(f func() error) func() error {
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() { err = f() })
		return err
	}
}

// redactURL is a store URL without its password, for logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
