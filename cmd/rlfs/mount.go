package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/rlfs/rlfs/fsnode"
	"github.com/rlfs/rlfs/meter"
)

const mountUsage = `SYNOPSIS
    rlfs mount [--db PATH] [--config FILE] [--meter NAME=SPEC]...
               [--sync normal|full] [--metrics ADDR] [--history D]
               [--reconfigure] [--allow-other] [--debug] MOUNTPOINT
    rlfs mount --store redis://[USER[:PASS]@]HOST:PORT[/DB] [--host NAME]
               [--lease D] [--store-prefix P] [--journal PATH]
               [other flags] MOUNTPOINT

Serves the meters of the database at MOUNTPOINT, in the foreground, until
SIGINT or SIGTERM. Each meter is a directory; opening its "acquire" file
blocks until the meter permits a call, and the last close records the
call's completion. MOUNTPOINT is created if missing. SIGHUP re-reads
--config: its new meters are created, existing ones keep their stored
limits (unless --reconfigure), and a bad file changes nothing.

FLAGS
    --db PATH          the SQLite database (default: $RLFS_DB, else
                       /var/lib/rlfs/meters.db as root, else
                       ${XDG_STATE_HOME:-~/.local/state}/rlfs/meters.db)
    --meter NAME=SPEC  declare a meter (repeatable). SPEC is items separated
                       by commas: N/PER, concurrency=K, rate=N/PER, burst=B,
                       count=completion|grant, max_wait=D, max_hold=D,
                       max_waiters=N, max_pause=D (the longest pause its
                       pause file or a retry-after may set; default 1h),
                       and the items that count units of
                       cost (acquire@N costs N): units:N/PER,
                       units:rate=N/PER, units:burst=B. A meter that
                       already exists in the database keeps its stored
                       limits (default: none)
    --config FILE      a TOML file with the keys db, sync, allow_other,
                       metrics, history, and for a fleet store, host,
                       lease, store_prefix, journal (the flags of the same
                       names); and [meters] (NAME = "SPEC", or a table of
                       items); flags given on the command line win
                       (default: none)
    --metrics ADDR     serve Prometheus metrics at http://ADDR/metrics,
                       such as 127.0.0.1:9187 (default: off)
    --history D        keep completed calls for D after they stop counting,
                       so that a window widened later (a limits write) still
                       judges them; older calls are grouped, on the safe
                       side (such as 7d; default: 1d)
    --reconfigure      let --meter and --config replace the stored limits of existing
                       meters (default: false)
    --sync MODE        normal: survives kill -9; full: fsync every grant,
                       survives power loss (default: normal)
    --allow-other      let other users use the mount (default: false)
    --debug            log every FUSE request (default: false)
    --cpuprofile FILE  write a Go CPU profile of the daemon to FILE until it
                       stops, for go tool pprof (default: none)

FLEET FLAGS (one quota across hosts; see docs/fleet.md)
    --store URL        keep the meters in a shared Redis 7 (redis://, or
                       rediss:// for TLS; a Cluster node works too) instead
                       of the SQLite database; every host's daemon points at
                       the same store. The password may come from
                       $RLFS_STORE_PASSWORD instead of the URL. With --store,
                       --db only says where the journal goes (default: none)
    --host NAME        this host's name in the fleet, unique among its
                       daemons (default: the hostname)
    --lease D          how long this host's calls and waiters count after it
                       dies or is cut off; it renews every D/3 and stops
                       granting before it can lapse (default: 10s)
    --store-prefix P   the prefix of every key and channel, so that several
                       fleets can share one Redis (default: rlfs)
    --journal PATH     this host's own record of its calls and meters, to
                       deliver what it owes after a restart and to put its
                       calls back should the store lose its data (default:
                       fleet-PREFIX-HOST.journal beside the database: --db,
                       db in --config, $RLFS_DB, or the default database)

EXAMPLES
    rlfs mount --meter 'email=1/s,75/h' /mnt/rl
    rlfs mount --db /tmp/demo.db --meter 'api=rate=10/s,burst=20,concurrency=4' /tmp/rl
    rlfs mount --config /etc/rlfs/rlfs.toml --metrics 127.0.0.1:9187 /mnt/rl
    rlfs mount --store redis://10.0.0.5:6379 --host web1 --meter 'api=10/s' /mnt/rl
    rlfs mount --meter 'demo=2/1s' /tmp/rl & rlfs wait /tmp/rl   # in a script
`

