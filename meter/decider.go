package meter

import (
	"context"
	"errors"
	"time"
)

// Decider is the seam between the host side of the engine (Registry and
// Meter: tickets, wake-ups, signals, max_wait, descriptors, the local view)
// and whatever decides a meter's calls: it keeps each meter's FIFO queue and
// its calls, admits by the rule (Admit, as Ledger keeps it), and tells the
// hosts what it decided. Local decides in-process and persists through a
// LocalStore (meter/sqlite); meter/redis decides in Redis for a fleet. A
// third decider implements this interface and passes
// metertest.RunDeciderTests; docs/engine.md is the map.
//
// Every method takes a context; errors are classified once, by the
// decider, as the sentinels ErrUnavailable (nothing can be decided now:
// fail closed, wait), ErrLost (the decider no longer knows the call or the
// meter), ErrNotExist, ErrExist, ErrBusy, ErrWouldBlock, ErrTooManyWaiters
// and ErrTooBig; anything else is a failure of the store, which the engine
// reports as ErrStore. Times are on the engine's Clock (a decider converts
// its own clock). Implementations must be safe for concurrent use.
type Decider interface {
	// Host names this daemon among the hosts that share the decider (""
	// for a decider of one host).
	Host() string

	// Load returns every meter's definition (Spec, Attr, Version, Grants;
	// no calls). A decider that keeps calls across restarts of this host's
	// daemon ends the calls and waiters of the daemon before it here.
	Load(ctx context.Context) ([]Stored, error)
	// LoadMeter returns one meter's definition; ok is false if it does
	// not exist.
	LoadMeter(ctx context.Context, name string) (s Stored, ok bool, err error)
	// CreateMeter stores a new meter; ErrExist if the name is taken.
	CreateMeter(ctx context.Context, name string, spec Spec, attr Attr) error
	// SetSpec replaces a meter's spec: the holds the old max_hold ended
	// count as completed then, the buckets' debt is re-judged under the
	// new limits (rejudgeTAT), windows count the calls already made, and
	// waiters are judged again (a cost no units item can admit any more is
	// refused with ErrTooBig through Events.Refused).
	SetSpec(ctx context.Context, name string, spec Spec) error
	// SetAttr replaces a meter's owner and mode.
	SetAttr(ctx context.Context, name string, attr Attr) error
	// DeleteMeter removes a meter with its history and data; ErrBusy while
	// it has holders or waiters on any host.
	DeleteMeter(ctx context.Context, name string) error

	// Enqueue asks for a call for r: granted at once (Admission.Granted),
	// or queued (Seq; Wake says when to Dispatch). It fails with
	// ErrWouldBlock (r.Nonblock and not grantable now), ErrTooManyWaiters,
	// ErrTooBig, ErrUnavailable or ErrNotExist. Asked again for a ticket
	// it has queued (after ErrUnavailable), it keeps the ticket's place,
	// or answers with its grant.
	Enqueue(ctx context.Context, name string, r Request) (Admission, error)
	// Cancel takes the ticket queued as seq out of the queue. If it was
	// granted meanwhile, the answer carries that call (Granted): the
	// caller releases or revokes it. Gone says it was neither queued nor
	// granted.
	Cancel(ctx context.Context, name string, seq, ticket uint64) (Admission, error)
	// Dispatch grants what the rule admits now, in queue order (each
	// grant reaches its host through Events.Granted), and says when to
	// try again.
	Dispatch(ctx context.Context, name string) (Admission, error)
	// Release completes call id now. A decider that cannot be reached
	// keeps the completion and delivers it later, and returns nil.
	Release(ctx context.Context, name string, id uint64) error
	// Revoke forgets call id, granted to an open that then failed:
	// nothing of it counts. A call that max_hold ended is not taken back.
	Revoke(ctx context.Context, name string, id uint64) error
	// Settle sets the actual cost of call id, in progress or ended by
	// max_hold and not released (weighted calls; see State.Settle).
	Settle(ctx context.Context, name string, id uint64, actual int64) error
	// Pause pauses the meter until p.Until on every host (design §10): a
	// later pause extends the one in force, an earlier one does not
	// shorten it; a zero p.Until lifts it. Nothing is granted while it
	// holds; waiters keep their places. It returns the pause in force.
	Pause(ctx context.Context, name string, p Pause) (Pause, error)
	// View pictures the meter (across every host): counts, usage, the
	// next grant; with q.Lists its holders and waiters; with q.Call or
	// q.Seq one call or waiter.
	View(ctx context.Context, name string, q ViewQuery) (View, error)
	// Subscribe starts delivering the decider's events to ev.
	Subscribe(ev Events)
	// Close stops the decider and its store.
	Close() error

	// Every decider keeps the meters' data files (design §8).
	DataStore
}

