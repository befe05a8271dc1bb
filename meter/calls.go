package meter

// The end of a granted call: its release (last close), revocation (the open
// failed), settlement (acquire@N's actual cost), and the retirement of calls
// no window counts any more into the grouped history.

import (
	"fmt"
	"slices"
	"time"
)

// Release records the completion of call id: the last close of its `acquire`.
// Releasing a call that max_hold already ended counts nothing more.
func (m *Meter) Release(id uint64) error {
	if m.sh != nil {
		return m.releaseShared(id)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	// A hold that max_hold ended while nobody waited has not been expired
	// yet: expire it first, so it counts completed at grant+max_hold, not now.
	m.expireLocked(now)
	if _, open := m.expiredOpen[id]; open || m.st.index(id) >= 0 {
		m.stats.Releases++
	}
	delete(m.expiredOpen, id)
	c, ok := m.st.Complete(id, now)
	var err error
	if ok {
		if err = m.store.Complete(m.name, c); err != nil {
			m.stats.StoreErrs++
			err = fmt.Errorf("%w: record release of %q: %w", ErrStore, m.name, err)
		}
	}
	m.retireLocked(now)
	m.dispatchLocked()
	return err
}

// Revoke takes back call id, granted to an open that then failed (the
// kernel truncates after OPEN, and the truncate of acquire is refused):
// nothing of it is counted, as if it had never been granted.
func (m *Meter) Revoke(id uint64) error {
	if m.sh != nil {
		return m.revokeShared(id)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// A hold that max_hold ended counts as completed, observed or not: it
	// is not taken back.
	m.expireLocked(m.clock.Now())
	i := m.st.index(id)
	if i < 0 || !m.st.Calls[i].InProgress() {
		return fmt.Errorf("%w: call %d of %q is not in progress", ErrNotExist, id, m.name)
	}
	units := m.st.Calls[i].Units() - m.st.Calls[i].Absorbed
	m.st.Calls = slices.Delete(m.st.Calls, i, i+1)
	if b := m.spec.Bucket; b != nil {
		m.st.TAT = m.st.TAT.Add(-b.Interval())
	}
	if b := m.spec.UnitBucket; b != nil && !m.st.UTAT.IsZero() {
		m.st.UTAT = m.st.UTAT.Add(-b.Interval() * time.Duration(units))
	}
	m.grants--
	m.stats.Revoked++
	err := m.store.Revoke(m.name, id)
	if err != nil {
		m.stats.StoreErrs++
		err = fmt.Errorf("%w: revoke call %d of %q: %w", ErrStore, id, m.name, err)
	}
	m.dispatchLocked()
	return err
}

// Settle sets the actual cost of call id, in progress (a decimal written
// to its descriptor before the last close): less than its estimate frees
// units at once, more is debt later calls wait for.
func (m *Meter) Settle(id uint64, actual int64) error {
	if actual < 0 || actual > MaxUnits {
		return fmt.Errorf("meter: actual cost %d: want 0 to 2^50", actual)
	}
	if m.sh != nil {
		return m.settleShared(id, actual)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	i := m.st.index(id)
	_, expired := m.expiredOpen[id]
	if i < 0 || (!expired && !m.st.Calls[i].InProgress()) {
		return fmt.Errorf("%w: call %d of %q is not in progress", ErrNotExist, id, m.name)
	}
	m.st.Settle(m.spec, id, actual, m.clock.Now())
	m.stats.UnitsSettled = addCounter(m.stats.UnitsSettled, actual)
	err := m.store.Settle(m.name, id, actual, m.st.UTAT)
	if err != nil {
		m.stats.StoreErrs++
		err = fmt.Errorf("%w: settle call %d of %q: %w", ErrStore, id, m.name, err)
	}
	m.stats.Settled++
	m.dispatchLocked()
	return err
}

// LatestGrant returns the newest call in progress that the thread pid of
// user uid was granted within the last d.
func (m *Meter) LatestGrant(pid int, uid uint32, d time.Duration) (uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	if m.sh != nil {
		var best Call
		for _, c := range m.sh.held {
			if c.Holder.PID == pid && c.Holder.UID == uid && c.ID > best.ID {
				best = c
			}
		}
		return best.ID, best.ID != 0
	}
	for i := len(m.st.Calls) - 1; i >= 0; i-- {
		c := m.st.Calls[i]
		if now.Sub(c.GrantedAt) > d {
			break
		}
		if c.InProgress() && c.Holder.PID == pid && c.Holder.UID == uid {
			return c.ID, true
		}
	}
	return 0, false
}

// retireLocked moves, in memory and in the store, the calls that count
// against no window any more into the meter's grouped history (Past). The
// store is told at every release that retires a call: a store that batches
// (meter/sqlite) then never writes most short-lived calls one by one.
func (m *Meter) retireLocked(now time.Time) {
	cutoff, changed := m.st.Retire(m.spec, now, m.history)
	if !changed {
		return
	}
	if err := m.store.Retire(m.name, cutoff, m.spec.Count == CountGrant, m.st.Past); err != nil {
		m.stats.StoreErrs++
	}
}