// meterFlags collects repeated --meter flags.
type meterFlags []string

func (m *meterFlags) String() string     { return strings.Join(*m, " ") }
func (m *meterFlags) Set(v string) error { *m = append(*m, v); return nil }

type declared struct {
	name string
	spec meter.Spec
}

type mountConfig struct {
	db          string
	dir         string
	meters      []declared
	sync        string
	reconfigure bool
	allowOther  bool
	debug       bool
	config      string
	metrics     string
	cpuprofile  string
	history     time.Duration
	// configHistory is the config file's history, used unless --history is given.
	configHistory string
	dbFrom        string          // where db came from: --db, db in FILE, $RLFS_DB, the default
	meterFlags    []string        // the --meter values, for a reload
	set           map[string]bool // the flags given on the command line
	fleet         fleetConfig
}

func parseMount(args []string, stdout, stderr io.Writer) (mountConfig, error) {
	var c mountConfig
	var meters meterFlags
	fs := newFlagSet("rlfs mount")
	fs.StringVar(&c.db, "db", "", "")
	fs.Var(&meters, "meter", "")
	fs.StringVar(&c.sync, "sync", "normal", "")
	fs.BoolVar(&c.reconfigure, "reconfigure", false, "")
	fs.BoolVar(&c.allowOther, "allow-other", false, "")
	fs.BoolVar(&c.debug, "debug", false, "")
	fs.StringVar(&c.config, "config", "", "")
	fs.StringVar(&c.metrics, "metrics", "", "")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "")
	history := fs.String("history", "", "")
	c.fleet.addFlags(fs)
	if err := parse(fs, args, mountUsage, stdout); err != nil {
		return c, err
	}
	switch fs.NArg() {
	case 1:
		c.dir = fs.Arg(0)
	case 0:
		return c, &usageError{msg: "missing MOUNTPOINT", hint: "rlfs mount --meter 'demo=2/1s' /tmp/rl"}
	default:
		return c, &usageError{msg: fmt.Sprintf("one MOUNTPOINT expected, got %q (put flags before it)", fs.Args()), hint: "rlfs mount --help"}
	}
	c.set, c.meterFlags = map[string]bool{}, meters
	fs.Visit(func(f *flag.Flag) { c.set[f.Name] = true })
	if c.config != "" {
		if err := applyConfig(&c, c.set); err != nil {
			return c, err
		}
	}
	switch {
	case c.set["db"]:
		c.dbFrom = "--db"
	case c.db != "":
		c.dbFrom = "db in " + c.config
	}
	if c.sync != "normal" && c.sync != "full" {
		return c, &usageError{msg: fmt.Sprintf("--sync %q: want normal or full", c.sync), hint: "rlfs mount --help"}
	}
	if *history == "" {
		*history = c.configHistory
	}
	if err := c.setHistory(*history); err != nil {
		return c, err
	}
	if err := c.fleet.check(c.set); err != nil {
		return c, err
	}
	return c, addMeterFlags(&c, meters)
}

// applyConfig reads c.config: its meters, and the settings whose flags were
// not set on the command line.
func applyConfig(c *mountConfig, set map[string]bool) error {
	fc, ms, err := loadConfig(c.config)
	if err != nil {
		return err
	}
	c.meters = ms
	if !set["db"] && fc.DB != "" {
		c.db = fc.DB
	}
	if !set["sync"] && fc.Sync != "" {
		c.sync = fc.Sync
	}
	if !set["allow-other"] && fc.AllowOther != nil {
		c.allowOther = *fc.AllowOther
	}
	if !set["metrics"] && fc.Metrics != "" {
		c.metrics = fc.Metrics
	}
	c.configHistory = fc.History
	return c.fleet.applyConfig(fc, set)
}

