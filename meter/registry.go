package meter

import (
	"context"
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

// Registry is the set of live meters, as this host serves them, over one
// Decider. It is safe for concurrent use.
type Registry struct {
	dec   Decider
	clock Clock

	mu     sync.RWMutex
	meters map[string]*Meter
	closed bool
	// OnGrant, if set before meters are created, is called with each
	// grant's wait (for metrics).
	onGrant    func(meter string, waited time.Duration)
	onRelease  func(meter string, held time.Duration)
	retryGrace time.Duration

	tickets  atomic.Uint64                // ids of this daemon's opens
	onChange atomic.Pointer[func(string)] // see OnChange
}

// Options configure Open.
type Options struct {
	Clock Clock // default SystemClock
	// OnGrant is called, under the meter's lock, with each grant's wait.
	OnGrant func(meter string, waited time.Duration)
	// OnRelease is called with how long each call this host held lasted,
	// from its grant to its release (not for a revoked call).
	OnRelease func(meter string, held time.Duration)
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
	// calls as long as it needs them. (Local's; a fleet's store has its own.)
	History time.Duration
}

// OpenLocal opens a registry over a Local decider on store (see NewLocal).
func OpenLocal(store LocalStore, opt Options) (*Registry, error) {
	d, err := NewLocal(store, opt.Clock, opt.History)
	if err != nil {
		return nil, err
	}
	return Open(d, opt)
}

// Open loads every meter of the decider and subscribes to its events.
func Open(d Decider, opt Options) (*Registry, error) {
	if opt.Clock == nil {
		opt.Clock = SystemClock{}
	}
	r := &Registry{dec: d, clock: opt.Clock, meters: map[string]*Meter{}, onGrant: opt.OnGrant, onRelease: opt.OnRelease, retryGrace: opt.RetryGrace}
	stored, err := d.Load(context.Background())
	if err != nil {
		return nil, err
	}
	for _, s := range stored {
		m := r.newMeter(s.Name, s.Spec, s.Attr)
		m.version = s.Version
		r.meters[s.Name] = m
	}
	d.Subscribe(registryEvents{r})
	return r, nil
}

func (r *Registry) newMeter(name string, spec Spec, attr Attr) *Meter {
	m := &Meter{name: name, reg: r, spec: spec, attr: attr}
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
	if err := r.dec.CreateMeter(context.Background(), name, spec, attr); errors.Is(err, ErrExist) {
		return nil, fmt.Errorf("%w: %q (made by another host)", ErrExist, name)
	} else if err != nil {
		return nil, fmt.Errorf("%w: create %q: %w", ErrStore, name, err)
	}
	m := r.newMeter(name, spec, attr)
	if s, ok, err := r.dec.LoadMeter(context.Background(), name); err == nil && ok {
		m.spec, m.attr, m.version = s.Spec, s.Attr, s.Version
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
	if err := r.dec.DeleteMeter(context.Background(), name); errors.Is(err, ErrBusy) {
		return fmt.Errorf("%w: %q", ErrBusy, name)
	} else if err != nil {
		return fmt.Errorf("%w: delete %q: %w", ErrStore, name, err)
	}
	m.markRemoved()
	if cancel := m.close(); cancel != nil {
		cancel()
	}
	delete(r.meters, name)
	return nil
}

// Close fails every waiter of every meter with ErrClosed and refuses new
// ones, taking them out of the decider's queue (for at most closeWait).
// Holders may still release. It does not close the decider.
func (r *Registry) Close() {
	r.mu.Lock()
	r.closed = true
	ms := make([]*Meter, 0, len(r.meters))
	for _, m := range r.meters {
		ms = append(ms, m)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, m := range ms {
		if cancel := m.close(); cancel != nil { // its waiters leave the decider's queue
			wg.Go(cancel)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
	}
}

// closeWait bounds how long Close waits for the decider to take this
// host's waiters out of its queue (they would otherwise block it until the
// host's lease lapses).
const closeWait = 2 * time.Second

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
// nothing can change it. It serves to rewrite a database file that was
// deleted; a decider that cannot (a shared store) says so.
func (r *Registry) Rewrite(write func([]Stored) error) error {
	rw, ok := r.dec.(Rewriter)
	if !ok {
		return fmt.Errorf("meter: a %T keeps no state to rewrite", r.dec)
	}
	return rw.Rewrite(write)
}
