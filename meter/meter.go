package meter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
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
	WaitTotal    time.Duration // summed over grants
}

// Meter is one live meter: its spec, state and FIFO queue of waiters. It is
// safe for concurrent use. Create meters through a Registry.
type Meter struct {
	name  string
	clock Clock
	store LocalStore // nil on a SharedStore

	mu          sync.Mutex
	spec        Spec
	attr        Attr
	st          State
	grants      uint64 // ever, as stored
	queue       []*Ticket
	timer       Timer
	timerAt     time.Time
	closed      bool
	removed     bool // by Registry.Remove, or on another host: its data files are gone
	stats       Stats
	seq         uint64
	expiredOpen map[uint64]Call // holds ended by max_hold, not released yet
	onGrant     func(waited time.Duration)
	retryGrace  time.Duration // see Options.RetryGrace
	history     time.Duration // see Options.History
	phantoms    int           // interrupted tickets keeping their place

	reg     *Registry
	sh      *sharedMeter // non-nil on a SharedStore: the store decides
	version uint64       // of the definition in force (SharedStore)
}

// Ticket is a place in a meter's queue. Its result is ready when Done is closed.
type Ticket struct {
	Seq    uint64 // arrival number, increasing
	Holder Holder
	Since  time.Time
	Cost   int64 // units the call asks for

	done  chan struct{}
	call  Call
	err   error
	timer Timer
	// phantom: the open was interrupted, but the ticket keeps its place
	// for RetryGrace in case the same thread opens again at once.
	phantom bool

	// On a SharedStore: id names the ticket to the store; pending says it
	// waits for the store to be reachable; kept is a grant that arrived
	// while it was a phantom.
	id      uint64
	pending bool
	kept    *Call
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
	if m.sh != nil {
		return m.acquireShared(ctx, h, cost, nonblock)
	}
	t, err := m.EnqueueCost(h, cost, nonblock)
	if err != nil {
		return Call{}, err
	}
	var c Call
	select {
	case <-t.Done():
		c, err = t.Result()
	case <-ctx.Done():
		c, err = m.Cancel(t)
	}
	if err != nil {
		return Call{}, err
	}
	if gs, ok := m.store.(GroupSyncer); ok {
		if err := gs.WaitDurable(); err != nil {
			_ = m.Release(c.ID)
			return Call{}, fmt.Errorf("%w: make grant of %q durable: %w", ErrStore, m.name, err)
		}
	}
	return c, nil
}

// Enqueue joins the queue and returns at once; the ticket's Done says when it
// is decided. With nonblock it grants at once or fails with ErrWouldBlock.
func (m *Meter) Enqueue(h Holder, nonblock bool) (*Ticket, error) {
	return m.EnqueueCost(h, 1, nonblock)
}

// EnqueueCost is Enqueue for a call of cost units.
func (m *Meter) EnqueueCost(h Holder, cost int64, nonblock bool) (*Ticket, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if err := m.spec.Fits(cost); err != nil {
		m.stats.Rejected++
		return nil, err
	}
	now := m.clock.Now()
	m.seq++
	t := &Ticket{Seq: m.seq, Holder: h, Since: now, Cost: cost, done: make(chan struct{})}
	if nonblock {
		m.expireLocked(now)
		if len(m.queue) > 0 || !AdmitCost(m.spec, &m.st, now, cost).OK {
			m.stats.Rejected++
			return nil, ErrWouldBlock
		}
		m.grantLocked(t, now)
		return t, t.err
	}
	if i := m.phantomOf(h, cost); i >= 0 {
		// The same thread again, just after an interrupted open (a Go
		// program's runtime signals interrupt blocked opens, and os.Open
		// retries): it takes back its place.
		old := m.queue[i]
		old.timer.Stop()
		m.phantoms--
		t.Seq, t.Since = old.Seq, old.Since
		m.seq--
		m.queue[i] = t
		m.startWaitTimer(t, now)
		if i == 0 {
			m.dispatchLocked()
		}
		return t, nil
	}
	if m.spec.MaxWaiters > 0 && len(m.queue)-m.phantoms >= m.spec.MaxWaiters {
		m.stats.Rejected++
		return nil, ErrTooManyWaiters
	}
	m.queue = append(m.queue, t)
	m.startWaitTimer(t, now)
	if len(m.queue) == 1 {
		m.dispatchLocked()
	}
	return t, nil
}

