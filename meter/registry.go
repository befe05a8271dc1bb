package meter

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// Registry is the set of live meters, backed by a Store. It is safe for
// concurrent use.
type Registry struct {
	store Store
	clock Clock

	mu     sync.RWMutex
	meters map[string]*Meter
	closed bool
	// OnGrant, if set before meters are created, is called with each
	// grant's wait (for metrics).
	onGrant    func(meter string, waited time.Duration)
	retryGrace time.Duration
	history    time.Duration

	local    LocalStore                   // the store, when the engine decides
	shared   SharedStore                  // the store, when it decides
	tickets  atomic.Uint64                // ticket ids for a SharedStore
	onChange atomic.Pointer[func(string)] // see OnChange
}

// Options configure Open.
type Options struct {
	Clock Clock // default SystemClock
	// OnGrant is called, under the meter's lock, with each grant's wait.
	OnGrant func(meter string, waited time.Duration)
	// RetryGrace is how long an interrupted open keeps its place in the
	// queue for the same thread to open again (default 0: it leaves at
	// once). Go programs need it: the runtime's preemption signal interrupts
	// blocked opens, and os.Open retries them at once. While the kept place
	// is at the head, the queue waits for it.
	RetryGrace time.Duration
	// History is how long completed calls are kept after they stop
	// counting against every window of their meter, grouped (see Past), so
	// that a window widened by a `limits` write judges the calls already
	// made. Default DefaultHistory; a window longer than History keeps its
	// calls as long as it needs them.
	History time.Duration
}

// Open loads every meter of store. Stored times that lie in the future (the
// clock was set back) are clamped to now, so no wait is longer than its PER;
// calls that were in progress when the last daemon died count as completed now.
func Open(store Store, opt Options) (*Registry, error) {
	if opt.Clock == nil {
		opt.Clock = SystemClock{}
	}
	if opt.History <= 0 {
		opt.History = DefaultHistory
	}
	r := &Registry{store: store, clock: opt.Clock, meters: map[string]*Meter{}, onGrant: opt.OnGrant, retryGrace: opt.RetryGrace, history: opt.History}
	if sh, ok := store.(SharedStore); ok {
		return r.openShared(sh)
	}
	local, ok := store.(LocalStore)
	if !ok {
		return nil, fmt.Errorf("meter: a %T is neither a LocalStore nor a SharedStore", store)
	}
	r.local = local
	stored, err := store.Load()
	if err != nil {
		return nil, err
	}
	now := r.clock.Now()
	for _, s := range stored {
		m := r.newMeter(s.Name, s.Spec, s.Attr)
		m.grants = s.Grants
		m.st = restore(s.Spec, s.State, now)
		for i, c := range s.State.Calls {
			if !c.InProgress() {
				continue
			}
			if err := local.Complete(s.Name, m.st.Calls[i]); err != nil {
				return nil, fmt.Errorf("meter: complete %q's calls in progress at the last stop: %w", s.Name, err)
			}
		}
		r.meters[s.Name] = m
	}
	return r, nil
}

// restore rebases stored wall-clock times onto the clock's now (so they
// carry its monotonic reading), clamps future ones to now, and completes calls
// that were in progress at now.
func restore(spec Spec, st State, now time.Time) State {
	rebase := func(t time.Time) time.Time {
		if t.IsZero() || t.After(now) {
			return now
		}
		return now.Add(t.Sub(now))
	}
	out := State{NextID: st.NextID}
	for _, c := range st.Calls {
		c.GrantedAt = rebase(c.GrantedAt)
		c.DoneAt = rebase(c.DoneAt) // zero (in progress) becomes now
		out.Calls = append(out.Calls, c)
		out.NextID = max(out.NextID, c.ID+1)
	}
	for _, p := range st.Past {
		p.First, p.Granted, p.Done = rebase(p.First), rebase(p.Granted), rebase(p.Done)
		out.Past = append(out.Past, p)
	}
	out.TAT = restoreTAT(spec.Bucket, st.TAT, now, rebase)
	out.UTAT = restoreTAT(spec.UnitBucket, st.UTAT, now, rebase)
	return out
}

// restoreTAT rebases a bucket's stored TAT and clamps one in the future to
// at most a whole burst ahead (the clock was set back: no wait is longer
// than the bucket's own).
func restoreTAT(b *Bucket, tat, now time.Time, rebase func(time.Time) time.Time) time.Time {
	if b == nil || tat.IsZero() {
		return time.Time{}
	}
	if !tat.After(now) {
		return rebase(tat)
	}
	limit := b.Interval() * time.Duration(b.Burst)
	return now.Add(min(tat.Sub(now), limit))
}

func (r *Registry) newMeter(name string, spec Spec, attr Attr) *Meter {
	m := &Meter{name: name, clock: r.clock, store: r.local, spec: spec, attr: attr, retryGrace: r.retryGrace, history: r.history, reg: r}
	if r.shared != nil {
		m.sh = newSharedMeter(r.shared)
	}
	if r.onGrant != nil {
		m.onGrant = func(w time.Duration) { r.onGrant(name, w) }
	}
	return m
}

// Get returns the named meter, or nil.
func (r *Registry) Get(name string) *Meter {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.meters[name]
}

