package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rlfs/rlfs/fsnode"
	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/redis"
)

// fleetConfig is the shared store of a fleet: --store and its flags.
type fleetConfig struct {
	store   string        // redis:// or rediss:// URL; "" is the embedded store
	host    string        // --host (default: the hostname)
	lease   time.Duration // --lease
	prefix  string        // --store-prefix
	journal string        // --journal (default: beside the database)
	// journalNote is a warning for the log: the journal is used at its
	// old default place (see defaults).
	journalNote string
}

// addFleetFlags registers the fleet's flags on fs.
func (f *fleetConfig) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&f.store, "store", "", "")
	fs.StringVar(&f.host, "host", "", "")
	fs.DurationVar(&f.lease, "lease", redis.DefaultLease, "")
	fs.StringVar(&f.prefix, "store-prefix", redis.DefaultPrefix, "")
	fs.StringVar(&f.journal, "journal", "", "")
}

// applyFleetConfig takes the config file's fleet settings whose flags were
// not given.
func (f *fleetConfig) applyConfig(fc fileConfig, set map[string]bool) error {
	if !set["store"] && fc.Store != "" {
		f.store = fc.Store
	}
	if !set["host"] && fc.Host != "" {
		f.host = fc.Host
	}
	if !set["store-prefix"] && fc.StorePrefix != "" {
		f.prefix = fc.StorePrefix
	}
	if !set["journal"] && fc.Journal != "" {
		f.journal = fc.Journal
	}
	if !set["lease"] && fc.Lease != "" {
		d, err := meter.ParseDuration(fc.Lease)
		if err != nil {
			return fmt.Errorf("config: lease %q: %v; give a duration such as 10s", fc.Lease, err)
		}
		f.lease = d
	}
	return nil
}

// check validates the fleet flags against the others.
func (f *fleetConfig) check(set map[string]bool) error {
	bad := func(format string, args ...any) error {
		return &usageError{msg: fmt.Sprintf(format, args...), hint: "rlfs mount --help"}
	}
	if f.store == "" {
		for _, k := range []string{"host", "lease", "store-prefix", "journal"} {
			if set[k] {
				return bad("--%s needs --store: it configures the shared store of a fleet", k)
			}
		}
		return nil
	}
	if !strings.HasPrefix(f.store, "redis://") && !strings.HasPrefix(f.store, "rediss://") {
		return bad("--store %q: want redis://[USER[:PASS]@]HOST:PORT[/DB] or rediss://… for TLS", f.store)
	}
	if set["sync"] {
		return bad("--sync is for the embedded SQLite store; with --store the meters live in Redis: drop --sync")
	}
	if f.lease < 300*time.Millisecond {
		return bad("--lease %v: give at least 300ms (default 10s); a host's calls count until its lease lapses after it dies", f.lease)
	}
	if set["host"] || f.host != "" { // --host "" too: only no --host means the hostname
		if err := redis.ValidHost(f.host); err != nil {
			return bad("--host: %v", err)
		}
	}
	if f.prefix == "" || strings.ContainsAny(f.prefix, "{} \t\n") {
		return bad("--store-prefix %q: give a word without braces or spaces, such as rlfs or team-a", f.prefix)
	}
	return nil
}

// defaults fills in the host (the hostname) and the journal: beside the
// database, fleet-PREFIX-HOST.journal, where db is the database path the
// daemon was given (--db, db in --config, $RLFS_DB), or "" for the default
// one. A journal that an earlier rlfs kept beside the default database,
// where none is beside db yet, is kept in use (see journalNote).
func (f *fleetConfig) defaults(db string) error {
	if f.host == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return fmt.Errorf("no hostname to name this host in the fleet; pass --host NAME")
		}
		if err := redis.ValidHost(h); err != nil {
			return fmt.Errorf("this machine's hostname cannot name it in the fleet: %v", err)
		}
		f.host = h
	}
	if f.journal != "" {
		return nil
	}
	dflt, err := defaultDB()
	if err != nil && db == "" {
		return err
	}
	name := "fleet-" + f.prefix + "-" + f.host + ".journal"
	f.journal = filepath.Join(filepath.Dir(dflt), name)
	if db == "" || err != nil {
		return nil
	}
	old := f.journal
	f.journal = filepath.Join(filepath.Dir(db), name)
	if old != f.journal && !exists(f.journal) && exists(old) {
		f.journalNote = fmt.Sprintf("this host's journal is still at %s, beside the default database, where rlfs kept it before; it stays in use. "+
			"To keep it beside the database: stop rlfs, mv %s %s, start rlfs again (or pass --journal %s to keep it where it is)",
			old, old, f.journal, old)
		f.journal = old
	}
	return nil
}

// exists reports whether something is at path.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// openFleet connects this host to the fleet's shared store.
func openFleet(f fleetConfig, history time.Duration, log *slog.Logger) (*redis.Store, error) {
	return redis.Open(redis.Options{
		URL: f.store, Password: os.Getenv("RLFS_STORE_PASSWORD"), Host: f.host, Lease: f.lease,
		Prefix: f.prefix, History: history, Logger: log, Journal: f.journal, ProcessID: fsnode.ProcessID,
	})
}
