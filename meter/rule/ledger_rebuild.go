package rule

import (
	"cmp"
	"slices"
	"time"
)

// SetSpec applies a new spec at now (Advance(now) under the old one
// first, so that the holds it ended count as completed then). The
// buckets' debt is re-judged in tokens under the new limits (rejudgeTAT);
// the history groups that a widened window counts again go back among the
// entries; each window's start and sum are computed again: the one step
// that reads every entry (linear).
func (l *Ledger) SetSpec(spec Spec, now time.Time) {
	old := l.spec
	l.tat = rejudgeTAT(old.Bucket, spec.Bucket, l.tat, now)
	l.utat = rejudgeTAT(old.UnitBucket, spec.UnitBucket, l.utat, now)
	l.spec = spec
	if old.Count != spec.Count {
		l.recount()
	}
	l.rebuild(now)
}

// recount makes the entries again after a change of count mode: with
// count=grant every call counts from its grant, in progress or not; with
// count=completion only completed calls are entries.
func (l *Ledger) recount() {
	ents := make([]entry, 0, len(l.ents)-l.head+l.open.Len())
	for _, e := range l.ents[l.head:] {
		if e.dead {
			continue
		}
		if e.call.ID == 0 {
			e.at = l.groupTime(e.grp)
			ents = append(ents, e)
		} else if at := l.countTime(e.call); !at.IsZero() {
			e.at = at
			ents = append(ents, e)
		}
	}
	if l.spec.Count == CountGrant {
		l.open.Each(func(c *Call) bool {
			ents = append(ents, entry{at: c.GrantedAt, call: *c})
			return true
		})
	}
	l.ents, l.head = ents, 0
}

// rebuild puts back the history groups that count against a window of
// the spec at now, orders the entries, and computes every window's start
// and sum.
func (l *Ledger) rebuild(now time.Time) {
	l.ents = slices.DeleteFunc(l.ents[l.head:], func(e entry) bool { return e.dead })
	l.head, l.scan, l.late = 0, 0, nil
	longest := l.spec.Longest()
	var keep []Past
	for _, p := range l.past {
		if longest > 0 && p.end(l.spec, longest).After(now) {
			l.ents = append(l.ents, entry{at: l.groupTime(p), grp: p})
		} else {
			keep = append(keep, p)
		}
	}
	if len(keep) != len(l.past) {
		l.past = keep
	}
	ents := l.ents[l.head:]
	slices.SortStableFunc(ents, func(a, b entry) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.call.ID, b.call.ID)
	})
	l.groups = 0
	for _, e := range ents {
		if e.call.ID == 0 {
			l.groups++
		}
	}
	l.win = make([]winPos, len(l.spec.Windows))
	for i, w := range l.spec.Windows {
		p := &l.win[i]
		j, _ := slices.BinarySearchFunc(ents, now.Add(-w.Per), func(e entry, t time.Time) int {
			if e.at.After(t) {
				return 1
			}
			return -1
		})
		p.pos = l.head + j
		for k := p.pos; k < len(l.ents); k++ {
			p.sum.add(l.ents[k].weight(w))
		}
	}
}

// groupTime is a history group's count time.
func (l *Ledger) groupTime(p Past) time.Time {
	if l.spec.Count == CountGrant {
		return p.Granted
	}
	return p.Done
}

// RestoreLedger makes the ledger of a meter stored as st, at now after a
// restart: stored times are rebased onto now's clock and clamped to now
// (the clock was set back: no wait is longer than its PER), and the calls
// that were in progress count as completed now. It returns them too, for
// the store to record.
func RestoreLedger(spec Spec, st State, now time.Time, history time.Duration) (*Ledger, []Call) {
	was := st.Calls
	st = restore(spec, st, now)
	l := NewLedger(spec, history)
	l.tat, l.utat, l.nextID = st.TAT, st.UTAT, max(st.NextID, 1)
	var ended []Call
	for i, c := range st.Calls {
		if was[i].InProgress() {
			ended = append(ended, c)
		}
		l.ents = append(l.ents, entry{at: l.countTime(c), call: c})
	}
	l.past = st.Past
	l.rebuild(now)
	return l, ended
}

// State pictures the ledger as plain data (the reference rule's input, and
// what a store rewrites): every call still remembered, in progress or
// counting, by id, and the history, with the groups that count again.
func (l *Ledger) State() State {
	st := State{TAT: l.tat, UTAT: l.utat, NextID: l.nextID, Past: slices.Clone(l.past)}
	l.open.Each(func(c *Call) bool {
		st.Calls = append(st.Calls, *c)
		return true
	})
	for _, e := range l.ents[l.head:] {
		switch {
		case e.dead:
		case e.call.ID == 0:
			st.Past = append(st.Past, e.grp)
		case l.spec.Count == CountGrant && l.open.Get(e.call.ID) != nil:
			// listed with the calls in progress
		default:
			st.Calls = append(st.Calls, e.call)
		}
	}
	slices.SortFunc(st.Calls, func(a, b Call) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortStableFunc(st.Past, func(a, b Past) int { return a.Done.Compare(b.Done) })
	return st
}
