package rule

import (
	"cmp"
	"maps"
	"slices"
	"time"
)

// Counts returns how many calls are in progress and how many max_hold
// ended that are not released.
func (l *Ledger) Counts() (open, held int) { return l.open.Len(), len(l.held) }

// Holders returns the calls in progress, in grant order.
func (l *Ledger) Holders() []Call {
	out := make([]Call, 0, l.open.Len())
	l.open.Each(func(c *Call) bool {
		out = append(out, *c)
		return true
	})
	return out
}

// Expired returns the calls max_hold ended that are not released, by id.
func (l *Ledger) Expired() []Call {
	out := slices.Collect(maps.Values(l.held))
	slices.SortFunc(out, func(a, b Call) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Call returns call id while it holds the meter: in progress, or ended by
// max_hold and not released (c.Expired).
func (l *Ledger) Call(id uint64) (Call, bool) {
	if c := l.open.Get(id); c != nil {
		return *c, true
	}
	c, ok := l.held[id]
	return c, ok
}

// Usage returns how much counts against each window (calls, or units,
// saturated at MaxUsage), after Advance.
func (l *Ledger) Usage() []WindowUsage {
	out := make([]WindowUsage, len(l.spec.Windows))
	for i, w := range l.spec.Windows {
		sw := l.openWeight(w)
		if l.books != nil {
			sw = l.win[i].sum.plus(sw)
		}
		out[i] = WindowUsage{Window: w, Used: int(sw.value())}
	}
	return out
}

// BucketUsage pictures the spec's token buckets at now.
func (l *Ledger) BucketUsage(now time.Time) []BucketUsage {
	tat, utat := l.Buckets()
	return Buckets(l.spec, tat, utat, now)
}

// Retired is how many calls the history holds (with the groups a widened
// window counts again), and the earliest completion among them.
func (l *Ledger) Retired() (n int, since time.Time) {
	note := func(p Past) {
		n += p.N
		if since.IsZero() || p.First.Before(since) {
			since = p.First
		}
	}
	if l.books == nil {
		return 0, time.Time{}
	}
	for _, p := range l.past {
		note(p)
	}
	if l.groups > 0 {
		for _, e := range l.ents[l.head:] {
			if e.grp != nil && !e.dead {
				note(*e.grp)
			}
		}
	}
	return n, since
}

// Past returns the history (the store may keep it: it is never changed in
// place).
func (l *Ledger) Past() []Past {
	if l.books == nil {
		return nil
	}
	return l.past
}

// NextID is the id of the next grant.
func (l *Ledger) NextID() uint64 { return l.nextID }
