package meter

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
)

// How a waiter of this host leaves (a signal, max_wait, a kept place that
// nobody came back for) and how it wakes (the decider's wake instant, its
// grants, its refusals, its return after an outage).

// backupWake is how long after the wake instant a host whose waiter is not
// at the head tries the queue itself, in case the head's host is gone.
const backupWake = 50 * time.Millisecond

// reattachLocked gives h's thread back the place its interrupted open of
// the same cost kept (see Options.RetryGrace), or returns nil. A Go
// program's runtime signals interrupt blocked opens, and os.Open retries
// them at once.
func (m *Meter) reattachLocked(h Holder, cost int64, now time.Time) *Ticket {
	for _, old := range m.phantoms {
		if old.Holder.PID != h.PID || old.Holder.UID != h.UID || old.Cost != cost {
			continue
		}
		old.timer.Stop()
		delete(m.phantoms, old.id)
		t := &Ticket{id: old.id, Seq: old.Seq, Holder: h, Since: old.Since, Cost: old.Cost, done: make(chan struct{})}
		if old.kept != nil {
			delete(m.tickets, old.id)
			m.grantedLocked(t, *old.kept)
			return t
		}
		put(&m.tickets, t.id, t)
		m.startWaitTimer(t)
		return t
	}
	return nil
}

// Cancel takes t out of the queue (ErrInterrupted, nothing counted). If t
// was already decided, its result is returned instead: a grant must be
// released.
func (m *Meter) Cancel(t *Ticket) (Call, error) { return m.leave(t, ErrInterrupted) }

// leave takes t out of the queue, interrupted or timed out. An interrupted
// open keeps its place for RetryGrace. A grant that raced with it is
// returned: the caller must release it.
func (m *Meter) leave(t *Ticket, why error) (Call, error) {
	m.mu.Lock()
	if t.finished() {
		m.mu.Unlock()
		return t.Result()
	}
	if t.pending {
		m.dropPendingLocked(t)
		m.countLeave(why)
		m.finishLocked(t, Call{}, why)
		m.mu.Unlock()
		return t.Result()
	}
	if errors.Is(why, ErrInterrupted) && m.reg.retryGrace > 0 {
		m.finishLocked(t, Call{}, why)
		t.phantom = true
		put(&m.phantoms, t.id, t)
		t.timer = m.reg.clock.AfterFunc(m.reg.retryGrace, func() { m.dropPhantom(t) })
		m.mu.Unlock()
		return t.Result()
	}
	seq := t.Seq
	m.mu.Unlock()
	adm, err := m.reg.dec.Cancel(m.ctx(), m.name, seq, t.id)
	m.mu.Lock()
	defer m.mu.Unlock()
	if t.finished() {
		return t.Result() // granted meanwhile
	}
	delete(m.tickets, t.id)
	if err == nil && adm.Granted {
		m.grantedLocked(t, adm.Call)
		return t.Result()
	}
	m.countLeave(why)
	m.finishLocked(t, Call{}, why)
	if err == nil && !adm.Gone && !adm.Wake.IsZero() {
		m.armWakeLocked(adm.Wake, adm.Head, adm.Order) // (a zero wake may only say that no dispatch happened)
	}
	return t.Result()
}

func (m *Meter) countLeave(why error) {
	if errors.Is(why, ErrTimeout) {
		m.stats.Timeouts++
	} else {
		m.stats.Interrupts++
	}
}

func (m *Meter) dropPendingLocked(t *Ticket) {
	delete(m.tickets, t.id)
	if i := slices.Index(m.pending, t); i >= 0 {
		m.pending = slices.Delete(m.pending, i, i+1)
	}
}

// dropPhantom ends the place an interrupted open kept: nobody came back.
// A grant it received meanwhile is revoked.
func (m *Meter) dropPhantom(t *Ticket) {
	m.mu.Lock()
	if !t.phantom || m.tickets[t.id] != t {
		m.mu.Unlock()
		return
	}
	t.phantom = false
	delete(m.tickets, t.id)
	delete(m.phantoms, t.id)
	m.stats.Interrupts++
	kept, seq := t.kept, t.Seq
	m.mu.Unlock()
	var err error
	if kept != nil {
		err = m.reg.dec.Revoke(m.ctx(), m.name, kept.ID)
	} else {
		var adm Admission
		adm, err = m.reg.dec.Cancel(m.ctx(), m.name, seq, t.id)
		if err == nil && adm.Granted {
			err = m.reg.dec.Revoke(m.ctx(), m.name, adm.Call.ID)
		} else if err == nil && !adm.Gone && !adm.Wake.IsZero() {
			m.mu.Lock()
			m.armWakeLocked(adm.Wake, adm.Head, adm.Order)
			m.mu.Unlock()
		}
	}
	if err != nil {
		m.mu.Lock()
		m.stats.StoreErrs++
		m.mu.Unlock()
	}
}

// leaveTimedOut is max_wait's timer.
func (m *Meter) leaveTimedOut(t *Ticket) {
	if c, err := m.leave(t, ErrTimeout); err == nil {
		_ = m.Release(c.ID) // granted as it timed out: nobody will use it
	}
}

