package redis

import (
	"log/slog"
	"sync"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// hostState is this host's part of the fleet, in one place: its lease on
// each meter and the proof that it holds (fencing), its calls and its
// queued tickets (to renew, to pick up a grant whose message it missed, to
// put them back should the store lose its data), the completions the store
// could not take yet (the outbox), the ids the store changed when it took
// calls back (the remap), the meters it knows, the store's clock as last
// read, the store's epoch, and the journal that keeps all that across
// restarts (hostbook.go has the outbox, the definitions, the epoch and the
// journal). It is safe for concurrent use; its methods take its lock, and
// it calls nothing outside itself with the lock held.
type hostState struct {
	mu     sync.Mutex
	name   string
	lease  time.Duration
	margin time.Duration // a lease is given up this long before it lapses
	clock  meter.Clock
	log    *slog.Logger

	meters map[string]*meterPart // meters where this host has calls or waiters
	defs   map[string]meter.Stored
	outbox []outOp
	// inflight counts the outbox's operations taken to be sent and not
	// yet settled or returned.
	inflight int
	unsent   bool // the store took operations since the journal last said "sent"
	remap    map[string]map[uint64]uint64
	sync     struct{ store, local, recv time.Time } // a store instant, the local instant it was asked (the call's send) and answered

	exact         bool // the store is given the engine's clock (tests): its instants need no conversion margin
	epoch         string
	reasserts     uint64 // times this host put back what the store lost
	lostWhileDown bool   // the journal's epoch differs: the store lost its data while the daemon was stopped
	jl            *journal
}

// meterPart is this host's part of one meter.
type meterPart struct {
	calls   map[uint64]ownCall // calls granted to this host, until they stop counting
	waiters map[uint64]asked   // tickets asked for
	// until is when this host's lease on the meter may lapse, less the
	// margin, on the local clock: the store said so (fencing). A grant is
	// used only before it.
	until time.Time
	// unsure is a store instant (µs) after which a grant may have been
	// made to this host without its reply (an ask that got no answer); the
	// renewal loop looks for grants since then (0: none).
	unsure int64
	// gen is the meter's generation this host reconciled (reconcile.go);
	// reconciling, that a reconcile of it is under way.
	gen         int64
	reconciling bool
	// queue is how many waited in the store's queue at the last acquire's
	// reply (a release does not wait for an acquire to carry it then).
	queue int64
	// lingerOff counts the releases that are sent at once, without
	// waiting for an acquire to carry them, since one waited in vain
	// (releases.go).
	lingerOff int
	// cut is closed (and forgotten) when someone is found to wait on the
	// meter: the releases that wait for an acquire to carry them go at
	// once (nil: none waits).
	cut chan struct{}
	// inQueue counts the waiters the store queued (asked.queued set), so
	// that a release need not look at every waiter.
	inQueue int
}

// asked is a ticket asked for: when first (a store instant, µs, a little
// early), and when the store queued it (0: not known).
type asked struct{ first, queued int64 }

// ownCall is one of this host's calls, as the store has it (µs, store time).
type ownCall struct {
	ticket  uint64
	granted int64
	done    int64 // 0: in progress
	cost    int64
	holder  meter.Holder
}

// outOp is a completion (or revocation) waiting for the store.
type outOp struct {
	meter  string
	id     uint64
	done   int64 // µs, store time estimate
	revoke bool
	// settled, if not nil, is closed once the store took it, or it is
	// kept in the outbox for a store that does not answer (Release waits).
	settled chan struct{}
	// lingers: its Release waits for an acquire of the meter to carry it
	// (releases.go); the sender leaves it, and what follows it of its
	// meter, in the outbox meanwhile.
	lingers bool
}

func newHostState(opt Options, clock meter.Clock) *hostState {
	return &hostState{name: opt.Host, lease: opt.Lease, margin: min(time.Second, opt.Lease/4), clock: clock, log: opt.Logger,
		meters: map[string]*meterPart{}, defs: map[string]meter.Stored{}, exact: opt.clock != nil}
}

// partLocked returns this host's part of meter name, made if missing.
func (h *hostState) partLocked(name string) *meterPart {
	p := h.meters[name]
	if p == nil {
		p = &meterPart{calls: map[uint64]ownCall{}, waiters: map[uint64]asked{}}
		h.meters[name] = p
	}
	return p
}

// Fencing. A host uses a grant only while the store surely still counts
// its lease: until the lease expiry the store last told it (a reply's, or
// a grant message's), less a margin. The renewal loop renews every
// lease/3, and the store's fast path renews a lease older than that.

// leaseTold records that the store, at storeNow (read at local instant
// at or later), had this host's lease on name expire at lease (µs).
func (h *hostState) leaseTold(name string, at time.Time, storeNow, lease int64) {
	if lease == 0 {
		return
	}
	until := at.Add(time.Duration(lease-storeNow)*time.Microsecond - h.margin)
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.partLocked(name); until.After(p.until) {
		p.until = until
	}
}

// leaseToldLocal is leaseTold for an expiry converted to the local clock
// already (a grant message, whose delay is unknown).
func (h *hostState) leaseToldLocal(name string, expiry time.Time) {
	until := expiry.Add(-h.margin)
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.partLocked(name); until.After(p.until) {
		p.until = until
	}
}

// leaseHolds reports whether this host may use a grant of meter name now.
func (h *hostState) leaseHolds(name string) bool {
	now := h.clock.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.meters[name]
	return p != nil && now.Before(p.until)
}

// asking records that ticket is asked for (a blocking open: the engine
// may ask again for it), and reports whether the store was never asked
// for it before, and if it was, a store instant before the first ask.
func (h *hostState) asking(name string, ticket uint64, blocking bool) (bool, int64) {
	early := h.storeNowEstimate() - h.lease.Microseconds()
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.partLocked(name)
	p.lingerOff = 0 // opens come: a release may wait for the next one again (releases.go)
	a, before := p.waiters[ticket]
	if blocking && !before {
		p.waiters[ticket] = asked{first: max(early, 0)}
	}
	return !before, a.first
}

// queued records that ticket waits in the store since storeNow.
func (h *hostState) queued(name string, ticket uint64, storeNow int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.partLocked(name)
	if a := p.waiters[ticket]; a.queued == 0 {
		a.queued = storeNow
		p.waiters[ticket] = a
		p.inQueue++
	}
	p.someoneWaitsLocked()
}

// unqueued records that ticket no longer waits.
func (h *hostState) unqueued(name string, ticket uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.meters[name]; p != nil {
		p.forgetWaiterLocked(ticket)
	}
}

// forgetWaiterLocked removes ticket from p's waiters.
func (p *meterPart) forgetWaiterLocked(ticket uint64) {
	if a, ok := p.waiters[ticket]; ok {
		if a.queued != 0 {
			p.inQueue--
		}
		delete(p.waiters, ticket)
	}
}

// unanswered records that an ask on name got no answer: the store may
// have granted it; the renewal loop looks for it.
func (h *hostState) unanswered(name string) {
	since := h.storeNowEstimate() - h.lease.Microseconds()
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.partLocked(name); p.unsure == 0 || since < p.unsure {
		p.unsure = max(since, 1)
	}
}

// since is the store instant after which the renewal of name looks for
// grants this host may have missed: its oldest queued ticket's, or an
// unanswered ask's (0: none).
func (h *hostState) since(name string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.meters[name]
	if p == nil {
		return 0
	}
	s := p.unsure
	for _, a := range p.waiters {
		if q := a.queued; q != 0 && (s == 0 || q-1 < s) {
			s = q - 1
		}
	}
	return s
}

// looked records that a renewal looked for missed grants since its start
// and found them all (complete) or up to last.
func (h *hostState) looked(name string, complete bool, last int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.meters[name]; p != nil && p.unsure != 0 {
		if complete {
			p.unsure = 0
		} else {
			p.unsure = last
		}
	}
}

// own records call c, granted to ticket at granted (µs, store time), and
// reports whether it is new (a grant is delivered once, however it came).
func (h *hostState) own(name string, ticket uint64, c meter.Call, granted, cost int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.partLocked(name)
	p.forgetWaiterLocked(ticket)
	if _, dup := p.calls[c.ID]; dup {
		return false
	}
	p.calls[c.ID] = ownCall{ticket: ticket, granted: granted, cost: cost, holder: c.Holder}
	h.journalLocked(jrec{K: "call", M: name, ID: c.ID, Ticket: ticket, G: granted, C: cost, PID: c.Holder.PID})
	return true
}

// hasCall reports whether this host knows call id of name.
func (h *hostState) hasCall(name string, id uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.meters[name]
	if p == nil {
		return false
	}
	_, ok := p.calls[id]
	return ok
}

// waiting reports whether this host has tickets waiting on name.
func (h *hostState) waiting(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.meters[name]
	return p != nil && len(p.waiters) > 0
}

// mayLinger reports whether a release of meter name may wait for an
// acquire to carry it: nobody is known to wait on the meter (no ticket of
// this host waits in the store's queue, and the store's queue was empty
// at the last acquire's reply and no other host's waiter queued since:
// queueSeen), and no release waited in vain in the last lingerBackoff
// releases. A ticket asked for whose reply has not come yet does not
// count: it is most often the next open of the process that closed (its
// OPEN can reach the daemon before the RELEASE); should the store queue
// it, or anyone else, the channel it returns is closed and the release
// goes at once.
func (h *hostState) mayLinger(name string) (bool, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.meters[name]
	if p == nil {
		return false, nil
	}
	if p.lingerOff > 0 {
		p.lingerOff--
		return false, nil
	}
	if p.queue != 0 || p.inQueue > 0 {
		return false, nil
	}
	if p.cut == nil {
		p.cut = make(chan struct{})
	}
	return true, p.cut
}

// someoneWaitsLocked cuts the waits of p's lingering releases short.
func (p *meterPart) someoneWaitsLocked() {
	if p.cut != nil {
		close(p.cut)
		p.cut = nil
	}
}

// lingeredInVain records that a release of meter name waited for an
// acquire in vain: the next lingerBackoff are sent at once.
func (h *hostState) lingeredInVain(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.meters[name]; p != nil {
		p.lingerOff = lingerBackoff
	}
}

// queueSeen records how many waited in meter name's queue at a reply.
func (h *hostState) queueSeen(name string, n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.meters[name]; p != nil {
		p.queue = n
		if n > 0 {
			p.someoneWaitsLocked()
		}
	}
}

// ended records that call id completed at done (µs; 0: unknown), or is
// gone (revoked, or unknown to the store).
func (h *hostState) ended(name string, id uint64, done int64, gone bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.meters[name]
	if p == nil {
		return
	}
	c, ok := p.calls[id]
	switch {
	case !ok:
	case gone:
		delete(p.calls, id)
		h.journalLocked(jrec{K: "gone", M: name, ID: id})
	default:
		c.done = done
		p.calls[id] = c
		h.journalLocked(jrec{K: "done", M: name, ID: id, D: done})
	}
}

// endAll counts every call this host has in progress as completed at now
// (µs): the calls of its earlier daemon, which the store ended at start.
func (h *hostState) endAll(now int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, p := range h.meters {
		for id, c := range p.calls {
			if c.done == 0 {
				c.done = now
				p.calls[id] = c
				h.journalLocked(jrec{K: "done", M: name, ID: id, D: now})
			}
		}
	}
}

// renewing lists the meters where this host has calls or waiters: the
// renewal loop renews its lease on them.
func (h *hostState) renewing() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.meters))
	for name := range h.meters {
		names = append(names, name)
	}
	return names
}

