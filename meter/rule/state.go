package rule

import (
	"slices"
	"time"
)

// Holder says who made a call: the process that opened `acquire`.
type Holder struct {
	PID int
	UID uint32
	GID uint32
	Cmd string // command line, arguments separated by spaces
	// Host names the host of the process in a fleet (a SharedStore); empty
	// on a single host.
	Host string
}

// Call is one granted call. DoneAt is zero while the call is in progress.
type Call struct {
	ID        uint64
	GrantedAt time.Time
	DoneAt    time.Time
	Expired   bool // completed by max_hold rather than by a release
	Holder    Holder
	// Cost is the units the call was granted for (acquire@N; acquire is 1).
	// Once Settled, Actual is its real cost (a decimal written to its
	// descriptor before the last close), which counts instead.
	Cost    int64
	Actual  int64
	Settled bool
	// Absorbed is how many of its units the units bucket forgave: debt
	// beyond the bucket's capacity (see Settle). A later settlement to
	// less takes them back first, so that settling high and then low
	// never refunds what was not charged.
	Absorbed int64
}

// Units is what the call counts against units windows and the units
// bucket: its actual cost once settled, else its estimate.
func (c Call) Units() int64 {
	if c.Settled {
		return c.Actual
	}
	return c.Cost
}

// InProgress reports whether the call has not completed yet.
func (c Call) InProgress() bool { return c.DoneAt.IsZero() }

// State is the plain-data history of one meter: the calls that may still
// count, the older calls kept for the history horizon, and the token
// bucket's theoretical arrival time. Its zero value is an empty meter. Not
// safe for concurrent use.
type State struct {
	Calls  []Call // in progress or still counting; ordered by ID (grant order)
	Past   []Past // retired calls, grouped, ordered by Done (see Retire)
	TAT    time.Time
	UTAT   time.Time // the units bucket's theoretical arrival time
	NextID uint64    // ID of the next grant; 0 means 1
}

// Decision is the answer of Admit.
type Decision struct {
	OK bool
	// At is the earliest instant the call could be admitted, when !OK. Zero
	// means only a release can admit it (calls in progress without max_hold).
	At time.Time
}

// never stands for "only after a release".
var never = time.Time{}

// Admit applies the admission rule to st at now to a call of cost 1 (see
// AdmitCost).
func Admit(spec Spec, st *State, now time.Time) Decision { return AdmitCost(spec, st, now, 1) }

// AdmitCost applies the admission rule to st at now: concurrency, every
// window (units windows need room for cost) and both token buckets must
// all admit a call of cost units. It does not change st. A cost that no
// units item can ever admit (Spec.Fits) is never admitted: At is zero.
func AdmitCost(spec Spec, st *State, now time.Time, cost int64) Decision {
	at := now
	blocked := false
	later := func(t time.Time) {
		if t.IsZero() {
			blocked = true
		} else if t.After(at) {
			at = t
		}
	}
	if spec.Concurrency > 0 {
		if t, ok := concurrencyAdmits(spec, st, now); !ok {
			later(t)
		}
	}
	for _, w := range spec.Windows {
		if t, ok := windowAdmits(spec, w, st, now, cost); !ok {
			later(t)
		}
	}
	bucketsAdmit(spec, st.TAT, st.UTAT, now, cost, later)
	return decision(now, at, blocked)
}

// bucketsAdmit checks both token buckets for a call of cost at now, given
// their TATs, telling later when each admits it (zero: never).
func bucketsAdmit(spec Spec, tat, utat, now time.Time, cost int64, later func(time.Time)) {
	if b := spec.Bucket; b != nil {
		if earliest := tat.Add(-b.Interval() * time.Duration(b.Burst-1)); earliest.After(now) {
			later(earliest)
		}
	}
	if b := spec.UnitBucket; b != nil && cost > 0 {
		if cost > int64(b.Burst) {
			later(never)
		} else if earliest := utat.Add(-b.Interval() * time.Duration(int64(b.Burst)-cost)); earliest.After(now) {
			later(earliest)
		}
	}
}

// decision is the rule's answer at now: admitted, or not before at (never
// when blocked).
func decision(now, at time.Time, blocked bool) Decision {
	switch {
	case blocked:
		return Decision{At: never}
	case at.After(now):
		return Decision{At: at}
	}
	return Decision{OK: true}
}

// doneAt is when the call completed, or would be counted completed by
// max_hold (zero: not yet known).
func doneAt(spec Spec, c Call) time.Time {
	if !c.DoneAt.IsZero() {
		return c.DoneAt
	}
	if spec.MaxHold > 0 {
		return c.GrantedAt.Add(spec.MaxHold)
	}
	return never
}

// inProgressAt reports whether c holds a concurrency slot at now.
func inProgressAt(spec Spec, c Call, now time.Time) bool {
	d := doneAt(spec, c)
	return d.IsZero() || d.After(now)
}

func concurrencyAdmits(spec Spec, st *State, now time.Time) (time.Time, bool) {
	var ends []weighted
	for _, c := range st.Calls {
		if inProgressAt(spec, c, now) {
			ends = append(ends, weighted{doneAt(spec, c), 1})
		}
	}
	if len(ends) < spec.Concurrency {
		return now, true
	}
	return kthWeighted(ends, int64(len(ends)-spec.Concurrency)), false
}

// countsUntil is the instant a call stops counting against a window of per
// (zero: not known yet, it is in progress).
func countsUntil(spec Spec, c Call, per time.Duration) time.Time {
	if spec.Count == CountGrant {
		return c.GrantedAt.Add(per)
	}
	d := doneAt(spec, c)
	if d.IsZero() {
		return never
	}
	return d.Add(per)
}

