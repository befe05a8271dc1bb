package meter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rlfs/rlfs/meter/rule"
)

// Errors returned by Acquire and friends; check them with errors.Is.
var (
	ErrWouldBlock     = errors.New("meter: not grantable right now")
	ErrInterrupted    = errors.New("meter: interrupted while waiting")
	ErrTimeout        = errors.New("meter: max_wait passed")
	ErrClosed         = errors.New("meter: shutting down")
	ErrBusy           = errors.New("meter: has holders or waiters")
	ErrTooManyWaiters = errors.New("meter: max_waiters reached")
	ErrExist          = errors.New("meter: already exists")
	ErrNotExist       = errors.New("meter: no such meter")
	ErrStore          = errors.New("meter: store failed")
)

// Stats are a meter's counters since the daemon started.
type Stats struct {
	Grants       uint64
	Releases     uint64
	Timeouts     uint64
	Interrupts   uint64
	Expired      uint64 // holds ended by max_hold
	Rejected     uint64 // O_NONBLOCK or max_waiters refusals
	Revoked      uint64 // grants taken back (Revoke); Grants still counts them
	Settled      uint64 // calls whose actual cost was set (Settle)
	Units        int64  // units granted (the estimates)
	UnitsSettled int64  // actual costs of the settled calls, summed
	StoreErrs    uint64
	Pauses       uint64        // pauses set or extended through this host
	WaitTotal    time.Duration // summed over grants
}

// Meter is one live meter, as this host sees it: its definition, the
// tickets of this host's waiters and the timer that wakes them, the calls
// this host holds, and its counters. What is decided (the queue, the rule)
// is its Decider's; the Meter never asks which decider it has. It is safe
// for concurrent use. Create meters through a Registry.
type Meter struct {
	name string
	reg  *Registry // its clock, decider and hooks

	mu        sync.Mutex
	closed    bool
	removed   bool // by Registry.Remove, or on another host: its data files are gone
	attr      Attr
	spec      Spec
	version   uint64 // of the definition in force
	wakeOrder uint64 // Order of the wake instant in force
	*busy            // nil until the meter is first used on this host
}

// busy is what a meter keeps once it is used on this host (an open, a
// release, a count): 10,000 idle meters should not pay for empty tickets,
// timers and counters. It is made under the meter's lock (use) and never
// dropped.
type busy struct {
	tickets  map[uint64]*Ticket // this host's waiters by ticket id (queued, pending, kept places)
	asking   int                // of them, those whose first Enqueue is under way (not waiters yet)
	phantoms map[uint64]*Ticket // the kept places among them (see Options.RetryGrace), usually none
	pending  []*Ticket          // arrived while the decider was unreachable, in order
	held     map[uint64]Call    // calls this host holds, not released
	wake     Timer
	wakeAt   time.Time // when wake fires
	stats    Stats
}

// useLocked returns the meter's busy part, made on first use.
func (m *Meter) useLocked() *busy {
	if m.busy == nil {
		m.busy = &busy{}
	}
	return m.busy
}

// heldLocked returns call id if this host holds it.
func (m *Meter) heldLocked(id uint64) (Call, bool) {
	if m.busy == nil {
		return Call{}, false
	}
	c, ok := m.held[id]
	return c, ok
}

// statsLocked returns the meter's counters.
func (m *Meter) statsLocked() Stats {
	if m.busy == nil {
		return Stats{}
	}
	return m.stats
}

// Ticket is an open of `acquire` waiting for its call. Its result is ready
// when Done is closed.
type Ticket struct {
	Seq    uint64 // arrival number in the decider's queue (0 until it said)
	Holder Holder
	Since  time.Time
	Cost   int64 // units the call asks for

	id    uint64 // the host's id for the open, unique in the registry
	done  chan struct{}
	call  Call
	err   error
	timer Timer
	// phantom: the open was interrupted, but the ticket keeps its place
	// for RetryGrace in case the same thread opens again at once; kept is
	// a grant that came meanwhile.
	phantom bool
	kept    *Call
	// pending: it waits for the decider to be reachable.
	pending bool
}

// Done is closed once the ticket is granted or failed.
func (t *Ticket) Done() <-chan struct{} { return t.done }

// Result returns the grant or the error; valid once Done is closed.
func (t *Ticket) Result() (Call, error) { return t.call, t.err }

