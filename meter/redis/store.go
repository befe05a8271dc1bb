package redis

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/rlfs/rlfs/meter"
)

// The session: options, the connection, the library, Close.

//go:embed rlfs.lua
var library string

// fence replaces the library of earlier daemons (rlfs1): see fence.lua.
//
//go:embed fence.lua
var fence string

// libraryName is the name the library registers (its first line).
const libraryName = "rlfs2"

var (
	_ meter.Decider      = (*Store)(nil)
	_ meter.Reachability = (*Store)(nil)
)

// DefaultLease is how long a host's calls and waiters outlive its last
// renewal when it dies or is cut off.
const DefaultLease = 10 * time.Second

// DefaultPrefix starts every key and channel, so that several fleets can
// share one Redis with different prefixes.
const DefaultPrefix = "rlfs"

// Options configure Open.
type Options struct {
	// URL is redis://[USER[:PASS]@]HOST:PORT[/DB], or rediss:// for TLS.
	// A Cluster is used when HOST:PORT is one of its nodes.
	URL string
	// Password is used when the URL carries none (RLFS_STORE_PASSWORD).
	Password string
	// Host names this daemon in the fleet (default: the hostname). It must
	// be unique: a daemon that starts ends the calls of an earlier daemon
	// of the same name.
	Host string
	// Lease is how long this host's calls and waiters count after its last
	// renewal (default DefaultLease). The host renews every Lease/3.
	Lease time.Duration
	// Prefix starts every key (default DefaultPrefix).
	Prefix string
	// History is the history horizon of the meters this host creates or
	// changes (meter.Options.History; default meter.DefaultHistory).
	History time.Duration
	// Logger receives one line per outage, recovery and lease problem.
	Logger *slog.Logger
	// ProcessID maps the thread id an open came from (meter.Holder.PID as
	// the engine has it) to its process id, for the waiter and call records
	// every host reads: another host cannot resolve a thread of this one
	// (nil: the thread id is stored).
	ProcessID func(tid int) int
	// Journal is this host's journal file ("": none, as in tests): its
	// calls and the meters it knows, so that after a restart it can deliver
	// the completions it owed and put its calls back should the store have
	// lost its data meanwhile. It is locked: one daemon per journal.
	Journal string

	clock meter.Clock // tests only: the library's time follows it too
}

// Store is a meter.Decider on Redis 7: the rule, the queue and the leases
// run in the server as the functions of rlfs.lua, one round trip per grant.
// It is safe for concurrent use; create it with Open. The package doc
// (doc.go) maps its files.
type Store struct {
	c     rueidis.Client
	opt   Options
	inc   string // this daemon's incarnation
	clock meter.Clock
	fake  bool // opt.clock is set: send the library our now
	// linger is how long a release waits for an acquire to carry it
	// (releases.go): releaseLinger, 0 with a test clock (every release is
	// sent at once, and tests that set the clock see each step in order)
	linger time.Duration
	log    *slog.Logger
	host   *hostState // this host's part of the fleet: leases, calls, outbox, journal

	stop   chan struct{}
	kick   chan struct{} // wakes the sender (releases.go)
	wg     sync.WaitGroup
	base   context.Context // every call's parent; Close cancels it
	cancel context.CancelFunc

	epochMu sync.Mutex // one checkEpoch at a time

	sendMu  sync.Mutex // sending: a delivery of the outbox is under way (releases.go)
	sending bool

	pids pidCache // thread -> process (Options.ProcessID)

	mu      sync.Mutex
	events  meter.Events
	down    time.Time // unreachable since (zero: reachable)
	closed  bool
	renewOn bool // the renewal loop runs

	failures, outages uint64 // see Health
}

// Open connects to the store, loads the library and the fence, reads this
// host's journal and the store's epoch. Events go nowhere, and leases are
// not renewed, until Subscribe.
func Open(opt Options) (*Store, error) {
	if err := opt.defaults(); err != nil {
		return nil, err
	}
	copt, err := clientOptions(opt)
	if err != nil {
		return nil, err
	}
	c, err := rueidis.NewClient(copt)
	if err != nil {
		if aerr := accessError("connect to", redacted(opt.URL), opt, err); aerr != nil {
			return nil, aerr
		}
		return nil, fmt.Errorf("redis: connect to %s: %w; check the address and that redis-server runs", redacted(opt.URL), err)
	}
	s := &Store{c: c, opt: opt, inc: newIncarnation(), clock: opt.clock, fake: opt.clock != nil, log: opt.Logger,
		stop: make(chan struct{}), kick: make(chan struct{}, 1)}
	if !s.fake {
		s.linger = releaseLinger
	}
	s.base, s.cancel = context.WithCancel(context.Background())
	if s.clock == nil {
		s.clock = meter.SystemClock{}
	}
	s.host = newHostState(opt, s.clock)
	if err := s.open(); err != nil {
		s.cancel()
		c.Close()
		s.host.close()
		return nil, err
	}
	s.wg.Add(1)
	go s.sendLoop()
	return s, nil
}

