package meter

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Waiter is one blocked open, as a Snapshot shows it.
type Waiter struct {
	Seq    uint64
	Holder Holder
	Since  time.Time
	Cost   int64 // units it asks for
}

// Snapshot is a consistent picture of one meter, for `status`, `holders/`
// and `waiters/`. Times carry the clock's monotonic reading where it had one.
type Snapshot struct {
	Name    string
	Spec    Spec
	Attr    Attr
	Now     time.Time
	Holders []Call   // in progress, grant order (nil from Status)
	Expired []Call   // ended by max_hold but still open, grant order (nil from Status)
	Waiters []Waiter // queue order (nil from Status)
	// The lengths of the three lists, also set by Status.
	HoldersN, ExpiredN, WaitersN int
	Usage                        []WindowUsage
	Buckets                      []BucketUsage
	// Next is when a new call could be granted: Next.OK means now; a zero
	// Next.At means after a release.
	Next   Decision
	Grants uint64 // ever, as stored
	Stats  Stats
	// Retired is how many completed calls are kept in the history (Past)
	// after they stopped counting; RetiredSince the earliest completion
	// among them.
	Retired      int
	RetiredSince time.Time
	// WaitersUnknown is set by SnapshotOf: a store does not hold waiters.
	WaitersUnknown bool
	// On a SharedStore: Host names this daemon, Hosts the hosts with a
	// lease on the meter, and StoreDown, when not zero, says since when the
	// store is unreachable (the lists then hold only this host's part).
	Host      string
	Hosts     []string
	StoreDown time.Time
	// Pause is the meter's pause (design §10); zero: not paused.
	Pause Pause
}

// Snapshot returns the meter's state at the clock's now, with the lists of
// holders and waiters.
func (m *Meter) Snapshot() Snapshot { return m.snapshot(true) }

// Status is Snapshot without the lists (only their lengths): its cost does
// not grow with the queue.
func (m *Meter) Status() Snapshot { return m.snapshot(false) }

func (m *Meter) snapshot(lists bool) Snapshot {
	v, err := m.reg.dec.View(m.ctx(), m.name, ViewQuery{Lists: lists})
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Snapshot{Name: m.name, Spec: m.spec, Attr: m.attr, Now: m.reg.clock.Now(), Stats: m.statsLocked(), Host: m.reg.dec.Host()}
	if err != nil {
		s.StoreDown = m.reg.unreachableSince()
		if s.StoreDown.IsZero() {
			s.StoreDown = s.Now
		}
		m.localPictureLocked(&s, lists)
		return s
	}
	s.Spec, s.Attr, s.Now = v.Spec, v.Attr, v.Now
	s.Holders, s.Expired, s.Waiters = v.Holders, v.Expired, v.Waiters
	s.HoldersN, s.ExpiredN, s.WaitersN = v.HoldersN, v.ExpiredN, v.WaitersN
	s.Usage, s.Buckets, s.Next, s.Grants = v.Usage, v.Buckets, v.Next, v.Grants
	s.Retired, s.RetiredSince, s.Hosts = v.Retired, v.RetiredSince, v.Hosts
	s.Stats.Expired = max(s.Stats.Expired, v.ExpiredTotal)
	s.Pause = v.Pause
	m.hidePhantomsLocked(&s)
	return s
}

// hidePhantomsLocked leaves out of s this host's interrupted opens that
// keep their place for RetryGrace, and the grants they got meanwhile: they
// are neither waiting nor held by anyone.
func (m *Meter) hidePhantomsLocked(s *Snapshot) {
	if m.busy == nil || len(m.phantoms) == 0 {
		return
	}
	kept, grants := map[uint64]bool{}, map[uint64]bool{}
	for _, t := range m.phantoms {
		switch {
		case t.kept != nil:
			grants[t.kept.ID] = true // granted meanwhile: not held by anyone yet
		case t.Seq != 0:
			kept[t.Seq] = true
		}
	}
	if len(kept)+len(grants) == 0 {
		return
	}
	mine := func(h Holder) bool { return s.Host == "" || h.Host == s.Host }
	s.WaitersN = max(0, s.WaitersN-len(kept))
	s.Waiters = slices.DeleteFunc(s.Waiters, func(w Waiter) bool { return kept[w.Seq] && mine(w.Holder) })
	s.HoldersN = max(0, s.HoldersN-len(grants))
	s.Holders = slices.DeleteFunc(s.Holders, func(c Call) bool { return grants[c.ID] && mine(c.Holder) })
}