// Names returns the meters' names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.meters))
	for n := range r.meters {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Create makes and persists a new meter.
func (r *Registry) Create(name string, spec Spec, attr Attr) (*Meter, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if _, ok := r.meters[name]; ok {
		return nil, fmt.Errorf("%w: %q", ErrExist, name)
	}
	if err := r.store.CreateMeter(name, spec, attr); errors.Is(err, ErrExist) {
		return nil, fmt.Errorf("%w: %q (made by another host)", ErrExist, name)
	} else if err != nil {
		return nil, fmt.Errorf("%w: create %q: %w", ErrStore, name, err)
	}
	m := r.newMeter(name, spec, attr)
	if r.shared != nil {
		if s, ok, err := r.shared.LoadMeter(name); err == nil && ok {
			m.spec, m.attr, m.version = s.Spec, s.Attr, s.Version
		}
	}
	r.meters[name] = m
	return m, nil
}

// Declared is the outcome of Declare for one meter.
type Declared struct {
	Created  bool
	Changed  bool // --reconfigure replaced the stored spec
	Stored   Spec // the spec in force
	Differed bool // the stored spec differs from the declared one and was kept
}

// Declare applies a `--meter`/config entry under the source-of-truth rule: a
// meter that does not exist is created; an existing one keeps its stored
// spec unless reconfigure is set.
func (r *Registry) Declare(name string, spec Spec, reconfigure bool) (Declared, error) {
	if m := r.Get(name); m != nil {
		cur := m.Spec()
		if cur.Equal(spec) {
			return Declared{Stored: cur}, nil
		}
		if !reconfigure {
			return Declared{Stored: cur, Differed: true}, nil
		}
		if err := m.SetSpec(spec); err != nil {
			return Declared{}, err
		}
		return Declared{Changed: true, Stored: spec}, nil
	}
	if _, err := r.Create(name, spec, DefaultAttr()); err != nil {
		return Declared{}, err
	}
	return Declared{Created: true, Stored: spec}, nil
}

// Remove deletes an idle meter and its history; ErrBusy while it has holders
// or waiters.
func (r *Registry) Remove(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.meters[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotExist, name)
	}
	if m.busy() {
		return fmt.Errorf("%w: %q", ErrBusy, name)
	}
	if err := r.store.DeleteMeter(name); errors.Is(err, ErrBusy) {
		return fmt.Errorf("%w: %q", ErrBusy, name)
	} else if err != nil {
		return fmt.Errorf("%w: delete %q: %w", ErrStore, name, err)
	}
	m.markRemoved()
	m.close()
	delete(r.meters, name)
	return nil
}

// Close fails every waiter of every meter with ErrClosed and refuses new
// ones. Holders may still release. It does not close the store.
func (r *Registry) Close() {
	r.mu.Lock()
	r.closed = true
	ms := make([]*Meter, 0, len(r.meters))
	for _, m := range r.meters {
		ms = append(ms, m)
	}
	r.mu.Unlock()
	if r.shared != nil {
		r.closeShared(ms)
		return
	}
	for _, m := range ms {
		m.close()
	}
}

// MaxNameLen is the longest meter name, in bytes.
const MaxNameLen = 255

// ValidName checks a meter name: 1 to 255 bytes of UTF-8, no `/`, no leading
// `.`, no control or invisible characters, no spaces at either end.
func ValidName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("meter: bad name %q: %s", name, why)
	}
	switch {
	case name == "":
		return bad("empty; give the meter a name such as email or api")
	case len(name) > MaxNameLen:
		return bad(fmt.Sprintf("longer than %d bytes; use a shorter name", MaxNameLen))
	case !utf8.ValidString(name):
		return bad("not valid UTF-8")
	case name[0] == '.':
		return bad("starts with '.', which hides it from ls; drop the dot")
	case slices.ContainsFunc([]rune(name), func(c rune) bool { return c == '/' }):
		return bad("contains '/'; meters are one directory level")
	case slices.ContainsFunc([]rune(name), func(c rune) bool { return unicode.IsControl(c) || (!unicode.IsPrint(c) && c != ' ') }):
		return bad("contains a control or invisible character; use letters, digits, '-', '_' or '.'")
	case name != trimSpace(name):
		return bad("starts or ends with a space; remove it")
	}
	return nil
}

func trimSpace(s string) string {
	for len(s) > 0 && s[0] == ' ' {
		s = s[1:]
	}
	for len(s) > 0 && s[len(s)-1] == ' ' {
		s = s[:len(s)-1]
	}
	return s
}

// Rewrite hands the whole state, every meter with its calls, to write while
// nothing can change it: the registry and every meter stay locked until
// write returns. It serves to rewrite a database file that was deleted.
func (r *Registry) Rewrite(write func([]Stored) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.meters))
	for n := range r.meters {
		names = append(names, n)
	}
	sort.Strings(names)
	all := make([]Stored, 0, len(names))
	for _, n := range names {
		m := r.meters[n]
		m.mu.Lock()
		defer m.mu.Unlock()
		st := m.st
		st.Calls = slices.Clone(m.st.Calls)
		all = append(all, Stored{Name: n, Spec: m.spec, Attr: m.attr, State: st, Grants: m.grants})
	}
	return write(all)
}