// open loads the library, replays the journal and reads the epoch.
func (s *Store) open() error {
	if err := s.loadLibrary(s.base); err != nil {
		return err
	}
	var jEpoch string
	if s.opt.Journal != "" {
		e, err := s.host.openJournal(s.opt.Journal)
		if err != nil {
			return err
		}
		jEpoch = e
	}
	epoch, err := s.ensureEpoch(s.base)
	if err != nil {
		return err
	}
	return s.host.started(epoch, jEpoch)
}

func (opt *Options) defaults() error {
	if opt.URL == "" {
		return errors.New("redis: empty store URL; pass --store redis://HOST:PORT")
	}
	if opt.Lease == 0 {
		opt.Lease = DefaultLease
	}
	if opt.Lease < 300*time.Millisecond {
		return fmt.Errorf("redis: lease %v is too short; give at least 300ms (default 10s)", opt.Lease)
	}
	if opt.Prefix == "" {
		opt.Prefix = DefaultPrefix
	}
	if opt.History <= 0 {
		opt.History = meter.DefaultHistory
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Host == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return errors.New("redis: no hostname to name this host; pass --host NAME")
		}
		opt.Host = h
	}
	if err := ValidHost(opt.Host); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// clientOptions turns the URL into rueidis options.
func clientOptions(opt Options) (rueidis.ClientOption, error) {
	u, err := url.Parse(opt.URL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		return rueidis.ClientOption{}, fmt.Errorf("redis: store URL %q: want redis://[USER[:PASS]@]HOST:PORT[/DB] or rediss://…", redacted(opt.URL))
	}
	copt, err := rueidis.ParseURL(opt.URL)
	if err != nil {
		return copt, fmt.Errorf("redis: store URL %q: %v", redacted(opt.URL), err)
	}
	if copt.Password == "" {
		copt.Password = opt.Password
	}
	copt.DisableCache = true
	// No retries inside the client: a call the store does not answer is
	// this host's business (fail closed, keep the completion, try again).
	copt.DisableRetry = true
	// Answers must come within a third of the lease, or the host counts
	// the store as unreachable (and stops granting before its lease lapses).
	copt.ConnWriteTimeout = min(opt.Lease/3, maxCallTimeout)
	copt.Dialer.Timeout = min(opt.Lease/3, maxCallTimeout)
	copt.ClientName = "rlfs:" + opt.Host
	return copt, nil
}

// redacted is the URL without its password, for messages.
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func newIncarnation() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Host names this daemon in the fleet.
func (s *Store) Host() string { return s.opt.Host }

// loadLibrary loads rlfs.lua, and the fence of earlier daemons, into every
// node (FUNCTION LOAD REPLACE).
func (s *Store) loadLibrary(ctx context.Context) error {
	for addr, n := range s.c.Nodes() {
		for _, code := range []string{library, fence} {
			cctx, cancel := s.callCtx(ctx)
			err := n.Do(cctx, n.B().FunctionLoad().Replace().FunctionCode(code).Build()).Error()
			cancel()
			if err != nil {
				if aerr := accessError("load the rlfs functions (FUNCTION LOAD) into", addr, s.opt, err); aerr != nil {
					return aerr
				}
				return fmt.Errorf("redis: load the rlfs functions into %s: %w; rlfs needs Redis 7 or newer (FUNCTION LOAD), and an ACL user allowed to load functions", addr, err)
			}
		}
	}
	return nil
}

// ensureEpoch reads the store's epoch, setting one if the store is new.
func (s *Store) ensureEpoch(ctx context.Context) (string, error) {
	k := epochKey(s.opt.Prefix)
	if _, err := s.do(ctx, "write "+k, s.c.B().Set().Key(k).Value(newIncarnation()).Nx().Build()); err != nil {
		return "", err
	}
	res, err := s.do(ctx, "read "+k, s.c.B().Get().Key(k).Build())
	if err != nil {
		return "", err
	}
	return res.ToString()
}

// callTimeout bounds one round trip: an answer later than a third of the
// lease (at most maxCallTimeout) counts the store as unreachable.
func (s *Store) callTimeout() time.Duration { return min(s.opt.Lease/3, maxCallTimeout) }

const maxCallTimeout = 3 * time.Second

// callCtx is the context of one round trip: ctx's, within callTimeout.
// Close ends the round trips under way by closing the client (classify
// then reports the store closed, as for a context ended).
func (s *Store) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.callTimeout())
}

// Close sends the releases still in the outbox (if the store answers),
// stops renewing leases and closes the connection. This host's calls
// in progress keep counting until its lease lapses (or its next daemon
// starts); its waiters were cancelled by the engine.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	down := !s.down.IsZero()
	s.mu.Unlock()
	if !down {
		_, _ = s.flushOutbox(false) // the last releases (journaled: else delivered at the next start)
		s.host.noteSent()
	}
	s.cancel()
	s.c.Close() // ends the calls in flight (ErrClosing)
	s.wg.Wait()
	s.host.close()
	return nil
}