// startWaitTimer arms max_wait for t, counted from its arrival.
func (m *Meter) startWaitTimer(t *Ticket, now time.Time) {
	if m.spec.MaxWait <= 0 {
		return
	}
	d := t.Since.Add(m.spec.MaxWait).Sub(now)
	if m.sh != nil {
		d = t.Since.Add(m.spec.MaxWait).Sub(m.clock.Now()) // the store took time to answer
		t.timer = m.clock.AfterFunc(d, func() { m.leaveTimedOut(t) })
		return
	}
	t.timer = m.clock.AfterFunc(d, func() { m.leave(t, ErrTimeout) })
}

// phantomOf finds the place an interrupted open of h's thread keeps for a
// retry of the same open: the same cost (an open of another cost is a new
// arrival).
func (m *Meter) phantomOf(h Holder, cost int64) int {
	if m.phantoms == 0 {
		return -1
	}
	return slices.IndexFunc(m.queue, func(t *Ticket) bool {
		return t.phantom && t.Holder.PID == h.PID && t.Holder.UID == h.UID && t.Cost == cost
	})
}

// indexOf finds t in the queue, which is ordered by Seq.
func (m *Meter) indexOf(t *Ticket) int {
	i, ok := slices.BinarySearchFunc(m.queue, t.Seq, func(x *Ticket, seq uint64) int { return cmp.Compare(x.Seq, seq) })
	if !ok || m.queue[i] != t {
		return -1
	}
	return i
}

// Cancel takes t out of the queue (ErrInterrupted, nothing counted). If t
// was already decided, its result is returned instead.
func (m *Meter) Cancel(t *Ticket) (Call, error) {
	m.leave(t, ErrInterrupted)
	return t.Result()
}

func (m *Meter) leave(t *Ticket, why error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t.finished() {
		return
	}
	i := m.indexOf(t)
	if i < 0 {
		return
	}
	if errors.Is(why, ErrInterrupted) && m.retryGrace > 0 {
		m.finishLocked(t, Call{}, why)
		t.phantom = true
		m.phantoms++
		t.timer = m.clock.AfterFunc(m.retryGrace, func() { m.dropPhantom(t) })
		return
	}
	m.queue = slices.Delete(m.queue, i, i+1)
	if errors.Is(why, ErrTimeout) {
		m.stats.Timeouts++
	} else {
		m.stats.Interrupts++
	}
	m.finishLocked(t, Call{}, why)
	if i == 0 {
		m.dispatchLocked()
	}
}

// dropPhantom ends the place an interrupted open kept: nobody came back.
func (m *Meter) dropPhantom(t *Ticket) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !t.phantom {
		return
	}
	i := m.indexOf(t)
	if i < 0 {
		return
	}
	t.phantom = false
	m.phantoms--
	m.queue = slices.Delete(m.queue, i, i+1)
	m.stats.Interrupts++
	if i == 0 {
		m.dispatchLocked()
	}
}

func (m *Meter) finishLocked(t *Ticket, c Call, err error) {
	if t.timer != nil {
		t.timer.Stop()
	}
	t.call, t.err = c, err
	close(t.done)
}

// grantLocked grants t at now, persisting it first.
func (m *Meter) grantLocked(t *Ticket, now time.Time) {
	prev := m.st
	c := m.st.GrantCost(m.spec, now, t.Holder, t.Cost)
	if err := m.store.Grant(m.name, c, m.st.TAT, m.st.UTAT); err != nil {
		m.st.Calls = m.st.Calls[:len(m.st.Calls)-1]
		m.st.TAT, m.st.UTAT, m.st.NextID = prev.TAT, prev.UTAT, prev.NextID
		m.stats.StoreErrs++
		m.finishLocked(t, Call{}, fmt.Errorf("%w: persist grant of %q: %w", ErrStore, m.name, err))
		return
	}
	m.grants++
	m.stats.Grants++
	m.stats.Units = addCounter(m.stats.Units, c.Cost)
	waited := now.Sub(t.Since)
	m.stats.WaitTotal += waited
	if m.onGrant != nil {
		m.onGrant(waited)
	}
	m.finishLocked(t, c, nil)
}