// windowAdmits checks window w for a call of cost (a call window needs room
// for one call, a units window for cost units).
func windowAdmits(spec Spec, w Window, st *State, now time.Time, cost int64) (time.Time, bool) {
	ends, n := windowEnds(spec, w, st, now)
	need := weightIn(w, 1, cost)
	if n+need <= int64(w.N) {
		return now, true
	}
	return kthWeighted(ends, n+need-int64(w.N)-1), false
}

// windowEnds lists when what counts against w at now stops counting (zero:
// unknown, in progress), and how much counts: calls, or units of cost for a
// units window.
func windowEnds(spec Spec, w Window, st *State, now time.Time) ([]weighted, int64) {
	var ends []weighted
	var n int64
	for _, p := range recentPast(st.Past, now.Add(-w.Per)) {
		wt := weightIn(w, p.N, p.U)
		if u := p.end(spec, w.Per); u.After(now) && wt > 0 {
			ends = append(ends, weighted{u, wt})
			n = addSat(n, wt, MaxUsage)
		}
	}
	for _, c := range st.Calls {
		wt := weightIn(w, 1, c.Units())
		if u := countsUntil(spec, c, w.Per); (u.IsZero() || u.After(now)) && wt > 0 {
			ends = append(ends, weighted{u, wt})
			n = addSat(n, wt, MaxUsage)
		}
	}
	return ends, n
}

// Grant records a call of cost 1 granted at now (see GrantCost).
func (st *State) Grant(spec Spec, now time.Time, h Holder) Call { return st.GrantCost(spec, now, h, 1) }

// GrantCost records a call of cost units granted at now and returns it.
// The caller has checked AdmitCost first.
func (st *State) GrantCost(spec Spec, now time.Time, h Holder, cost int64) Call {
	if st.NextID == 0 {
		st.NextID = 1
	}
	c := Call{ID: st.NextID, GrantedAt: now, Holder: h, Cost: cost}
	st.NextID++
	st.Calls = append(st.Calls, c)
	if b := spec.Bucket; b != nil {
		st.TAT = later(st.TAT, now).Add(b.Interval())
	}
	if b := spec.UnitBucket; b != nil && cost > 0 {
		st.UTAT = later(st.UTAT, now).Add(b.Interval() * time.Duration(cost))
	}
	return c
}

// Settle sets the actual cost of call id, not yet retired, at now: less
// than its estimate frees units at once, more is debt that later calls wait
// for. The units bucket owes at most its capacity (see chargeBucket). It
// returns the call and false if the call is unknown.
func (st *State) Settle(spec Spec, id uint64, actual int64, now time.Time) (Call, bool) {
	i := st.index(id)
	if i < 0 {
		return Call{}, false
	}
	c := &st.Calls[i]
	old := c.Units()
	c.Actual, c.Settled = actual, true
	if b := spec.UnitBucket; b != nil {
		st.UTAT, c.Absorbed = chargeBucket(b, st.UTAT, c.GrantedAt, now, c.Absorbed, actual-old)
	}
	return *c, true
}

// chargeBucket moves a bucket's TAT by delta tokens of one call granted at
// granted, of which the bucket forgave absorbed already. Debt (delta > 0)
// is owed as of the grant, up to the bucket's capacity at now (bucketCap):
// the rest is absorbed, forgiven. A refund (delta < 0) first takes back
// what was absorbed, then gives tokens back. It returns the new TAT and
// absorbed.
func chargeBucket(b *Bucket, tat, granted, now time.Time, absorbed, delta int64) (time.Time, int64) {
	iv := b.Interval()
	if delta >= 0 {
		base := later(tat, granted)
		room := int64(0)
		if limit := bucketCap(b, now); limit.After(base) {
			room = int64(limit.Sub(base) / iv)
		}
		take := min(delta, room)
		if take == 0 {
			return tat, absorbed + delta
		}
		return base.Add(iv * time.Duration(take)), absorbed + delta - take
	}
	back := min(-delta, absorbed)
	if refund := -delta - back; refund > 0 && !tat.IsZero() {
		tat = tat.Add(-iv * time.Duration(refund))
	}
	return tat, absorbed - back
}

// Complete records that call id completed at now. It returns the call and
// false if it is unknown or already completed (by max_hold, say).
func (st *State) Complete(id uint64, now time.Time) (Call, bool) {
	i := st.index(id)
	if i < 0 || !st.Calls[i].InProgress() {
		return Call{}, false
	}
	st.Calls[i].DoneAt = now
	return st.Calls[i], true
}

// Expire marks every call held longer than max_hold as completed at the
// moment its hold expired, and returns those calls.
func (st *State) Expire(spec Spec, now time.Time) []Call {
	if spec.MaxHold <= 0 {
		return nil
	}
	var out []Call
	for i := range st.Calls {
		c := &st.Calls[i]
		if c.InProgress() && !c.GrantedAt.Add(spec.MaxHold).After(now) {
			c.DoneAt = c.GrantedAt.Add(spec.MaxHold)
			c.Expired = true
			out = append(out, *c)
		}
	}
	return out
}

// InProgress returns the calls in progress at now, in grant order.
func (st *State) InProgress() []Call {
	var out []Call
	for _, c := range st.Calls {
		if c.InProgress() {
			out = append(out, c)
		}
	}
	return out
}

// Usage returns how many calls (or, for a units window, units) count
// against w at now.
func Usage(spec Spec, w Window, st *State, now time.Time) int {
	_, n := windowEnds(spec, w, st, now)
	return int(n)
}

func (st *State) index(id uint64) int {
	i, ok := slices.BinarySearchFunc(st.Calls, id, func(c Call, id uint64) int {
		switch {
		case c.ID < id:
			return -1
		case c.ID > id:
			return 1
		}
		return 0
	})
	if !ok {
		return -1
	}
	return i
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
