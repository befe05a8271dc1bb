package redis

import (
	"time"

	"github.com/rlfs/rlfs/meter"
)

// This host's part of each meter: its calls (to pick up missed grants, to
// put them back should the store lose its data) and its queued tickets (the
// meters whose lease it renews), and when the lease was last renewed.

func (s *Store) localOfMeter(name string) *local {
	l := s.mine[name]
	if l == nil {
		l = &local{calls: map[uint64]ownCall{}, waiters: map[uint64]time.Time{}}
		s.mine[name] = l
	}
	return l
}

// own records call c, granted to ticket at granted (µs, store time), and
// reports whether it is new (a grant is delivered once, however it came).
func (s *Store) own(name string, ticket uint64, c meter.Call, granted int64, sent time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.localOfMeter(name)
	if sent.After(l.lastOK) {
		l.lastOK = sent
	}
	delete(l.waiters, ticket)
	if _, dup := l.calls[c.ID]; dup {
		return false
	}
	l.calls[c.ID] = ownCall{ticket: ticket, granted: granted, holder: c.Holder}
	s.journalLocked(jrec{K: "call", M: name, ID: c.ID, Ticket: ticket, G: granted, PID: c.Holder.PID})
	return true
}

// asking records that ticket is being asked for at sent: a grant of it
// proves that the store renewed this host's lease at sent or later.
func (s *Store) asking(name string, ticket uint64, sent time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.localOfMeter(name).waiters[ticket] = sent
}

// queued records that ticket waits in the store (or no longer does).
func (s *Store) queued(name string, ticket uint64, waiting bool, sent time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.localOfMeter(name)
	if sent.After(l.lastOK) {
		l.lastOK = sent
	}
	if !waiting {
		delete(l.waiters, ticket)
	} else if _, ok := l.waiters[ticket]; !ok {
		l.waiters[ticket] = sent
	}
}

// ended records that call id completed at done (µs; 0: unknown), or is
// gone (revoked, or unknown to the store).
func (s *Store) ended(name string, id uint64, done int64, gone bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.mine[name]
	if l == nil {
		return
	}
	c, ok := l.calls[id]
	switch {
	case !ok:
	case gone:
		delete(l.calls, id)
		s.journalLocked(jrec{K: "gone", M: name, ID: id})
	default:
		c.done = done
		l.calls[id] = c
		s.journalLocked(jrec{K: "done", M: name, ID: id, D: done})
	}
}

// renewed records that a call sent at sent renewed this host's lease.
func (s *Store) renewed(name string, sent time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.mine[name]; l != nil && sent.After(l.lastOK) {
		l.lastOK = sent
	}
}

// leaseHeld reports whether a lease renewed by a call sent at sent still
// holds, with a margin: a host gives up its grants before its lease can
// lapse in the store.
func (s *Store) leaseHeld(sent time.Time) bool {
	return s.clock.Now().Sub(sent) < s.opt.Lease-s.margin
}

// leaseOf returns when this host's lease on meter name was last renewed,
// as far as a grant of ticket tells.
func (s *Store) leaseOf(name string, ticket uint64) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.mine[name]
	if l == nil {
		return time.Time{}
	}
	if asked, ok := l.waiters[ticket]; ok && asked.After(l.lastOK) {
		return asked
	}
	return l.lastOK
}

// tidy drops the completed calls that no longer count against any window
// of their meter, and the meters where this host has nothing.
func (s *Store) tidy(storeNow int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, l := range s.mine {
		var longest time.Duration
		if d, ok := s.defs[name]; ok {
			longest = d.Spec.Longest()
		}
		for id, c := range l.calls {
			if c.done != 0 && c.done+micros(longest) < storeNow {
				delete(l.calls, id)
			}
		}
		if len(l.calls) == 0 && len(l.waiters) == 0 {
			delete(s.mine, name)
		}
	}
}

// postpone keeps a completion for when the store is back.
func (s *Store) postpone(o outOp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outbox = append(s.outbox, o)
	s.journalLocked(jrec{K: "out", M: o.meter, ID: o.id, D: o.done, Rev: o.revoke})
	id := o.id
	if nu, ok := s.remap[o.meter][id]; ok {
		id = nu
	}
	if l := s.mine[o.meter]; l != nil {
		if c, ok := l.calls[id]; ok {
			if o.revoke {
				delete(l.calls, id)
			} else {
				c.done = o.done
				l.calls[id] = c
			}
		}
	}
}
