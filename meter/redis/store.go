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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/rlfs/rlfs/meter"
)

//go:embed rlfs.lua
var library string

// libraryName is the name the library registers (its first line).
const libraryName = "rlfs1"

var _ meter.Decider = (*Store)(nil)

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
	// ProcessID maps the thread id an open came from (meter.Holder.PID as
	// the engine has it) to its process id, for the waiter and call records
	// every host reads: another host cannot resolve a thread of this one
	// (nil: the thread id is stored).
	ProcessID func(tid int) int
	// Logger receives one line per outage, recovery and lease problem.
	Logger *slog.Logger
	// Journal is this host's journal file ("": none, as in tests): its
	// calls and the meters it knows, so that after a restart it can deliver
	// the completions it owed and put its calls back should the store have
	// lost its data meanwhile. It is locked: one daemon per journal.
	Journal string

	clock meter.Clock // tests only: the library's time follows it too
}

// Store is a meter.Decider on Redis 7: the rule, the queue and the
// leases run in the server as the functions of rlfs.lua, one round trip per
// grant. It is safe for concurrent use; create it with Open.
type Store struct {
	c      rueidis.Client
	opt    Options
	inc    string // this daemon's incarnation
	clock  meter.Clock
	fake   bool // opt.clock is set: send the library our now
	log    *slog.Logger
	margin time.Duration // a lease is given up this long before it lapses
	stop   chan struct{}
	wg     sync.WaitGroup
	base   context.Context // every call's parent; Close cancels it
	cancel context.CancelFunc

	epochMu sync.Mutex // one checkEpoch at a time

	mu     sync.Mutex
	events meter.Events
	down   time.Time // unreachable since (zero: reachable)
	epoch  string
	mine   map[string]*local                // meters where this host has calls or waiters
	defs   map[string]meter.Stored          // the meters this host knows, for re-asserting them
	outbox []outOp                          // completions made while the store was unreachable
	sync   struct{ store, local time.Time } // a store instant and the local instant it was read
	remap  map[string]map[uint64]uint64     // call ids the store changed when this host put them back
	// reasserts counts the times this host put back what the store lost.
	reasserts uint64
	closed    bool
	jl        *journal // nil without Options.Journal
	// lostWhileDown: the journal's epoch differs from the store's, which
	// lost its data while this host's daemon was stopped.
	lostWhileDown bool

	failures, outages uint64 // see Health
}

// local is this host's part of one meter.
type local struct {
	calls   map[uint64]ownCall   // calls granted to this host, until they stop counting
	waiters map[uint64]time.Time // tickets queued in the store, with when they were asked for
	lastOK  time.Time            // send time of the last call that renewed the lease
}

// ownCall is one of this host's calls, as the store has it (µs, store time).
type ownCall struct {
	ticket  uint64
	granted int64
	done    int64 // 0: in progress
	holder  meter.Holder
}

// outOp is a completion (or revocation) waiting for the store.
type outOp struct {
	meter  string
	id     uint64
	done   int64 // µs, store time estimate
	revoke bool
}

// Open connects to the store, loads the library and starts this host's
// lease renewal and event subscription. Events go nowhere until Subscribe.
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
		stop: make(chan struct{}), mine: map[string]*local{}, defs: map[string]meter.Stored{}}
	s.base, s.cancel = context.WithCancel(context.Background())
	if s.clock == nil {
		s.clock = meter.SystemClock{}
	}
	s.margin = min(time.Second, opt.Lease/4)
	if err := s.loadLibrary(); err != nil {
		c.Close()
		return nil, err
	}
	if opt.Journal != "" {
		j, recs, err := openJournal(opt.Journal, opt.Host)
		if err != nil {
			c.Close()
			return nil, err
		}
		s.jl = j
		jEpoch := s.replay(recs)
		if s.epoch, err = s.ensureEpoch(); err != nil {
			j.close()
			c.Close()
			return nil, err
		}
		s.lostWhileDown = jEpoch != "" && jEpoch != s.epoch
		s.mu.Lock()
		err = j.rewrite(s.snapshotLocked())
		s.mu.Unlock()
		if err != nil {
			j.close()
			c.Close()
			return nil, fmt.Errorf("redis: rewrite the journal %s: %v", opt.Journal, err)
		}
		return s, nil
	}
	if s.epoch, err = s.ensureEpoch(); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
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

// loadLibrary loads rlfs.lua into every node (FUNCTION LOAD REPLACE).
func (s *Store) loadLibrary() error {
	nodes := s.c.Nodes()
	for addr, n := range nodes {
		ctx, cancel := s.ctx()
		err := n.Do(ctx, n.B().FunctionLoad().Replace().FunctionCode(library).Build()).Error()
		cancel()
		if aerr := accessError("load the rlfs functions (FUNCTION LOAD) into", addr, s.opt, err); aerr != nil {
			return aerr
		}
		if err != nil {
			return fmt.Errorf("redis: load the rlfs functions into %s: %w; rlfs needs Redis 7 or newer (FUNCTION LOAD), and an ACL user allowed to load functions", addr, err)
		}
	}
	return nil
}

