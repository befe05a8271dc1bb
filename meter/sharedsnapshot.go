package meter

import (
	"cmp"
	"errors"
	"slices"
)

// snapshotShared pictures the meter fleet-wide, from the store. While the
// store cannot be reached, it pictures this host's part and says since when.
func (m *Meter) snapshotShared(lists bool) Snapshot {
	v, err := m.sh.store.View(m.name, lists)
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	s := Snapshot{Name: m.name, Spec: m.spec, Attr: m.attr, Now: now, Stats: m.stats, Host: m.sh.store.Host()}
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			m.markDownLocked(now)
		}
		s.StoreDown = m.sh.down
		if s.StoreDown.IsZero() {
			s.StoreDown = now
		}
		m.localPictureLocked(&s, lists)
		return s
	}
	s.Spec, s.Attr, s.Now = v.Spec, v.Attr, v.Now
	s.Holders, s.Expired, s.Waiters = v.Holders, v.Expired, v.Waiters
	s.HoldersN, s.ExpiredN, s.WaitersN = v.HoldersN, v.ExpiredN, v.WaitersN
	s.Usage, s.Buckets, s.Next, s.Grants = v.Usage, v.Buckets, v.Next, v.Grants
	s.Retired, s.RetiredSince, s.Hosts = v.Retired, v.RetiredSince, v.Hosts
	return s
}

// localPictureLocked fills s with what this host knows: its calls and waiters.
func (m *Meter) localPictureLocked(s *Snapshot, lists bool) {
	var holders []Call
	for _, c := range m.sh.held {
		holders = append(holders, c)
	}
	slices.SortFunc(holders, func(a, b Call) int { return cmp.Compare(a.ID, b.ID) })
	var waiters []Waiter
	for _, t := range m.sh.tickets {
		if !t.phantom && !t.finished() {
			waiters = append(waiters, Waiter{Seq: t.Seq, Holder: t.Holder, Since: t.Since, Cost: t.Cost})
		}
	}
	slices.SortFunc(waiters, func(a, b Waiter) int { return a.Since.Compare(b.Since) })
	s.HoldersN, s.WaitersN = len(holders), len(waiters)
	if lists {
		s.Holders, s.Waiters = holders, waiters
	}
	s.Hosts = []string{s.Host}
}

// heldShared finds call id among the fleet's holders.
func (m *Meter) heldShared(id uint64) (Call, bool, bool) {
	s := m.snapshotShared(true)
	for _, c := range s.Holders {
		if c.ID == id {
			return c, false, true
		}
	}
	for _, c := range s.Expired {
		if c.ID == id {
			return c, true, true
		}
	}
	return Call{}, false, false
}

// waitingShared finds waiter seq in the fleet's queue.
func (m *Meter) waitingShared(seq uint64) (Waiter, int, bool) {
	s := m.snapshotShared(true)
	for i, w := range s.Waiters {
		if w.Seq == seq {
			return w, i + 1, true
		}
	}
	return Waiter{}, 0, false
}
