package rule

import (
	"cmp"
	"slices"
	"time"
)

// Ledger is one meter's calls as the rule needs them, kept so that every
// decision costs O(1) amortized, or O(log n), in the calls the meter
// remembers (design §11; docs/engine.md, "The rule's data"): the calls in
// progress in grant order with their count and units, the calls that still
// count against a window in count order, where each window starts among
// them with the sum of what counts there, the buckets, and the history.
// Its answers are those of AdmitCost on the State it pictures (State),
// except that a units window's next instant is looked for among MaxWalk
// entries at most. Not safe for concurrent use; create it with NewLedger
// or RestoreLedger.
type Ledger struct {
	spec    Spec
	history time.Duration
	nextID  uint64

	open   *openSet        // in progress, hold not ended (nil until the first grant)
	held   map[uint64]Call // ended by max_hold, not released (also in ents; nil until the first)
	*books                 // nil until the first grant, entry, bucket TAT or history
}

// books is what a ledger keeps once it is used: an idle meter's ledger
// (never granted since the daemon started, nothing stored) has none, so
// that 10,000 idle meters do not pay for empty windows and times.
type books struct {
	openU sum // units of the calls in open

	ents   []entry // counting (or not retired yet), by count time
	head   int     // ents[:head] are retired
	scan   int     // ents[head:scan] are retired, or in progress (count=grant): late
	late   []Call  // calls of ents[:scan] that completed since: to retire
	groups int     // live entries of ents[head:] that are history groups
	win    []winPos

	past  []Past    // retired, grouped, by completion
	epoch time.Time // entries' times are offsets from it (the first time the ledger saw)
	tat   time.Time
	utat  time.Time
}

// own returns the ledger's books, made on first use.
func (l *Ledger) own() *books {
	if l.books == nil {
		l.books = &books{win: make([]winPos, len(l.spec.Windows))}
	}
	return l.books
}

// entry is a call that counts, or may, against the windows: completed
// (count=completion), or granted (count=grant); or a history group that a
// widened window counts again. It keeps what the windows, retirement and
// State need of a call, in 64 bytes (times as offsets from the ledger's
// epoch); the rest of a call in progress or held is in open or held.
type entry struct {
	at, granted, done time.Duration // count time, grant, completion (notDone: in progress)
	id                uint64        // the call; 0 for a history group (grp)
	units             int64         // what it counts against a units window
	grp               *Past
	dead              bool // retired (the entries before head are all dead)
}

// notDone is the completion of a call in progress (count=grant).
const notDone = time.Duration(-1 << 63)

// rel is t as an offset from the ledger's epoch (set by the first time it
// sees; an offset keeps the monotonic clock's order).
func (l *Ledger) rel(t time.Time) time.Duration {
	if l.own().epoch.IsZero() {
		l.epoch = t
	}
	return t.Sub(l.epoch)
}

// abs is the instant of offset d.
func (l *Ledger) abs(d time.Duration) time.Time { return l.epoch.Add(d) }

// callEntry is the entry of call c, counting from at.
func (l *Ledger) callEntry(c Call, at time.Time) entry {
	done := notDone
	if !c.DoneAt.IsZero() {
		done = l.rel(c.DoneAt)
	}
	return entry{at: l.rel(at), granted: l.rel(c.GrantedAt), done: done, id: c.ID, units: c.Units()}
}

// groupEntry is the entry of history group p, counting from at.
func (l *Ledger) groupEntry(p Past, at time.Time) entry {
	return entry{at: l.rel(at), units: p.U, grp: &p}
}

// callOf is the call of entry e as State lists it: its cost is what it
// counts (whether estimated or settled: the rule reads Units()).
func (l *Ledger) callOf(e entry) Call {
	c := Call{ID: e.id, GrantedAt: l.abs(e.granted), Cost: e.units}
	if e.done != notDone {
		c.DoneAt = l.abs(e.done)
	}
	if h, ok := l.held[e.id]; ok {
		return h
	}
	return c
}

// pastOfEntry is the history group of a retired call entry.
func (l *Ledger) pastOfEntry(e entry, now time.Time) Past {
	done := now // count=grant, still in progress: its group completes now (the safe side)
	if e.done != notDone {
		done = l.abs(e.done)
	}
	return Past{N: 1, U: e.units, First: done, Granted: l.abs(e.granted), Done: done}
}

// winPos is where window i starts in ents, and what counts from there.
type winPos struct {
	pos int
	sum sum
}

// MaxWalk bounds the entries a units window looks through for its next
// instant: past them, the instant of the last one looked at is returned
// (the meter wakes early and looks again). rlfs.lua walks alike.
const MaxWalk = 256

func (e *entry) weight(w Window) int64 {
	switch {
	case w.Units:
		return e.units
	case e.grp != nil:
		return int64(e.grp.N)
	}
	return 1
}

// NewLedger returns an empty ledger for spec, keeping history as
// Options.History says.
func NewLedger(spec Spec, history time.Duration) *Ledger {
	return &Ledger{spec: spec, history: history, nextID: 1}
}

