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
	if l.books == nil {
		l.spec = spec // no entry, TAT or history to judge again
		return
	}
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
		switch {
		case e.grp != nil:
			e.at = l.rel(l.groupTime(*e.grp))
			ents = append(ents, e)
		case l.spec.Count == CountGrant:
			e.at = e.granted
			ents = append(ents, e)
		case e.done != notDone:
			e.at = e.done
			ents = append(ents, e)
		}
	}
	if l.spec.Count == CountGrant {
		l.open.Each(func(c *Call) bool { // in progress: no entry with count=completion
			ents = append(ents, l.callEntry(*c, c.GrantedAt))
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
			l.ents = append(l.ents, l.groupEntry(p, l.groupTime(p)))
		} else {
			keep = append(keep, p)
		}
	}
	if len(keep) != len(l.past) {
		l.past = keep
	}
	ents := l.ents[l.head:]
	slices.SortStableFunc(ents, func(a, b entry) int {
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	l.groups = 0
	for _, e := range ents {
		if e.grp != nil {
			l.groups++
		}
	}
	l.win = make([]winPos, len(l.spec.Windows))
	for i, w := range l.spec.Windows {
		p := &l.win[i]
		j, _ := slices.BinarySearchFunc(ents, l.rel(now)-w.Per, func(e entry, t time.Duration) int {
			if e.at > t {
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
	l.nextID = max(st.NextID, 1)
	if st.TAT.IsZero() && st.UTAT.IsZero() && len(st.Calls) == 0 && len(st.Past) == 0 {
		return l, nil // idle: no books
	}
	l.own()
	l.tat, l.utat = st.TAT, st.UTAT
	var ended []Call
	for i, c := range st.Calls {
		if was[i].InProgress() {
			ended = append(ended, c)
		}
		l.ents = append(l.ents, l.callEntry(c, l.countTime(c)))
	}
	l.past = st.Past
	l.rebuild(now)
	return l, ended
}

// State pictures the ledger as plain data (the reference rule's input, and
// what a store rewrites): every call still remembered, in progress or
// counting, by id, and the history, with the groups that count again.
func (l *Ledger) State() State {
	st := State{NextID: l.nextID}
	if l.books == nil {
		return st
	}
	st.TAT, st.UTAT, st.Past = l.tat, l.utat, slices.Clone(l.past)
	l.open.Each(func(c *Call) bool {
		st.Calls = append(st.Calls, *c)
		return true
	})
	for _, e := range l.ents[l.head:] {
		switch {
		case e.dead:
		case e.grp != nil:
			st.Past = append(st.Past, *e.grp)
		case l.spec.Count == CountGrant && l.open.Get(e.id) != nil:
			// listed with the calls in progress
		default:
			st.Calls = append(st.Calls, l.callOf(e))
		}
	}
	slices.SortFunc(st.Calls, func(a, b Call) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortStableFunc(st.Past, func(a, b Past) int { return a.Done.Compare(b.Done) })
	return st
}
