package meter

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
	NextID uint64 // ID of the next grant; 0 means 1
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

// Admit applies the admission rule to st at now: concurrency, every window
// and the token bucket must all admit a call. It does not change st.
func Admit(spec Spec, st *State, now time.Time) Decision {
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
		if t, ok := windowAdmits(spec, w, st, now); !ok {
			later(t)
		}
	}
	if b := spec.Bucket; b != nil {
		if earliest := st.TAT.Add(-b.Interval() * time.Duration(b.Burst-1)); earliest.After(now) {
			later(earliest)
		}
	}
	if blocked {
		return Decision{At: never}
	}
	if at.After(now) {
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
	return kthWeighted(ends, len(ends)-spec.Concurrency), false
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

func windowAdmits(spec Spec, w Window, st *State, now time.Time) (time.Time, bool) {
	ends, n := windowEnds(spec, w, st, now)
	if n < w.N {
		return now, true
	}
	return kthWeighted(ends, n-w.N), false
}

// windowEnds lists when the calls that count against w at now stop
// counting (zero: unknown, in progress), and how many calls count.
func windowEnds(spec Spec, w Window, st *State, now time.Time) ([]weighted, int) {
	var ends []weighted
	n := 0
	for _, p := range recentPast(st.Past, now.Add(-w.Per)) {
		if u := p.end(spec, w.Per); u.After(now) {
			ends = append(ends, weighted{u, p.N})
			n += p.N
		}
	}
	for _, c := range st.Calls {
		if u := countsUntil(spec, c, w.Per); u.IsZero() || u.After(now) {
			ends = append(ends, weighted{u, 1})
			n++
		}
	}
	return ends, n
}

// Grant records a call granted at now and returns it. The caller has checked
// Admit first.
func (st *State) Grant(spec Spec, now time.Time, h Holder) Call {
	if st.NextID == 0 {
		st.NextID = 1
	}
	c := Call{ID: st.NextID, GrantedAt: now, Holder: h}
	st.NextID++
	st.Calls = append(st.Calls, c)
	if b := spec.Bucket; b != nil {
		st.TAT = later(st.TAT, now).Add(b.Interval())
	}
	return c
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

// Usage returns how many calls count against w at now.
func Usage(spec Spec, w Window, st *State, now time.Time) int {
	_, n := windowEnds(spec, w, st, now)
	return n
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