func (t *Ticket) finished() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// Name returns the meter's name.
func (m *Meter) Name() string { return m.name }

// Spec returns the meter's current spec.
func (m *Meter) Spec() Spec {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.spec
}

// Attr returns the meter's owner and mode.
func (m *Meter) Attr() Attr {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.attr
}

// ctx is the context of the meter's calls to its decider.
func (m *Meter) ctx() context.Context { return context.Background() }

// Acquire waits in FIFO order until the meter grants a call, ctx ends
// (ErrInterrupted), max_wait passes (ErrTimeout) or the meter closes
// (ErrClosed). With nonblock it fails with ErrWouldBlock instead of waiting.
// A grant that raced with ctx's end is still returned: the caller must release it.
func (m *Meter) Acquire(ctx context.Context, h Holder, nonblock bool) (Call, error) {
	return m.AcquireCost(ctx, h, 1, nonblock)
}

// AcquireCost is Acquire for a call of cost units (acquire@N). A cost that
// no units item of the meter can ever admit fails at once with ErrTooBig.
func (m *Meter) AcquireCost(ctx context.Context, h Holder, cost int64, nonblock bool) (Call, error) {
	var t *Ticket
	var err error
	if !nonblock && m.waitersHere() {
		t, err = m.enqueueAside(h, cost)
	} else {
		t, err = m.EnqueueCost(h, cost, nonblock)
	}
	if err != nil {
		return Call{}, err
	}
	return m.acquired(t, wait(ctx, t))
}

// wait blocks until t is decided (true) or ctx is done (false).
func wait(ctx context.Context, t *Ticket) bool {
	select {
	case <-t.done:
		return true
	case <-ctx.Done():
		return false
	}
}

// acquired is the end of AcquireCost: t's result once decided, else its
// cancellation (a grant that came meanwhile is kept); a grant is made
// durable first (GroupSyncer). A function of its own, so that the frame
// an open waits in stays small (see enqueueAside).
func (m *Meter) acquired(t *Ticket, decided bool) (Call, error) {
	var c Call
	var err error
	if decided {
		c, err = t.Result()
	} else {
		c, err = m.Cancel(t)
	}
	if err != nil {
		return Call{}, err
	}
	if gs, ok := m.reg.dec.(GroupSyncer); ok {
		return m.durable(gs, c)
	}
	return c, nil
}

// waitersHere reports whether opens of this host wait on the meter: then
// a new open will wait too (FIFO).
func (m *Meter) waitersHere() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.busy != nil && len(m.tickets) > m.asking
}

// enqueueAside is EnqueueCost run on a goroutine of its own, for an open
// that will wait. A goroutine's stack grows to the deepest call it makes
// and is shrunk by the GC only while it uses less than a quarter of it:
// an open blocked in FUSE sits about 3 KB deep (go-fuse's frames, the
// open's, this select), so the decider's steps (1.5 KB on a Local, far
// more through a Redis client) would leave every waiter with an 8 KB
// stack instead of 4 KB: 10,000 waiters held 36 MB more. The steps run on
// a short-lived goroutine instead, whose stack goes back to the pool.
func (m *Meter) enqueueAside(h Holder, cost int64) (*Ticket, error) {
	type result struct {
		t   *Ticket
		err error
	}
	ch := make(chan result, 1)
	go func() {
		t, err := m.EnqueueCost(h, cost, false)
		ch <- result{t, err}
	}()
	r := <-ch
	return r.t, r.err
}

// durable waits until the grant of c is on disk (GroupSyncer); a grant that
// cannot be made durable is released and fails.
func (m *Meter) durable(gs GroupSyncer, c Call) (Call, error) {
	if err := gs.WaitDurable(); err != nil {
		_ = m.Release(c.ID)
		return Call{}, fmt.Errorf("%w: make grant of %q durable: %w", ErrStore, m.name, err)
	}
	return c, nil
}

// Enqueue joins the queue and returns at once; the ticket's Done says when
// it is decided. With nonblock it grants at once or fails with ErrWouldBlock.
func (m *Meter) Enqueue(h Holder, nonblock bool) (*Ticket, error) {
	return m.EnqueueCost(h, 1, nonblock)
}