// ensureEpoch reads the store's epoch, setting one if the store is new.
func (s *Store) ensureEpoch() (string, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	k := epochKey(s.opt.Prefix)
	if err := s.c.Do(ctx, s.c.B().Set().Key(k).Value(newIncarnation()).Nx().Build()).Error(); err != nil && !rueidis.IsRedisNil(err) {
		if aerr := accessError("write "+k+" (SET) on", redacted(s.opt.URL), s.opt, err); aerr != nil {
			return "", aerr
		}
		return "", fmt.Errorf("redis: write %s: %w", k, err)
	}
	e, err := s.c.Do(ctx, s.c.B().Get().Key(k).Build()).ToString()
	if err != nil {
		if aerr := accessError("read "+k+" (GET) on", redacted(s.opt.URL), s.opt, err); aerr != nil {
			return "", aerr
		}
		return "", fmt.Errorf("redis: read %s: %w", k, err)
	}
	return e, nil
}

// callTimeout bounds one round trip: an answer later than a third of the
// lease (at most maxCallTimeout) counts the store as unreachable.
func (s *Store) callTimeout() time.Duration { return min(s.opt.Lease/3, maxCallTimeout) }

const maxCallTimeout = 3 * time.Second

func (s *Store) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.base, s.callTimeout())
}

// now is the instant the library uses: "" (its own TIME) unless a test
// clock is set.
func (s *Store) nowArg() string {
	if !s.fake {
		return ""
	}
	return strconv.FormatInt(s.clock.Now().UnixMicro(), 10)
}

// errNoMeter is the library's error for a meter it does not have.
const errNoMeter = "RLFS_NOMETER"

// fcall runs library function fn on meter name's keys with args after the
// prefix and the time. It returns the reply and when it was sent. A store
// that does not answer gives meter.ErrUnavailable; an unknown meter
// meter.ErrNotExist.
func (s *Store) fcall(fn, name string, args ...string) ([]rueidis.RedisMessage, time.Time, error) {
	return s.fcallOf(fn, name, true, args...)
}

// fcallOf is fcall; with recheck, a meter this host knows that the store
// does not is looked for again if the store lost its data and this host
// put it back meanwhile (a caller that puts it back itself passes false).
func (s *Store) fcallOf(fn, name string, recheck bool, args ...string) ([]rueidis.RedisMessage, time.Time, error) {
	k := keysOf(s.opt.Prefix, name)
	a := append([]string{s.opt.Prefix, s.nowArg()}, args...)
	for attempt := 0; ; attempt++ {
		ctx, cancel := s.ctx()
		gen := s.putBacks()
		sent := s.clock.Now()
		res := s.c.Do(ctx, s.c.B().Fcall().Function(fn).Numkeys(int64(len(k))).Key(k[:]...).Arg(a...).Build())
		cancel()
		arr, err := res.ToArray()
		if err == nil {
			return arr, sent, nil
		}
		if re, ok := rueidis.IsRedisErr(err); ok {
			msg := re.Error()
			switch {
			case isNoFunction(re):
				if lerr := s.reloadLibrary(attempt, err); lerr != nil {
					return nil, sent, lerr
				}
				continue
			case strings.HasPrefix(msg, errNoMeter):
				if recheck && s.knows(name) {
					switch s.lostData(gen) {
					case epochPutBack:
						recheck = false
						continue // the store lost its data; the meter is back
					case epochUnsure:
						return nil, sent, s.unavailable(err) // lost, not yet put back: wait
					}
				}
				return nil, sent, fmt.Errorf("%w: %q", meter.ErrNotExist, name)
			case re.IsLoading(), re.IsClusterDown(), re.IsTryAgain(), strings.HasPrefix(msg, "MASTERDOWN"), strings.HasPrefix(msg, "READONLY"):
				return nil, sent, s.unavailable(err)
			}
			return nil, sent, fmt.Errorf("redis: %s %q: %w", fn, name, err)
		}
		return nil, sent, s.unavailable(err)
	}
}

// maxReloads is how many times one call loads the library again after
// "Function not found" before it counts the store as unreachable.
const maxReloads = 3

// reloadLibrary loads the library again after the store answered the
// attempt-th try of a call with err, "Function not found" (FUNCTION FLUSH,
// a restart without persistence, a failover). A store that loses it again
// and again (flushes in a row) is treated as unreachable, not as failing:
// opens wait for it, completions are kept in the outbox, and the recovery
// loop tries again.
func (s *Store) reloadLibrary(attempt int, err error) error {
	if attempt >= maxReloads {
		return s.unavailable(err)
	}
	if lerr := s.loadLibrary(); lerr != nil {
		return s.unavailable(lerr)
	}
	return nil
}

// Close stops renewing leases and closes the connection. This host's calls
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
	s.mu.Unlock()
	s.cancel()
	s.c.Close() // ends the calls in flight (ErrClosing)
	s.wg.Wait()
	s.mu.Lock()
	s.jl.close()
	s.mu.Unlock()
	return nil
}