// dispatchLocked grants the head of the queue while the rule admits it, then
// sleeps until the earliest instant the new head could be admitted.
func (m *Meter) dispatchLocked() {
	now := m.clock.Now()
	m.expireLocked(now)
	for len(m.queue) > 0 {
		if m.queue[0].phantom {
			// Its thread may come back within RetryGrace; dropPhantom
			// dispatches again if it does not.
			m.scheduleLocked(now, never)
			return
		}
		t := m.queue[0]
		if err := m.spec.Fits(t.Cost); err != nil {
			// A limits write shrank a units item below its cost: it can
			// never be admitted.
			m.queue = m.queue[1:]
			m.stats.Rejected++
			m.finishLocked(t, Call{}, err)
			continue
		}
		d := AdmitCost(m.spec, &m.st, now, t.Cost)
		if !d.OK {
			m.scheduleLocked(now, d.At)
			return
		}
		m.queue = m.queue[1:]
		m.grantLocked(t, now)
	}
	m.scheduleLocked(now, never)
}

func (m *Meter) scheduleLocked(now, at time.Time) {
	if m.timer != nil && m.timerAt.Equal(at) {
		return
	}
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	m.timerAt = at
	if at.IsZero() {
		return
	}
	var tm Timer
	tm = m.clock.AfterFunc(at.Sub(now), func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.timer != tm || m.closed {
			return
		}
		m.timer = nil
		m.dispatchLocked()
	})
	m.timer = tm
}

// expireLocked ends the holds that max_hold has run out.
func (m *Meter) expireLocked(now time.Time) {
	for _, c := range m.st.Expire(m.spec, now) {
		m.stats.Expired++
		if m.expiredOpen == nil {
			m.expiredOpen = map[uint64]Call{}
		}
		m.expiredOpen[c.ID] = c
		if err := m.store.Complete(m.name, c); err != nil {
			m.stats.StoreErrs++
		}
	}
}

// SetSpec persists and applies a new spec at once; waiters are re-evaluated
// under it and the history is kept.
func (m *Meter) SetSpec(spec Spec) error {
	if m.sh != nil {
		return m.setShared(func() error { return m.sh.store.SetSpec(m.name, spec) }, "limits")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.store.SetSpec(m.name, spec); err != nil {
		return fmt.Errorf("%w: store limits of %q: %w", ErrStore, m.name, err)
	}
	// The holds that max_hold ended under the old spec count as completed
	// then, observed or not: a new max_hold does not make them held again.
	now := m.clock.Now()
	m.expireLocked(now)
	// The buckets' debt is owed in tokens under the new limits, at most
	// their capacity (a TAT written back by the next grant or settlement;
	// a restart clamps it to the capacity again).
	m.st.TAT = rejudgeTAT(m.spec.Bucket, spec.Bucket, m.st.TAT, now)
	m.st.UTAT = rejudgeTAT(m.spec.UnitBucket, spec.UnitBucket, m.st.UTAT, now)
	m.spec = spec
	m.dispatchLocked()
	return nil
}

// SetAttr persists and applies a new owner and mode.
func (m *Meter) SetAttr(a Attr) error {
	if m.sh != nil {
		return m.setShared(func() error { return m.sh.store.SetAttr(m.name, a) }, "owner and mode")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.store.SetAttr(m.name, a); err != nil {
		return fmt.Errorf("%w: store owner and mode of %q: %w", ErrStore, m.name, err)
	}
	m.attr = a
	return nil
}

// setShared stores a change in the shared store, then reloads the meter's
// definition from it (with its version, so that no older one replaces it).
func (m *Meter) setShared(store func() error, what string) error {
	if err := store(); err != nil {
		return fmt.Errorf("%w: store %s of %q: %w", ErrStore, what, m.name, err)
	}
	m.reg.refresh(m.name)
	return nil
}

// markRemoved says the meter was removed: its data files are gone.
func (m *Meter) markRemoved() {
	m.mu.Lock()
	m.removed = true
	m.mu.Unlock()
}

// close fails every waiter with ErrClosed and refuses new ones.
func (m *Meter) close() {
	if m.sh != nil {
		m.closeShared()()
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for _, t := range m.queue {
		if t.phantom {
			t.timer.Stop()
			continue
		}
		m.finishLocked(t, Call{}, ErrClosed)
	}
	m.queue, m.phantoms = nil, 0
	m.scheduleLocked(m.clock.Now(), never)
}

// busy reports whether the meter has holders or waiters.
func (m *Meter) busy() bool {
	if m.sh != nil {
		return false // the shared store decides (DeleteMeter says ErrBusy)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.queue)-m.phantoms > 0 || len(m.st.InProgress()) > 0 || len(m.expiredOpen) > 0
}
