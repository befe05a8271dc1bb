package meter

// The shared store's outages, and the end of a call (release, settlement,
// revocation), for a meter of a SharedStore (see sharedmeter.go).

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
)

func (m *Meter) markDownLocked(now time.Time) {
	if m.sh.down.IsZero() {
		m.sh.down = now
	}
}

// sharedReachable is the store back after an outage, or having lost its
// data: this host's waiters join its queue again. First those it had
// queued, in their order: the store keeps the place of those it still has
// (asked again, a ticket keeps its place, or gets its grant), but a lapse
// of this host's lease, or the loss of the store's data, dropped the
// others. Then the opens that came meanwhile, in the order they came.
func (m *Meter) sharedReachable() {
	m.mu.Lock()
	m.sh.down = time.Time{}
	var queued []*Ticket
	for _, t := range m.sh.tickets {
		// Seq 0: its Enqueue is under way (an O_NONBLOCK open, or one
		// that will be kept pending if the store does not answer).
		if t.Seq != 0 && !t.pending && !t.phantom && !t.finished() {
			queued = append(queued, t)
		}
	}
	slices.SortFunc(queued, func(a, b *Ticket) int { return cmp.Compare(a.Seq, b.Seq) })
	pending := m.sh.pending
	m.sh.pending = nil
	m.mu.Unlock()
	for _, t := range append(queued, pending...) {
		m.mu.Lock()
		if t.finished() || m.sh.tickets[t.id] != t {
			m.mu.Unlock()
			continue
		}
		t.pending = false
		m.mu.Unlock()
		adm, err := m.sh.store.Enqueue(m.name, Request{Ticket: t.id, Holder: t.Holder, Cost: t.Cost})
		m.mu.Lock()
		if !t.finished() {
			m.requeuedLocked(t, adm, err)
		}
		m.mu.Unlock()
	}
	m.dispatchShared()
}

// requeuedLocked applies the store's answer to a waiter asked for again;
// its max_wait timer runs since its open.
func (m *Meter) requeuedLocked(t *Ticket, adm Admission, err error) {
	sh := m.sh
	switch {
	case errors.Is(err, ErrUnavailable):
		m.markDownLocked(m.clock.Now())
		t.pending = true
		sh.pending = append(sh.pending, t)
	case errors.Is(err, ErrTooManyWaiters), errors.Is(err, ErrTooBig):
		delete(sh.tickets, t.id)
		m.stats.Rejected++
		m.finishLocked(t, Call{}, err)
	case err != nil:
		delete(sh.tickets, t.id)
		m.stats.StoreErrs++
		m.finishLocked(t, Call{}, fmt.Errorf("%w: ask again for a call of %q: %w", ErrStore, m.name, err))
	case adm.Granted:
		delete(sh.tickets, t.id)
		m.grantedLocked(t, adm.Call)
	default:
		t.Seq = adm.Seq
		m.armWakeLocked(adm.Wake, adm.Head, adm.Order)
	}
}

// releaseShared completes call id.
func (m *Meter) releaseShared(id uint64) error {
	m.mu.Lock()
	if _, ok := m.sh.held[id]; ok {
		m.stats.Releases++
		delete(m.sh.held, id)
	}
	m.mu.Unlock()
	if err := m.sh.store.Release(m.name, id); err != nil {
		m.mu.Lock()
		m.stats.StoreErrs++
		m.mu.Unlock()
		return fmt.Errorf("%w: record release of %q: %w", ErrStore, m.name, err)
	}
	return nil
}

// settleShared sets the actual cost of call id, held by this host.
func (m *Meter) settleShared(id uint64, actual int64) error {
	m.mu.Lock()
	c, ok := m.sh.held[id]
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: call %d of %q is not in progress", ErrNotExist, id, m.name)
	}
	if err := m.sh.store.Settle(m.name, id, actual); err != nil {
		m.mu.Lock()
		m.stats.StoreErrs++
		m.mu.Unlock()
		return fmt.Errorf("%w: settle call %d of %q: %w", ErrStore, id, m.name, err)
	}
	m.mu.Lock()
	m.stats.Settled++
	m.stats.UnitsSettled = addCounter(m.stats.UnitsSettled, actual)
	c.Actual, c.Settled = actual, true
	m.sh.held[id] = c
	m.mu.Unlock()
	return nil
}

// revokeShared takes back call id.
func (m *Meter) revokeShared(id uint64) error {
	m.mu.Lock()
	if _, ok := m.sh.held[id]; !ok {
		m.mu.Unlock()
		return fmt.Errorf("%w: call %d of %q is not in progress", ErrNotExist, id, m.name)
	}
	delete(m.sh.held, id)
	m.stats.Revoked++
	m.mu.Unlock()
	if err := m.sh.store.Revoke(m.name, id); err != nil {
		m.mu.Lock()
		m.stats.StoreErrs++
		m.mu.Unlock()
		return fmt.Errorf("%w: revoke call %d of %q: %w", ErrStore, id, m.name, err)
	}
	return nil
}

// closeShared fails this host's waiters with ErrClosed and returns a func
// that takes them out of the store's queue.
func (m *Meter) closeShared() func() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	var gone []*Ticket
	for _, t := range m.sh.tickets {
		if t.phantom {
			t.timer.Stop()
		}
		if !t.finished() {
			m.finishLocked(t, Call{}, ErrClosed)
		}
		if !t.pending {
			gone = append(gone, t)
		}
	}
	m.sh.tickets, m.sh.pending = map[uint64]*Ticket{}, nil
	if m.sh.wake != nil {
		m.sh.wake.Stop()
		m.sh.wake = nil
	}
	store, name := m.sh.store, m.name
	return func() {
		for _, t := range gone {
			if adm, err := store.Cancel(name, t.Seq, t.id); err == nil && adm.Granted {
				_ = store.Revoke(name, adm.Call.ID)
			}
		}
	}
}
