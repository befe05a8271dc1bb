package meter

// The end of a call this host holds: its release (last close), revocation
// (the open failed), settlement (acquire@N's actual cost); and the meter's
// end on this host.

import (
	"fmt"
	"time"

	"github.com/rlfs/rlfs/meter/rule"
)

// Release records the completion of call id: the last close of its
// `acquire`. Releasing a call that max_hold already ended counts nothing
// more.
func (m *Meter) Release(id uint64) error {
	m.mu.Lock()
	if c, ok := m.heldLocked(id); ok {
		m.stats.Releases++
		delete(m.held, id)
		if m.reg.onRelease != nil {
			m.reg.onRelease(m.name, max(0, m.reg.clock.Now().Sub(c.GrantedAt)))
		}
	}
	m.mu.Unlock()
	if err := m.reg.dec.Release(m.ctx(), m.name, id); err != nil {
		m.mu.Lock()
		m.useLocked().stats.StoreErrs++
		m.mu.Unlock()
		return fmt.Errorf("%w: record release of %q: %w", ErrStore, m.name, err)
	}
	return nil
}

// Revoke takes back call id, granted to an open that then failed (the
// kernel truncates after OPEN, and the truncate of acquire is refused):
// nothing of it is counted, as if it had never been granted. A hold that
// max_hold ended counts as completed, observed or not: it is not taken back.
func (m *Meter) Revoke(id uint64) error {
	m.mu.Lock()
	if _, ok := m.heldLocked(id); !ok {
		m.mu.Unlock()
		return fmt.Errorf("%w: call %d of %q is not in progress", ErrNotExist, id, m.name)
	}
	m.mu.Unlock()
	err := m.reg.dec.Revoke(m.ctx(), m.name, id)
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case err == nil:
		delete(m.held, id)
		m.stats.Revoked++
		return nil
	case isNotExist(err):
		return err // ended by max_hold: it stays, to be released
	}
	m.stats.StoreErrs++
	return fmt.Errorf("%w: revoke call %d of %q: %w", ErrStore, id, m.name, err)
}

// Settle sets the actual cost of call id, held by this host (a decimal
// written to its descriptor before the last close): less than its estimate
// frees units at once, more is debt later calls wait for.
func (m *Meter) Settle(id uint64, actual int64) error {
	if actual < 0 || actual > MaxUnits {
		return fmt.Errorf("meter: actual cost %d: want 0 to 2^50", actual)
	}
	m.mu.Lock()
	c, ok := m.heldLocked(id)
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: call %d of %q is not in progress", ErrNotExist, id, m.name)
	}
	err := m.reg.dec.Settle(m.ctx(), m.name, id, actual)
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case isNotExist(err):
		return err
	case err != nil:
		m.stats.StoreErrs++
		return fmt.Errorf("%w: settle call %d of %q: %w", ErrStore, id, m.name, err)
	}
	m.stats.Settled++
	m.stats.UnitsSettled = rule.AddCounter(m.stats.UnitsSettled, actual)
	if _, still := m.held[id]; still {
		c.Actual, c.Settled = actual, true
		put(&m.held, id, c)
	}
	return nil
}

// LatestGrant returns the newest call this host holds that the thread pid
// of user uid was granted within the last d.
func (m *Meter) LatestGrant(pid int, uid uint32, d time.Duration) (uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.busy == nil {
		return 0, false
	}
	now := m.reg.clock.Now()
	var best Call
	for _, c := range m.held {
		if c.Holder.PID == pid && c.Holder.UID == uid && c.ID > best.ID && now.Sub(c.GrantedAt) <= d {
			best = c
		}
	}
	return best.ID, best.ID != 0
}

// close fails this host's waiters with ErrClosed and returns a func that
// takes them out of the decider's queue (nil when none waited).
func (m *Meter) close() func() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.busy == nil {
		return nil // no waiter, no timer
	}
	var gone []*Ticket
	for _, t := range m.tickets {
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
	m.tickets, m.phantoms, m.pending = nil, nil, nil
	if m.wake != nil {
		m.wake.Stop()
		m.wake = nil
	}
	if len(gone) == 0 {
		return nil
	}
	dec, name := m.reg.dec, m.name
	return func() {
		for _, t := range gone {
			if t.kept != nil {
				_ = dec.Revoke(m.ctx(), name, t.kept.ID)
				continue
			}
			if adm, err := dec.Cancel(m.ctx(), name, t.Seq, t.id); err == nil && adm.Granted {
				_ = dec.Revoke(m.ctx(), name, adm.Call.ID)
			}
		}
	}
}

// markRemoved says the meter was removed: its data files are gone.
func (m *Meter) markRemoved() {
	m.mu.Lock()
	m.removed = true
	m.mu.Unlock()
}