// setHistory parses the --history (or config history) value; "" is the default.
func (c *mountConfig) setHistory(text string) error {
	c.history = meter.DefaultHistory
	if text == "" {
		return nil
	}
	d, err := meter.ParseDuration(text)
	if err == nil && d <= 0 {
		err = fmt.Errorf("must be longer than zero")
	}
	if err != nil {
		return &usageError{msg: fmt.Sprintf("--history %q: %v; give a duration such as 1d or 12h", text, err), hint: "rlfs mount --help"}
	}
	c.history = d
	return nil
}

// addMeterFlags adds the --meter NAME=SPEC values to c.meters; a meter
// declared twice, on the command line or in the config, is an error.
func addMeterFlags(c *mountConfig, meters []string) error {
	seen := map[string]bool{}
	for _, d := range c.meters {
		seen[d.name] = true
	}
	bad := func(format string, args ...any) error {
		return &usageError{msg: fmt.Sprintf(format, args...), hint: "rlfs mount --help"}
	}
	for _, m := range meters {
		name, specText, ok := strings.Cut(m, "=")
		if !ok {
			return bad("--meter %q: want NAME=SPEC, such as email=1/s,75/h", m)
		}
		if err := meter.ValidName(name); err != nil {
			return bad("--meter %q: %v", m, err)
		}
		spec, err := meter.ParseSpec(strings.ReplaceAll(specText, "\n", ","))
		if err != nil {
			return bad("--meter %q: %v", m, err)
		}
		if seen[name] {
			return bad("--meter %q: meter %q is declared twice (on the command line or in --config); keep one", m, name)
		}
		seen[name] = true
		c.meters = append(c.meters, declared{name, spec})
	}
	return nil
}

// defaultDB is where the database lives without --db.
func defaultDB() (string, error) {
	if p := os.Getenv("RLFS_DB"); p != "" {
		return p, nil
	}
	if os.Geteuid() == 0 {
		return "/var/lib/rlfs/meters.db", nil
	}
	state := os.Getenv("XDG_STATE_HOME")
	if state == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no home directory to keep the database in; pass --db PATH")
		}
		state = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(state, "rlfs", "meters.db"), nil
}

