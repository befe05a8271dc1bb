package meter

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A meter of a SharedStore: the store decides, this side keeps the host's
// waiters (tickets), their max_wait and kept places, the calls this host
// holds, and the timer that tells the store when the head of the queue may
// be admitted. It never polls: it sleeps until the store's wake instant,
// or until an event (a grant, a new wake instant, the store back).

// backupWake is how long after the wake instant a host whose waiter is not
// at the head tries the queue itself, in case the head's host is gone.
const backupWake = 50 * time.Millisecond

type sharedMeter struct {
	store     SharedStore
	tickets   map[uint64]*Ticket // this host's waiters, by ticket id (queued, pending or kept)
	pending   []*Ticket          // arrived while the store was unreachable, in order
	held      map[uint64]Call    // calls granted to this host, not released
	wake      Timer
	wakeAt    time.Time
	wakeOrder uint64    // Order of the wake instant in force
	down      time.Time // the store is unreachable since (zero: reachable)
}

func newSharedMeter(store SharedStore) *sharedMeter {
	return &sharedMeter{store: store, tickets: map[uint64]*Ticket{}, held: map[uint64]Call{}}
}

// acquireShared is Acquire on a shared store.
func (m *Meter) acquireShared(ctx context.Context, h Holder, cost int64, nonblock bool) (Call, error) {
	t, err := m.enqueueShared(h, cost, nonblock)
	if err != nil {
		return Call{}, err
	}
	select {
	case <-t.done:
		return t.Result()
	case <-ctx.Done():
		return m.leaveShared(t, ErrInterrupted)
	}
}

// enqueueShared creates a ticket for h and asks the store for a call.
func (m *Meter) enqueueShared(h Holder, cost int64, nonblock bool) (*Ticket, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	if err := m.spec.Fits(cost); err != nil {
		m.stats.Rejected++
		m.mu.Unlock()
		return nil, err
	}
	now := m.clock.Now()
	if t := m.reattachLocked(h, cost, now); t != nil {
		m.mu.Unlock()
		return t, nil
	}
	t := &Ticket{id: m.reg.ticketID(), Holder: h, Since: now, Cost: cost, done: make(chan struct{})}
	sh := m.sh
	if !sh.down.IsZero() {
		defer m.mu.Unlock()
		if nonblock {
			m.stats.Rejected++
			return nil, ErrWouldBlock
		}
		return t, m.pendLocked(t, now)
	}
	sh.tickets[t.id] = t
	m.mu.Unlock()
	adm, err := sh.store.Enqueue(m.name, Request{Ticket: t.id, Holder: h, Cost: cost, Nonblock: nonblock})
	m.mu.Lock()
	defer m.mu.Unlock()
	return t, m.enqueuedLocked(t, adm, err, nonblock, now)
}

// enqueuedLocked applies the store's answer to a new ticket.
func (m *Meter) enqueuedLocked(t *Ticket, adm Admission, err error, nonblock bool, now time.Time) error {
	sh := m.sh
	switch {
	case errors.Is(err, ErrUnavailable):
		delete(sh.tickets, t.id)
		m.markDownLocked(now)
		if nonblock {
			m.stats.Rejected++
			return ErrWouldBlock
		}
		return m.pendLocked(t, now)
	case errors.Is(err, ErrWouldBlock), errors.Is(err, ErrTooManyWaiters), errors.Is(err, ErrTooBig):
		delete(sh.tickets, t.id)
		m.stats.Rejected++
		return err
	case err != nil:
		delete(sh.tickets, t.id)
		m.stats.StoreErrs++
		return fmt.Errorf("%w: ask for a call of %q: %w", ErrStore, m.name, err)
	}
	sh.down = time.Time{}
	if adm.Granted {
		delete(sh.tickets, t.id)
		if !t.finished() { // else the store's event delivered this grant first
			m.grantedLocked(t, adm.Call)
		}
		return nil
	}
	t.Seq = adm.Seq
	if !t.finished() {
		m.startWaitTimer(t, now)
		m.armWakeLocked(adm.Wake, adm.Head, adm.Order)
	}
	return nil
}

// pendLocked keeps t until the store is reachable again.
func (m *Meter) pendLocked(t *Ticket, now time.Time) error {
	t.pending = true
	m.sh.tickets[t.id] = t
	m.sh.pending = append(m.sh.pending, t)
	m.startWaitTimer(t, now)
	return nil
}

// reattachLocked gives h's thread back the place its interrupted open of
// the same cost kept (see Options.RetryGrace), or returns nil.
func (m *Meter) reattachLocked(h Holder, cost int64, now time.Time) *Ticket {
	for _, old := range m.sh.tickets {
		if !old.phantom || old.Holder.PID != h.PID || old.Holder.UID != h.UID || old.Cost != cost {
			continue
		}
		old.timer.Stop()
		t := &Ticket{id: old.id, Seq: old.Seq, Holder: h, Since: old.Since, Cost: old.Cost, done: make(chan struct{})}
		if old.kept != nil {
			delete(m.sh.tickets, old.id)
			m.grantedLocked(t, *old.kept)
			return t
		}
		m.sh.tickets[t.id] = t
		m.startWaitTimer(t, now)
		return t
	}
	return nil
}

// grantedLocked finishes t with call c, which this host now holds.
func (m *Meter) grantedLocked(t *Ticket, c Call) {
	host := c.Holder.Host
	c.Holder = t.Holder
	c.Holder.Host = host
	c.Cost = t.Cost
	m.sh.held[c.ID] = c
	m.stats.Grants++
	m.stats.Units = addCounter(m.stats.Units, c.Cost)
	waited := max(0, m.clock.Now().Sub(t.Since))
	m.stats.WaitTotal += waited
	if m.onGrant != nil {
		m.onGrant(waited)
	}
	m.finishLocked(t, c, nil)
}

