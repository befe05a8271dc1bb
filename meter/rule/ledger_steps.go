package rule

import (
	"time"
)

// Grant records a call of cost units granted at now to h and returns it.
// The caller has checked Admit first.
func (l *Ledger) Grant(now time.Time, h Holder, cost int64) Call {
	l.own()
	c := &Call{ID: l.nextID, GrantedAt: now, Holder: h, Cost: cost}
	l.nextID++
	if l.open == nil {
		l.open = &openSet{}
	}
	l.open.Add(c.ID, c)
	l.openU.add(cost)
	if l.spec.Count == CountGrant {
		l.insert(l.callEntry(*c, now), now)
	}
	if b := l.spec.Bucket; b != nil {
		l.tat = later(l.tat, now).Add(b.Interval())
	}
	if b := l.spec.UnitBucket; b != nil && cost > 0 {
		l.utat = later(l.utat, now).Add(b.Interval() * time.Duration(cost))
	}
	return *c
}

// Buckets returns the buckets' TATs, to persist after a grant or a
// settlement, or to put back after a failed one (SetBuckets).
func (l *Ledger) Buckets() (tat, utat time.Time) {
	if l.books == nil {
		return time.Time{}, time.Time{}
	}
	return l.tat, l.utat
}

// Ungrant takes back call c, just granted (Grant), whose grant could not be
// persisted, with the buckets as they were before (tat, utat): as if it had
// never been granted, its id free again.
func (l *Ledger) Ungrant(c Call, tat, utat time.Time) {
	l.drop(c.ID)
	l.tat, l.utat = tat, utat
	if l.nextID == c.ID+1 {
		l.nextID = c.ID
	}
}

// drop takes call id, in progress, out of the ledger entirely.
func (l *Ledger) drop(id uint64) (Call, bool) {
	c := l.takeOpen(id)
	if c == nil {
		return Call{}, false
	}
	if l.spec.Count == CountGrant {
		if i := l.find(*c); i >= 0 {
			l.removeAt(i)
		}
	}
	return *c, true
}

// Complete records that call id, in progress, completed at now; it starts
// to count as completed. It returns the call, and true if the completion
// is to be stored: false for a call max_hold ended (completed then; held
// reports it until now) and for a call not known.
func (l *Ledger) Complete(id uint64, now time.Time) (Call, bool) {
	if c, ok := l.held[id]; ok {
		delete(l.held, id)
		return c, false
	}
	c := l.takeOpen(id)
	if c == nil {
		return Call{}, false
	}
	c.DoneAt = now
	l.completed(*c, now)
	return *c, true
}

// Settle sets the actual cost of call id, in progress or ended by max_hold
// and not released, at now (see State.Settle: a refund frees units at
// once, debt is owed, the units bucket owes at most one period beyond
// empty). It returns the call, and false if there is no such call (or its
// entry retired already).
func (l *Ledger) Settle(id uint64, actual int64, now time.Time) (Call, bool) {
	charge := func(c *Call) {
		old := c.Units()
		c.Actual, c.Settled = actual, true
		if b := l.spec.UnitBucket; b != nil {
			l.utat, c.Absorbed = chargeBucket(b, l.utat, c.GrantedAt, now, c.Absorbed, actual-old)
		}
	}
	if c := l.open.Get(id); c != nil {
		l.openU.sub(c.Units())
		charge(c)
		l.openU.add(c.Units())
		if i := l.find(*c); i >= 0 && l.spec.Count == CountGrant {
			l.reweigh(i, *c)
		}
		return *c, true
	}
	c, ok := l.held[id]
	if !ok {
		return Call{}, false
	}
	i := l.find(c)
	if i < 0 {
		return Call{}, false
	}
	charge(&c)
	l.held[id] = c
	l.reweigh(i, c)
	return c, true
}

// Revoke takes back call id, in progress, granted to an open that then
// failed: nothing of it counts, the buckets are paid back. A call that
// max_hold ended counts as completed and is not taken back: false.
func (l *Ledger) Revoke(id uint64) (Call, bool) {
	c, ok := l.drop(id)
	if !ok {
		return Call{}, false
	}
	if b := l.spec.Bucket; b != nil && !l.tat.IsZero() {
		l.tat = l.tat.Add(-b.Interval())
	}
	if b := l.spec.UnitBucket; b != nil && !l.utat.IsZero() {
		l.utat = l.utat.Add(-b.Interval() * time.Duration(c.Units()-c.Absorbed))
	}
	return c, true
}

// MaxRetire bounds the entries one Retire moves into the history (the
// oldest first); the rest wait for the next release, so that no step's
// cost grows with a burst that stops counting at once. rlfs.lua retires
// alike.
const MaxRetire = 32

// Retire moves what no window counts any more (count time at or before
// now − the longest window) into the grouped history, at most MaxRetire
// entries, drops history older than the horizon and compacts it (see
// State.Retire, whose groups it makes). It returns the cutoff and whether
// the history changed; call it after Advance(now), at a release.
func (l *Ledger) Retire(now time.Time) (cutoff time.Time, changed bool) {
	cutoff = now.Add(-l.spec.Longest())
	if l.books == nil {
		return cutoff, false // nothing to retire, no history
	}
	var retired []Past
	retire := func(i int) {
		e := &l.ents[i]
		if e.grp != nil {
			l.groups--
			retired = append(retired, *e.grp)
		} else {
			retired = append(retired, l.pastOfEntry(*e, now))
		}
		*e = entry{at: e.at, dead: true}
	}
	n := 0
	for n < len(l.late) && len(retired) < MaxRetire {
		if i := l.find(l.late[n]); i >= 0 {
			retire(i)
		}
		n++
	}
	l.late = append(l.late[:0], l.late[n:]...)
	// A call still in progress (count=grant) is retired once it completes.
	for l.scan = max(l.scan, l.head); l.scan < len(l.ents) && l.ents[l.scan].at <= l.rel(cutoff); l.scan++ {
		if len(retired) == MaxRetire {
			// The rest wait: the store keeps the calls from the one
			// before on (a call both kept and in the history counts
			// longer, the safe side).
			cutoff = l.abs(l.ents[l.scan-1].at - 1)
			break
		}
		if e := &l.ents[l.scan]; !e.dead && (e.grp != nil || e.done != notDone) {
			retire(l.scan)
		}
	}
	for l.head < len(l.ents) && l.ents[l.head].dead {
		l.ents[l.head] = entry{}
		l.head++
	}
	if l.head > 64 && l.head > len(l.ents)/2 {
		l.compactEntries()
	}
	var dropped bool
	l.past, dropped = keepPast(l.past, retired, now, max(l.history, l.spec.Longest()))
	return cutoff, len(retired) > 0 || dropped
}

// compactEntries drops the retired entries from the front of ents.
func (l *Ledger) compactEntries() {
	n := copy(l.ents, l.ents[l.head:])
	clear(l.ents[n:])
	l.ents = l.ents[:n]
	for i := range l.win {
		l.win[i].pos -= l.head
	}
	l.scan -= l.head
	l.head = 0
}
