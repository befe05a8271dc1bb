package meter

import "time"

// SharedStore is a store that the daemons of several hosts share (meter/redis).
// Unlike a Store, which records what the engine decides, a SharedStore
// decides: it admits atomically, by the same rule as Admit, issues call ids,
// keeps the FIFO queue of the whole fleet, and tells each host about the
// grants of its waiters. The engine keeps only the local side of its
// waiters: their tickets, max_wait, and the timer that tells the store when
// the head of the queue may be admitted.
//
// Implementations must be safe for concurrent use. Times they return are on
// the engine's Clock (they convert the store's own clock).
type SharedStore interface {
	Store
	// Host names this daemon in the fleet.
	Host() string
	// LoadMeter returns one meter's definition (Spec, Attr; no calls);
	// ok is false if it does not exist.
	LoadMeter(name string) (s Stored, ok bool, err error)
	// Enqueue asks for a call for r. The reply grants it, queues it (Seq,
	// and Wake: when to Dispatch), or it fails with ErrWouldBlock
	// (r.Nonblock, or max_waiters: ErrTooManyWaiters), ErrUnavailable or
	// ErrNotExist.
	Enqueue(name string, r Request) (Admission, error)
	// Cancel takes ticket (queued as seq) out of the queue. If the store
	// granted it meanwhile, the reply carries that call (Granted). Gone
	// says it was neither queued nor granted.
	Cancel(name string, seq, ticket uint64) (Admission, error)
	// Release completes call id now. A store that cannot be reached keeps
	// the completion and delivers it later; Release then returns nil.
	Release(name string, id uint64) error
	// Revoke forgets call id, granted to an open that failed: nothing of it
	// counts.
	Revoke(name string, id uint64) error
	// Settle sets the actual cost of call id, in progress (weighted calls).
	Settle(name string, id uint64, cost int64) error
	// Dispatch grants what the rule admits now (telling the hosts of the
	// granted waiters) and says when to try again.
	Dispatch(name string) (Admission, error)
	// View pictures the meter fleet-wide; with lists, its holders and waiters.
	View(name string, lists bool) (View, error)
	// Subscribe starts delivering the store's events to h.
	Subscribe(h SharedEvents)
}

// SharedEvents receives what a SharedStore tells a host. Calls may come from
// any goroutine, never with a store lock held.
type SharedEvents interface {
	// Granted: the store granted ticket of this host, queued on meter, call c.
	Granted(meter string, ticket uint64, c Call)
	// Wake: the head of meter's queue may be admitted at at (zero: only after
	// a release); head says whether it is a waiter of this host. order
	// orders what the store tells about the queue (see Admission.Order).
	Wake(meter string, at time.Time, head bool, order uint64)
	// Refused: the store took ticket of this host, queued on meter, out of
	// the queue with err (ErrTooBig: a limits write left no units item that
	// can ever admit its cost).
	Refused(meter string, ticket uint64, err error)
	// Changed: meter was created, removed, or its spec or attr changed.
	Changed(meter string)
	// Reachable: the store answers again after an outage, or it lost its
	// data (or this host's lease lapsed): the host asks again for each of
	// its waiters, in order (the store keeps the place of those it still
	// has), then for the opens that came meanwhile.
	Reachable()
}