// Events receives what a Decider tells the host. Calls may come from any
// goroutine, never with the decider's locks held, and may call the
// Decider back.
type Events interface {
	// Granted: the decider granted ticket of this host, queued on meter,
	// call c.
	Granted(meter string, ticket uint64, c Call)
	// Refused: the decider took ticket of this host out of meter's queue
	// with err: ErrTooBig (a limits write left no units item that can
	// admit its cost), or a store failure persisting its grant.
	Refused(meter string, ticket uint64, err error)
	// Wake: the head of meter's queue may be admitted at at (zero: only
	// after a release); head says it is a waiter of this host. What was
	// said with an order lower than one applied already is stale.
	Wake(meter string, at time.Time, head bool, order uint64)
	// Changed: meter was created, removed, or its spec or attr changed.
	Changed(meter string)
	// Reachable: the decider answers again after an outage, or lost its
	// data (or this host's lease lapsed): the host asks again for each of
	// its waiters, in order (the decider keeps the place of those it still
	// has), then for the opens that came meanwhile.
	Reachable()
}

// Request is one open of `acquire`, as a Decider queues it.
type Request struct {
	Ticket   uint64 // the host's id for the open
	Holder   Holder
	Cost     int64 // units it costs (weighted calls); 1 for a plain call
	Nonblock bool
}

// Admission is a Decider's answer to Enqueue, Cancel and Dispatch.
type Admission struct {
	Granted bool
	Call    Call   // when Granted
	Seq     uint64 // Enqueue: the arrival number in the queue
	// Wake is when to Dispatch again (zero: not before a release); Head
	// says the head of the queue is a waiter of this host.
	Wake time.Time
	Head bool
	// Order orders a decider's answers about one meter's queue: a wake
	// instant with a lower Order than one applied already is stale.
	Order uint64
	Gone  bool // Cancel: neither queued nor granted
}

// ViewQuery says what View returns besides counts and usage.
type ViewQuery struct {
	Lists bool   // every holder and waiter
	Call  uint64 // one call (View.Call), if non-zero
	Seq   uint64 // one waiter and its place (View.Waiter, View.Place), if non-zero
}

// View is a meter as its Decider sees it, across every host. Holder.Host
// names each call's or waiter's host.
type View struct {
	Spec    Spec
	Attr    Attr
	Now     time.Time
	Holders []Call // in progress, grant order (with Lists)
	Expired []Call // ended by max_hold, not released (with Lists)
	Waiters []Waiter
	// The lengths of the three lists, also without Lists.
	HoldersN, ExpiredN, WaitersN int
	Usage                        []WindowUsage
	Buckets                      []BucketUsage
	Next                         Decision
	Grants                       uint64
	Retired                      int
	RetiredSince                 time.Time
	Hosts                        []string // hosts with a lease on the meter (fleet)
	// ExpiredTotal counts the holds max_hold ended since the decider
	// started (0 where it does not count them).
	ExpiredTotal uint64
	// Pause is the meter's pause (zero: none ever set, or lifted).
	Pause Pause
	// Call, when ViewQuery.Call named a call that holds the meter; its
	// Expired flag says max_hold ended it.
	Call *Call
	// Waiter and Place (1-based), when ViewQuery.Seq named a waiter.
	Waiter *Waiter
	Place  int
}

// ErrUnavailable is returned while a decider cannot be reached: nothing is
// granted anywhere (fail closed). Opens wait for it to come back.
var ErrUnavailable = errors.New("meter: store unreachable")

// ErrLost is returned for a call or a meter that a decider no longer knows
// (another host removed the meter, or the store lost its data).
var ErrLost = errors.New("meter: the store no longer knows it")

// Rewriter is a Decider that can hand its whole state to write (every meter
// with its calls) while nothing changes it, to rewrite a database file
// that was deleted (meter/sqlite).
type Rewriter interface {
	Rewrite(write func([]Stored) error) error
}

// Reachability is a Decider that may be unreachable (a shared store): it
// says since when (zero: it answers).
type Reachability interface {
	UnreachableSince() time.Time
}