// localPictureLocked fills s with what this host knows while its decider
// cannot be reached: its calls and waiters.
func (m *Meter) localPictureLocked(s *Snapshot, lists bool) {
	b := m.busy
	if b == nil {
		b = &busy{}
	}
	holders := make([]Call, 0, len(b.held))
	for _, c := range b.held {
		holders = append(holders, c)
	}
	slices.SortFunc(holders, func(a, b Call) int { return cmp.Compare(a.ID, b.ID) })
	var waiters []Waiter
	for _, t := range b.tickets {
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

// usage fills in the window usage and the history of st at s.Now.
func (s *Snapshot) usage(st *State) {
	for _, w := range s.Spec.Windows {
		s.Usage = append(s.Usage, WindowUsage{Window: w, Used: Usage(s.Spec, w, st, s.Now)})
	}
	s.Buckets = Buckets(s.Spec, st.TAT, st.UTAT, s.Now)
	s.Retired = st.PastCalls()
	if len(st.Past) > 0 {
		s.RetiredSince = st.Past[0].First
	}
}

// Text renders the snapshot as `status` shows it: one `key: value` per line,
// wall-clock times in RFC 3339 with milliseconds.
func (s Snapshot) Text() string {
	var b strings.Builder
	kv := func(k string, format string, args ...any) {
		fmt.Fprintf(&b, "%s: %s\n", k, fmt.Sprintf(format, args...))
	}
	kv("meter", "%s", s.Name)
	kv("limits", "%s", s.Spec)
	if s.Host != "" {
		s.fleetLines(kv)
	}
	for _, u := range s.Usage {
		kv("window "+u.Window.String(), "%d used, %d free", u.Used, max(0, u.Window.N-u.Used))
	}
	for _, b := range s.Buckets {
		kv("bucket "+b.Item, "%d of %d free", b.Free, b.Burst)
	}
	conc := "unlimited"
	if s.Spec.Concurrency > 0 {
		conc = fmt.Sprint(s.Spec.Concurrency)
	}
	kv("in_progress", "%d of %s", s.HoldersN, conc)
	kv("expired_holds", "%d", s.ExpiredN)
	if s.WaitersUnknown {
		kv("waiting", "-")
	} else {
		kv("waiting", "%d", s.WaitersN)
	}
	kv("next_grant", "%s", s.nextGrant())
	kv("pause", "%s", s.Pause.Text(s.Now))
	if s.Retired > 0 {
		kv("history", "%d calls since %s", s.Retired, FormatTime(s.RetiredSince))
	} else {
		kv("history", "0 calls")
	}
	for _, c := range append(s.counters(), s.unitCounters()...) {
		kv(c.key, "%d", c.n)
	}
	return b.String()
}

// SnapshotOf pictures a stored meter at now without a live Meter: for
// reading a database that a running daemon owns. Calls in progress stay in
// progress; waiters are not stored, so WaitersUnknown is set.
func SnapshotOf(s Stored, now time.Time) Snapshot {
	st := State{NextID: s.State.NextID, TAT: s.State.TAT}
	for _, p := range s.State.Past {
		p.First, p.Granted, p.Done = earliest(p.First, now), earliest(p.Granted, now), earliest(p.Done, now)
		st.Past = append(st.Past, p)
	}
	for _, c := range s.State.Calls {
		if c.GrantedAt.After(now) {
			c.GrantedAt = now
		}
		if c.DoneAt.After(now) {
			c.DoneAt = now
		}
		st.Calls = append(st.Calls, c)
	}
	snap := Snapshot{Name: s.Name, Spec: s.Spec, Attr: s.Attr, Now: now, Grants: s.Grants, WaitersUnknown: true}
	st.Expire(s.Spec, now) // holds past max_hold count as completed
	// A store does not know whether an expired hold is still open, so
	// only calls in progress are listed.
	for _, c := range st.Calls {
		if c.InProgress() {
			snap.Holders = append(snap.Holders, c)
		}
	}
	snap.HoldersN = len(snap.Holders)
	snap.usage(&st)
	snap.Next = Admit(s.Spec, &st, now)
	return snap
}

// Held returns call id while it holds the meter: in progress, or ended by
// max_hold but not released yet (expired). A call of this host carries its
// holder's command line.
func (m *Meter) Held(id uint64) (c Call, expired bool, ok bool) {
	v, err := m.reg.dec.View(m.ctx(), m.name, ViewQuery{Call: id})
	m.mu.Lock()
	defer m.mu.Unlock()
	mine, isMine := m.heldLocked(id)
	if err != nil || v.Call == nil {
		if isMine && err != nil {
			return mine, false, true // the decider cannot say: this host's view
		}
		return Call{}, false, false
	}
	c = *v.Call
	if isMine && mine.Holder.Cmd != "" && c.Holder.Cmd == "" {
		c.Holder.Cmd = mine.Holder.Cmd
	}
	return c, c.Expired, true
}

// Waiting returns the waiter with arrival number seq and its 1-based place
// in the queue.
func (m *Meter) Waiting(seq uint64) (w Waiter, pos int, ok bool) {
	v, err := m.reg.dec.View(m.ctx(), m.name, ViewQuery{Seq: seq})
	if err != nil || v.Waiter == nil {
		return Waiter{}, 0, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	pos = v.Place
	if m.busy == nil {
		return *v.Waiter, max(pos, 1), true
	}
	for _, t := range m.phantoms {
		if t.Seq != 0 && t.Seq <= seq {
			if t.Seq == seq {
				return Waiter{}, 0, false
			}
			pos--
		}
	}
	return *v.Waiter, max(pos, 1), true
}

// Now returns the meter clock's now.
func (m *Meter) Now() time.Time { return m.reg.clock.Now() }

// earliest returns the earlier of t and u.
func earliest(t, u time.Time) time.Time {
	if t.After(u) {
		return u
	}
	return t
}