// Spec returns the ledger's spec.
func (l *Ledger) Spec() Spec { return l.spec }

// countTime is when c starts counting against the windows (zero: it does
// not yet: in progress with count=completion).
func (l *Ledger) countTime(c Call) time.Time {
	if l.spec.Count == CountGrant {
		return c.GrantedAt
	}
	return c.DoneAt
}

// openWeight is what the calls in progress count against w when their
// ends are unknown or to come (count=completion).
func (l *Ledger) openWeight(w Window) sum {
	if l.spec.Count == CountGrant {
		return sum{}
	}
	if w.Units {
		if l.books == nil {
			return sum{}
		}
		return l.openU
	}
	var s sum
	s.add(int64(l.open.Len()))
	return s
}

// Advance brings the ledger to now: it ends the holds that max_hold ran
// out (returned, oldest first: each completed at grant+max_hold) and moves
// each window's start past what stopped counting. Every other method
// expects it called first at the same now.
func (l *Ledger) Advance(now time.Time) []Call {
	var expired []Call
	if l.spec.MaxHold > 0 {
		for c := l.open.Front(); c != nil && !c.GrantedAt.Add(l.spec.MaxHold).After(now); c = l.open.Front() {
			l.takeOpen(c.ID)
			c.DoneAt, c.Expired = c.GrantedAt.Add(l.spec.MaxHold), true
			if l.held == nil {
				l.held = map[uint64]Call{}
			}
			l.held[c.ID] = *c
			l.completed(*c, now)
			expired = append(expired, *c)
		}
	}
	if l.books == nil {
		return expired
	}
	for i, w := range l.spec.Windows {
		p := &l.win[i]
		for p.pos < len(l.ents) && l.ents[p.pos].at+w.Per <= l.rel(now) {
			p.sum.sub(l.ents[p.pos].weight(w))
			p.pos++
		}
	}
	return expired
}

// takeOpen removes call id from the calls in progress.
func (l *Ledger) takeOpen(id uint64) *Call {
	c := l.open.Remove(id)
	if c != nil {
		l.openU.sub(c.Units())
	}
	return c
}

// completed records that c completed (c.DoneAt): with count=completion it
// starts counting in the windows; with count=grant its entry learns its
// completion.
func (l *Ledger) completed(c Call, now time.Time) {
	if l.spec.Count == CountGrant {
		if i := l.find(c); i >= 0 {
			l.ents[i].done = l.rel(c.DoneAt)
			if i < l.scan {
				l.late = append(l.late, c) // Retire passed it while it was in progress
			}
		}
		return
	}
	l.insert(l.callEntry(c, c.DoneAt), now)
}

// insert puts e in ents in count-time order (almost always at the end)
// and adds it to the windows it counts in at now: an entry that does not
// count sorts before every window's start.
func (l *Ledger) insert(e entry, now time.Time) {
	l.own()
	i := len(l.ents)
	for i > l.head && l.ents[i-1].at > e.at {
		i--
	}
	l.ents = slices.Insert(l.ents, i, e)
	if e.grp != nil {
		l.groups++
	}
	if i < l.scan {
		l.scan++
		if e.grp == nil {
			l.late = append(l.late, l.callOf(e)) // completed long ago (max_hold): Retire takes it
		}
	}
	for k, w := range l.spec.Windows {
		p := &l.win[k]
		if e.at+w.Per <= l.rel(now) {
			p.pos++ // it stopped counting in w already: it sorts before w's start
			continue
		}
		p.sum.add(e.weight(w))
	}
}

// find returns the index in ents of call c's entry, or -1.
func (l *Ledger) find(c Call) int {
	at := l.countTime(c)
	if at.IsZero() || l.books == nil {
		return -1
	}
	d := l.rel(at)
	i, _ := slices.BinarySearchFunc(l.ents[l.head:], d, func(e entry, t time.Duration) int { return cmp.Compare(e.at, t) })
	for i += l.head; i < len(l.ents) && l.ents[i].at == d; i++ {
		if l.ents[i].id == c.ID && !l.ents[i].dead {
			return i
		}
	}
	return -1
}

// removeAt takes entry i out of ents and out of the windows it counts in.
func (l *Ledger) removeAt(i int) {
	e := l.ents[i]
	for k, w := range l.spec.Windows {
		p := &l.win[k]
		if i < p.pos {
			p.pos--
		} else {
			p.sum.sub(e.weight(w))
		}
	}
	if e.grp != nil {
		l.groups--
	}
	if i < l.scan {
		l.scan--
	}
	l.ents = slices.Delete(l.ents, i, i+1)
}

// reweigh changes the units of call c's entry (a settlement) in the
// windows it counts in.
func (l *Ledger) reweigh(i int, c Call) {
	old := l.ents[i].units
	l.ents[i].units = c.Units()
	for k, w := range l.spec.Windows {
		if p := &l.win[k]; w.Units && i >= p.pos {
			p.sum.sub(old)
			p.sum.add(c.Units())
		}
	}
}
