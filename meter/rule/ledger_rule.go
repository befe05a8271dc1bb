package rule

import "time"

// Admit applies the rule at now to a call of cost units, as AdmitCost does
// on the ledger's State: concurrency, every window (a units window needs
// room for cost) and both buckets must admit it. Call Advance(now) first;
// Admit changes nothing. It reads counters, and for the instant of a
// refusal the oldest entries only.
func (l *Ledger) Admit(now time.Time, cost int64) Decision {
	at, blocked := now, false
	later := func(t time.Time) {
		if t.IsZero() {
			blocked = true
		} else if t.After(at) {
			at = t
		}
	}
	s := l.spec
	if s.Concurrency > 0 && l.open.Len() >= s.Concurrency {
		later(l.openEnd(l.open.Len()-s.Concurrency, 0))
	}
	for i, w := range s.Windows {
		sw := l.openWeight(w)
		if l.books != nil {
			sw = l.win[i].sum.plus(sw)
		}
		used := sw.value()
		if need := weightIn(w, 1, cost); used+need > int64(w.N) {
			later(l.windowEnd(i, used+need-int64(w.N)-1))
		}
	}
	tat, utat := l.Buckets()
	bucketsAdmit(s, tat, utat, now, cost, later)
	return decision(now, at, blocked)
}

// openEnd is when the k-th oldest call in progress (0-based) stops counting
// against a window of per (0: against concurrency): at the end of its hold
// with max_hold, else not before its release (zero).
func (l *Ledger) openEnd(k int, per time.Duration) time.Time {
	c := l.open.Kth(k)
	if c == nil || l.spec.MaxHold <= 0 {
		return never
	}
	return c.GrantedAt.Add(l.spec.MaxHold + per)
}

// windowEnd is when window i will have stopped counting the first k+1 of
// what counts against it (calls, or units): the k-th end (0-based) in
// count order. Every entry of the ledger ends before any call in progress
// (count=completion: a completed call ends at most PER from now, a call in
// progress later, or at a release). A call window finds it by rank; a
// units window walks at most MaxWalk entries and, past them, returns the
// instant of the last one looked at (an early wake: the rule looks again).
func (l *Ledger) windowEnd(i int, k int64) time.Time {
	if l.books == nil {
		return never // no entry, and no call in progress (Grant makes the books)
	}
	w, p := l.spec.Windows[i], l.win[i]
	if !w.Units && l.groups == 0 {
		if n := int64(len(l.ents) - p.pos); k < n {
			return l.abs(l.ents[p.pos+int(k)].at + w.Per)
		} else {
			k -= n
		}
		if l.spec.Count == CountGrant {
			return never
		}
		return l.openEnd(int(k), w.Per)
	}
	walked := 0
	for j := p.pos; j < len(l.ents); j++ {
		e := &l.ents[j]
		end := l.abs(e.at + w.Per)
		if wt := e.weight(w); k < wt {
			return end
		} else {
			k -= wt
		}
		if walked++; walked == MaxWalk {
			return end
		}
	}
	if l.spec.Count == CountGrant || l.spec.MaxHold <= 0 {
		return never
	}
	end := never
	l.open.Each(func(c *Call) bool {
		end = c.GrantedAt.Add(l.spec.MaxHold + w.Per)
		wt := weightIn(w, 1, c.Units())
		if k < wt {
			return false
		}
		k -= wt
		if walked++; walked == MaxWalk {
			return false
		}
		end = never
		return true
	})
	return end
}