// sharedGranted is the store's grant of a queued ticket of this host.
func (m *Meter) sharedGranted(ticket uint64, c Call) {
	m.mu.Lock()
	t := m.sh.tickets[ticket]
	switch {
	case t != nil && t.phantom:
		t.kept = &c // its thread may come back for it; dropPhantom revokes it otherwise
		m.mu.Unlock()
		return
	case t != nil && !t.finished():
		delete(m.sh.tickets, ticket)
		m.grantedLocked(t, c)
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	// Nobody waits for it (interrupted, timed out, or the daemon restarted):
	// nothing of it may count.
	if err := m.sh.store.Revoke(m.name, c.ID); err != nil {
		m.mu.Lock()
		m.stats.StoreErrs++
		m.mu.Unlock()
	}
}

// sharedRefused is the store's refusal of a queued ticket of this host.
func (m *Meter) sharedRefused(ticket uint64, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.sh.tickets[ticket]
	if t == nil {
		return
	}
	delete(m.sh.tickets, ticket)
	m.stats.Rejected++
	if !t.finished() {
		m.finishLocked(t, Call{}, fmt.Errorf("%w: a call of %d units", err, t.Cost))
	}
}

// leaveShared takes t out of the queue (interrupted or timed out). A grant
// that raced with it is returned: the caller must release it.
func (m *Meter) leaveShared(t *Ticket, why error) (Call, error) {
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
	if errors.Is(why, ErrInterrupted) && m.retryGrace > 0 {
		m.finishLocked(t, Call{}, why)
		t.phantom = true
		t.timer = m.clock.AfterFunc(m.retryGrace, func() { m.dropPhantomShared(t) })
		m.mu.Unlock()
		return t.Result()
	}
	seq := t.Seq
	m.mu.Unlock()
	adm, err := m.sh.store.Cancel(m.name, seq, t.id)
	m.mu.Lock()
	defer m.mu.Unlock()
	if t.finished() {
		return t.Result() // granted meanwhile
	}
	delete(m.sh.tickets, t.id)
	if err == nil && adm.Granted {
		m.grantedLocked(t, adm.Call)
		return t.Result()
	}
	m.countLeave(why)
	m.finishLocked(t, Call{}, why)
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
	delete(m.sh.tickets, t.id)
	for i, p := range m.sh.pending {
		if p == t {
			m.sh.pending = append(m.sh.pending[:i], m.sh.pending[i+1:]...)
			break
		}
	}
}

// dropPhantomShared ends the place an interrupted open kept: nobody came
// back. A grant it received meanwhile is revoked.
func (m *Meter) dropPhantomShared(t *Ticket) {
	m.mu.Lock()
	if !t.phantom || m.sh.tickets[t.id] != t {
		m.mu.Unlock()
		return
	}
	t.phantom = false
	delete(m.sh.tickets, t.id)
	m.stats.Interrupts++
	kept, seq := t.kept, t.Seq
	m.mu.Unlock()
	var err error
	if kept != nil {
		err = m.sh.store.Revoke(m.name, kept.ID)
	} else {
		var adm Admission
		adm, err = m.sh.store.Cancel(m.name, seq, t.id)
		if err == nil && adm.Granted {
			err = m.sh.store.Revoke(m.name, adm.Call.ID)
		}
	}
	if err != nil {
		m.mu.Lock()
		m.stats.StoreErrs++
		m.mu.Unlock()
	}
}

// leaveTimedOut is max_wait's timer on a shared store.
func (m *Meter) leaveTimedOut(t *Ticket) {
	c, err := m.leaveShared(t, ErrTimeout)
	if err == nil {
		// Granted as it timed out: nobody will use it.
		_ = m.releaseShared(c.ID)
	}
}

// armWakeLocked sets the timer that dispatches the queue at at (a waiter
// of this host at the head) or a little later (a waiter behind another
// host's, in case that host is gone). What the store said before order is
// stale and ignored.
func (m *Meter) armWakeLocked(at time.Time, head bool, order uint64) {
	sh := m.sh
	if order < sh.wakeOrder {
		return
	}
	sh.wakeOrder = order
	if sh.wake != nil {
		sh.wake.Stop()
		sh.wake = nil
	}
	if at.IsZero() || len(sh.tickets) == len(sh.pending) {
		return
	}
	if !head {
		at = at.Add(backupWake)
	}
	sh.wakeAt = at
	var tm Timer
	tm = m.clock.AfterFunc(max(0, at.Sub(m.clock.Now())), func() {
		m.mu.Lock()
		if sh.wake != tm || m.closed {
			m.mu.Unlock()
			return
		}
		sh.wake = nil
		m.mu.Unlock()
		m.dispatchShared()
	})
	sh.wake = tm
}

// dispatchShared asks the store to grant what it may now.
func (m *Meter) dispatchShared() {
	adm, err := m.sh.store.Dispatch(m.name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			m.markDownLocked(m.clock.Now())
		} else {
			m.stats.StoreErrs++
		}
		return
	}
	m.armWakeLocked(adm.Wake, adm.Head, adm.Order)
}

// sharedWake is the store's new wake instant for the queue.
func (m *Meter) sharedWake(at time.Time, head bool, order uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.armWakeLocked(at, head, order)
}