// onGranted is the decider's grant of a queued ticket of this host.
func (m *Meter) onGranted(ticket uint64, c Call) {
	m.mu.Lock()
	var t *Ticket
	if m.busy != nil {
		t = m.tickets[ticket]
	}
	switch {
	case t != nil && t.phantom:
		t.kept = &c // its thread may come back for it; dropPhantom revokes it otherwise
		m.mu.Unlock()
		return
	case t != nil && !t.finished():
		delete(m.tickets, ticket)
		m.grantedLocked(t, c)
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	// Nobody waits for it (interrupted, timed out, or the daemon
	// restarted): nothing of it may count.
	if err := m.reg.dec.Revoke(m.ctx(), m.name, c.ID); err != nil {
		m.mu.Lock()
		m.useLocked().stats.StoreErrs++
		m.mu.Unlock()
	}
}

// onRefused is the decider's refusal of a queued ticket of this host.
func (m *Meter) onRefused(ticket uint64, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.busy == nil {
		return // no waiter here
	}
	t := m.tickets[ticket]
	if t == nil {
		return
	}
	delete(m.tickets, ticket)
	if t.phantom {
		t.phantom = false
		delete(m.phantoms, ticket)
		t.timer.Stop()
	}
	if t.finished() {
		return
	}
	if errors.Is(err, ErrTooBig) {
		m.stats.Rejected++
		m.finishLocked(t, Call{}, fmt.Errorf("%w: a call of %d units", err, t.Cost))
		return
	}
	m.stats.StoreErrs++
	m.finishLocked(t, Call{}, fmt.Errorf("%w: %w", ErrStore, err))
}

// armWakeLocked sets the timer that dispatches the queue at at (a waiter
// of this host at the head) or a little later (a waiter behind another
// host's, in case that host is gone). What the decider said before order
// is stale and ignored.
func (m *Meter) armWakeLocked(at time.Time, head bool, order uint64) {
	if order < m.wakeOrder {
		return
	}
	m.wakeOrder = order
	if m.busy == nil {
		return // no waiter here, no timer armed
	}
	if !at.IsZero() && !head {
		at = at.Add(backupWake)
	}
	if m.wake != nil && m.wakeAt.Equal(at) && len(m.tickets) > len(m.pending) {
		return // armed for that instant already: no re-arming
	}
	if m.wake != nil {
		m.wake.Stop()
		m.wake = nil
	}
	if at.IsZero() || len(m.tickets) == len(m.pending) {
		return
	}
	m.wakeAt = at
	var tm Timer
	tm = m.reg.clock.AfterFunc(max(0, at.Sub(m.reg.clock.Now())), func() {
		m.mu.Lock()
		if m.wake != tm || m.closed {
			m.mu.Unlock()
			return
		}
		m.wake = nil
		m.mu.Unlock()
		m.dispatch()
	})
	m.wake = tm
}

// dispatch asks the decider to grant what it may now.
func (m *Meter) dispatch() {
	adm, err := m.reg.dec.Dispatch(m.ctx(), m.name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if !errors.Is(err, ErrUnavailable) {
			m.useLocked().stats.StoreErrs++
		}
		return
	}
	m.armWakeLocked(adm.Wake, adm.Head, adm.Order)
}

// onWake is the decider's new wake instant for the queue.
func (m *Meter) onWake(at time.Time, head bool, order uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.armWakeLocked(at, head, order)
}

// onReachable is the decider back after an outage, or having lost its
// data: this host's waiters join its queue again. First those it had
// queued, in their order: the decider keeps the place of those it still
// has (asked again, a ticket keeps its place, or gets its grant), but a
// lapse of this host's lease, or the loss of the store's data, dropped the
// others. Then the opens that came meanwhile, in the order they came.
func (m *Meter) onReachable() {
	m.mu.Lock()
	if m.busy == nil {
		m.mu.Unlock()
		m.dispatch() // no waiter here; waiters of other hosts may be due
		return
	}
	var queued []*Ticket
	for _, t := range m.tickets {
		// Seq 0: its Enqueue is under way (an O_NONBLOCK open, or one
		// that will be kept pending if the decider does not answer).
		if t.Seq != 0 && !t.pending && !t.phantom && !t.finished() {
			queued = append(queued, t)
		}
	}
	slices.SortFunc(queued, func(a, b *Ticket) int { return cmp.Compare(a.Seq, b.Seq) })
	pending := m.pending
	m.pending = nil
	m.mu.Unlock()
	for _, t := range append(queued, pending...) {
		m.mu.Lock()
		if t.finished() || m.tickets[t.id] != t {
			m.mu.Unlock()
			continue
		}
		t.pending = false
		m.mu.Unlock()
		adm, err := m.reg.dec.Enqueue(m.ctx(), m.name, Request{Ticket: t.id, Holder: t.Holder, Cost: t.Cost})
		m.mu.Lock()
		if !t.finished() {
			m.requeuedLocked(t, adm, err)
		}
		m.mu.Unlock()
	}
	m.dispatch()
}

// requeuedLocked applies the decider's answer to a waiter asked for
// again; its max_wait timer runs since its open.
func (m *Meter) requeuedLocked(t *Ticket, adm Admission, err error) {
	switch {
	case errors.Is(err, ErrUnavailable):
		t.pending = true
		m.pending = append(m.pending, t)
	case errors.Is(err, ErrTooManyWaiters), errors.Is(err, ErrTooBig):
		delete(m.tickets, t.id)
		m.stats.Rejected++
		m.finishLocked(t, Call{}, err)
	case err != nil:
		delete(m.tickets, t.id)
		m.stats.StoreErrs++
		m.finishLocked(t, Call{}, fmt.Errorf("%w: ask again for a call of %q: %w", ErrStore, m.name, err))
	case adm.Granted:
		delete(m.tickets, t.id)
		m.grantedLocked(t, adm.Call)
	default:
		t.Seq = adm.Seq
		m.armWakeLocked(adm.Wake, adm.Head, adm.Order)
	}
}