func runMount(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	hup, stopSignals := daemonSignals()
	defer stopSignals()
	c, err := parseMount(args, stdout, stderr)
	if err != nil {
		return err
	}
	if err := checkAllowOther(c.allowOther, os.Geteuid(), fuseConf); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	own, dead, err := preflight(&c)
	if err != nil {
		return err
	}
	dir := own.dir
	if c.cpuprofile != "" {
		stop, err := startProfile(c.cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
	}
	met := newMetrics()
	b, err := openBackend(c, own, log)
	if err != nil {
		return err
	}
	defer b.close()
	if dead { // detached only once the store is ours: no second daemon on it races us
		if err := reclaimMountpoint(dir, log); err != nil {
			return err
		}
	}
	reg, err := b.open(meter.Options{OnGrant: met.observe, OnRelease: met.observeHold, RetryGrace: retryGrace, History: c.history})
	if err != nil {
		return fmt.Errorf("load %s: %w", b.name, err)
	}
	if err := declareMeters(reg, c.meters, c.reconfigure, log); err != nil {
		return err
	}
	met.reg, met.health = reg, b.health
	defer b.watch(reg)()
	if c.metrics != "" {
		stop, err := met.serve(c.metrics, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	mnt, err := mountFS(dir, reg, c, log)
	if err != nil {
		return err
	}
	own.mounted()
	log.Info("mounted", append([]any{"mountpoint", dir, "meters", len(reg.Names()), "history", c.history.String(), "pid", os.Getpid()}, b.attrs...)...)
	serve(ctx, mnt, reg, dir, hup, (&reloader{c: c, reg: reg, own: own, log: log}).reload, log)
	if err := b.close(); err != nil {
		return fmt.Errorf("close %s: %w", b.name, err)
	}
	log.Info("stopped", "mountpoint", dir)
	return nil
}

// preflight checks, before anything is created or mounted, the mountpoint
// and the files the daemon will use, and fills in the default database. It
// returns the mount to be (its path resolved) and whether a dead rlfs mount
// must be reclaimed there first.
func preflight(c *mountConfig) (own *ownMount, dead bool, err error) {
	dflt := c.db == "" && c.fleet.store == ""
	if dflt {
		if c.db, err = defaultDB(); err != nil {
			return nil, false, err
		}
		c.dbFrom = "the default"
		if os.Getenv("RLFS_DB") != "" {
			c.dbFrom = "$RLFS_DB"
		}
	}
	if c.fleet.store != "" {
		if err := c.fleet.defaults(c.db); err != nil {
			return nil, false, err
		}
	}
	dir, dead, err := checkMountpoint(c.dir)
	if err != nil {
		return nil, false, err
	}
	own = &ownMount{dir: dir}
	if err := checkOwnFiles(*c, own); err != nil {
		return nil, false, err
	}
	if dflt {
		if err := os.MkdirAll(filepath.Dir(c.db), 0o755); err != nil {
			return nil, false, fmt.Errorf("cannot create %s: %v; create it or pass --db", filepath.Dir(c.db), err)
		}
	}
	return own, dead, nil
}

// startProfile writes a CPU profile to path until the returned stop.
func startProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %v", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// declareMeters applies --meter and config entries under the source-of-truth
// rule, logging what it did.
func declareMeters(reg *meter.Registry, meters []declared, reconfigure bool, log *slog.Logger) error {
	for _, d := range meters {
		res, err := reg.Declare(d.name, d.spec, reconfigure)
		switch {
		case err != nil:
			return fmt.Errorf("declare meter %q: %w", d.name, err)
		case res.Created:
			log.Info("meter created", "meter", d.name, "limits", d.spec.String())
		case res.Changed:
			log.Info("meter reconfigured", "meter", d.name, "limits", d.spec.String())
		case res.Differed:
			log.Warn("meter keeps its stored limits; pass --reconfigure to replace them, or write its limits file",
				"meter", d.name, "stored", res.Stored.String(), "declared", d.spec.String())
		}
	}
	return nil
}

// mountFS creates the mountpoint if missing and mounts the meters there.
func mountFS(dir string, reg *meter.Registry, c mountConfig, log *slog.Logger) (*fsnode.Mount, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create mountpoint %s: %v; create it or choose another", dir, err)
	}
	root := fsnode.NewRoot(fsnode.Options{Registry: reg, Logger: log})
	mnt, err := fsnode.NewMount(dir, root, fsnode.MountOptions{
		Direct: os.Geteuid() == 0, AllowOther: c.allowOther, Debug: c.debug,
	})
	if err != nil {
		return nil, mountError(err, dir, os.Geteuid())
	}
	return mnt, nil
}

// serve tells systemd the mount is ready, reloads on SIGHUP (hup), and
// returns once it must stop: SIGINT/SIGTERM, the mount lazily unmounted, or
// its connection gone. By then every waiter has had EIO and the mount is
// detached.
func serve(ctx context.Context, mnt *fsnode.Mount, reg *meter.Registry, dir string, hup <-chan os.Signal, reload func(), log *slog.Logger) {
	detached := watchMount(ctx, dir)
	sdNotify("READY=1")
wait:
	for {
		select {
		case <-hup:
			reload()
		case <-ctx.Done():
			sdNotify("STOPPING=1")
			log.Info("stopping: waiters get EIO, state is persisted, the mount is detached", "mountpoint", dir)
			break wait
		case <-detached:
			// Lazily unmounted while files are open: the kernel keeps the
			// connection for them, but nobody new can reach the meters.
			log.Warn("the mount went away (lazily unmounted while in use); waiters get EIO; exiting", "mountpoint", dir)
			break wait
		case <-mnt.Done():
			log.Warn("the mount went away (unmounted or its FUSE connection aborted); exiting", "mountpoint", dir)
			reg.Close()
			mnt.Detach()
			return
		}
	}
	reg.Close()
	if err := mnt.Shutdown(2 * time.Second); err != nil {
		log.Error("unmount failed", "err", err)
	}
}

// retryGrace is how long an interrupted open keeps its place in a queue for
// its thread to come back: a Go client's runtime interrupts blocked opens
// with its preemption signal and retries them within microseconds.
const retryGrace = 20 * time.Millisecond