// tidy drops the completed calls that no longer count against any window
// of their meter, and the meters where this host has nothing.
func (h *hostState) tidy(storeNow int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, p := range h.meters {
		var longest time.Duration
		if d, ok := h.defs[name]; ok {
			longest = d.Spec.Longest()
		}
		for id, c := range p.calls {
			if c.done != 0 && c.done+micros(longest) < storeNow {
				delete(p.calls, id)
			}
		}
		if len(p.calls) == 0 && len(p.waiters) == 0 && p.unsure == 0 {
			delete(h.meters, name)
		}
	}
}

// The store's clock: the library works on the store's time; the engine
// on its own clock.

// synced remembers a store instant and when it was read, to estimate the
// store's time while it cannot be asked and to convert instants of
// messages.
func (h *hostState) synced(storeNow int64, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	recv := h.clock.Now()
	if h.exact {
		recv = at // the store's now is the engine's clock at the send
	}
	h.sync.store, h.sync.local, h.sync.recv = time.UnixMicro(storeNow), at, recv
}

// toLocal converts store instant us to the engine's clock with the latest
// reading of both (for messages, whose own delay is unknown).
func (h *hostState) toLocal(us int64) time.Time { return h.convert(us, false) }

// grantedLocal converts the store instant of a grant to the engine's clock
// never earlier than it happened: the store read its clock before the reply
// arrived, so an instant measured from the reply's arrival is at most a
// round trip late, where toLocal (from the send, for wakes, which may come
// early) is at most a round trip early. A grant line must never read before
// the instant its rule or a pause allowed.
func (h *hostState) grantedLocal(us int64) time.Time { return h.convert(us, true) }

// convert is toLocal (from the last reading's send) or grantedLocal (from
// its reply's arrival).
func (h *hostState) convert(us int64, late bool) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	at := h.sync.local
	if late {
		at = h.sync.recv
	}
	if at.IsZero() {
		return h.clock.Now()
	}
	return at.Add(time.UnixMicro(us).Sub(h.sync.store))
}

// storeNowEstimate is the store's time now, as best known (µs; 0 unknown).
func (h *hostState) storeNowEstimate() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sync.local.IsZero() {
		return 0
	}
	return h.sync.store.Add(h.clock.Now().Sub(h.sync.local)).UnixMicro()
}

// localOf converts store instant us to the engine's clock, given that the
// store's now was storeNow when the engine's clock read at (at is the
// send time of the call: the store read its clock at least then).
func localOf(us, storeNow int64, at time.Time) time.Time {
	return at.Add(time.Duration(us-storeNow) * time.Microsecond)
}

// wakeOf is localOf for a wake instant, where 0 means none.
func wakeOf(us, storeNow int64, at time.Time) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return localOf(us, storeNow, at)
}