// EnqueueCost is Enqueue for a call of cost units.
func (m *Meter) EnqueueCost(h Holder, cost int64, nonblock bool) (*Ticket, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	m.useLocked()
	if err := m.spec.Fits(cost); err != nil {
		m.stats.Rejected++
		m.mu.Unlock()
		return nil, err
	}
	now := m.reg.clock.Now()
	if t := m.reattachLocked(h, cost, now); t != nil {
		m.mu.Unlock()
		return t, nil
	}
	t := &Ticket{id: m.reg.ticketID(), Holder: h, Since: now, Cost: cost, done: make(chan struct{})}
	if m.reg.unreachable() {
		defer m.mu.Unlock()
		if nonblock {
			m.stats.Rejected++
			return nil, ErrWouldBlock
		}
		m.pendLocked(t, now)
		return t, nil
	}
	put(&m.tickets, t.id, t)
	m.asking++
	m.mu.Unlock()
	adm, err := m.reg.dec.Enqueue(m.ctx(), m.name, Request{Ticket: t.id, Holder: h, Cost: cost, Nonblock: nonblock})
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asking--
	if err := m.enqueuedLocked(t, adm, err, nonblock, now); err != nil {
		return nil, err
	}
	return t, nil
}

// enqueuedLocked applies the decider's answer to a new ticket.
func (m *Meter) enqueuedLocked(t *Ticket, adm Admission, err error, nonblock bool, now time.Time) error {
	switch {
	case errors.Is(err, ErrUnavailable):
		delete(m.tickets, t.id)
		if nonblock {
			m.stats.Rejected++
			return ErrWouldBlock
		}
		m.pendLocked(t, now)
		return nil
	case errors.Is(err, ErrWouldBlock), errors.Is(err, ErrTooManyWaiters), errors.Is(err, ErrTooBig):
		delete(m.tickets, t.id)
		m.stats.Rejected++
		return err
	case err != nil:
		delete(m.tickets, t.id)
		m.stats.StoreErrs++
		return fmt.Errorf("%w: ask for a call of %q: %w", ErrStore, m.name, err)
	case adm.Granted:
		delete(m.tickets, t.id)
		t.Seq = adm.Seq
		if !t.finished() { // else an event delivered this grant first
			m.grantedLocked(t, adm.Call)
		}
		return nil
	}
	t.Seq = adm.Seq
	if !t.finished() {
		m.startWaitTimer(t)
		m.armWakeLocked(adm.Wake, adm.Head, adm.Order)
	}
	return nil
}

// pendLocked keeps t until the decider is reachable again.
func (m *Meter) pendLocked(t *Ticket, now time.Time) {
	t.pending = true
	put(&m.tickets, t.id, t)
	m.pending = append(m.pending, t)
	m.startWaitTimer(t)
}

// startWaitTimer arms max_wait for t, counted from its arrival.
func (m *Meter) startWaitTimer(t *Ticket) {
	if m.spec.MaxWait <= 0 || t.timer != nil {
		return
	}
	d := t.Since.Add(m.spec.MaxWait).Sub(m.reg.clock.Now()) // the decider took time to answer
	t.timer = m.reg.clock.AfterFunc(d, func() { m.leaveTimedOut(t) })
}

// grantedLocked finishes t with call c, which this host now holds.
func (m *Meter) grantedLocked(t *Ticket, c Call) {
	host := c.Holder.Host
	c.Holder = t.Holder
	c.Holder.Host = host
	c.Cost = t.Cost
	put(&m.held, c.ID, c)
	m.stats.Grants++
	m.stats.Units = rule.AddCounter(m.stats.Units, c.Cost)
	waited := max(0, m.reg.clock.Now().Sub(t.Since))
	m.stats.WaitTotal += waited
	if m.reg.onGrant != nil {
		m.reg.onGrant(m.name, waited)
	}
	m.finishLocked(t, c, nil)
}

func (m *Meter) finishLocked(t *Ticket, c Call, err error) {
	if t.timer != nil {
		t.timer.Stop()
	}
	t.call, t.err = c, err
	close(t.done)
}

// put sets mp[k] = v, making the map on first use: most meters never have
// a waiter or a call held on this host, and 10,000 of them should not pay
// for empty maps.
func put[K comparable, V any](mp *map[K]V, k K, v V) {
	if *mp == nil {
		*mp = make(map[K]V)
	}
	(*mp)[k] = v
}
