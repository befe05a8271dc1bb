package meter

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rlfs/rlfs/meter/rule"
)

// Local is the Decider of one host: it decides in-process, by the rule as
// a Ledger keeps it, and persists every grant, completion, settlement,
// revocation and retirement through a LocalStore (meter/sqlite) before the
// step returns. Each meter has its own lock; events go to the host after it
// is released. Safe for concurrent use; create it with NewLocal.
type Local struct {
	store   LocalStore
	clock   Clock
	history time.Duration
	syncer  GroupSyncer // the store's, if it makes grants durable in groups

	mu     sync.RWMutex
	meters map[string]*localMeter
	events atomic.Pointer[eventsBox]
}

type eventsBox struct{ ev Events }

// localMeter is one meter of a Local.
type localMeter struct {
	mu      sync.Mutex
	name    string
	attr    Attr
	version uint64
	led     Ledger // by value: one allocation per meter, not two
	grants  uint64
	queue   *rule.Ranked[localWaiter] // by seq; nil until the first waiter
	seq     uint64
	ops     uint64
	expired uint64 // holds max_hold ended since the decider started
	pause   *Pause // nil: never paused since the decider started
}

// spec is the meter's spec in force (its ledger keeps it).
func (lm *localMeter) spec() Spec { return lm.led.Spec() }

// paused is the meter's pause (zero: none).
func (lm *localMeter) paused() Pause {
	if lm.pause == nil {
		return Pause{}
	}
	return *lm.pause
}

// setPause sets the meter's pause (zero: none).
func (lm *localMeter) setPause(p Pause) {
	if p == (Pause{}) {
		lm.pause = nil
	} else {
		lm.pause = &p
	}
}

// localWaiter is one queued open.
type localWaiter struct {
	seq, ticket uint64
	holder      Holder
	since       time.Time
	cost        int64
}

// localEvent is an event for the host, delivered once the meter's lock is
// released.
type localEvent struct {
	ticket uint64
	call   Call
	err    error // Refused
	wake   bool  // a Wake: at, order
	at     time.Time
	order  uint64
}

var (
	_ Decider     = (*Local)(nil)
	_ Rewriter    = (*Local)(nil)
	_ GroupSyncer = (*Local)(nil)
)

// NewLocal loads every meter of store. Stored times that lie in the future
// (the clock was set back) are clamped to now, so no wait is longer than
// its PER; calls that were in progress when the last daemon died count as
// completed now (and are stored so). clock defaults to SystemClock,
// history to DefaultHistory (see Options.History).
func NewLocal(store LocalStore, clock Clock, history time.Duration) (*Local, error) {
	if clock == nil {
		clock = SystemClock{}
	}
	if history <= 0 {
		history = DefaultHistory
	}
	l := &Local{store: store, clock: clock, history: history, meters: map[string]*localMeter{}}
	l.syncer, _ = store.(GroupSyncer)
	stored, err := store.Load()
	if err != nil {
		return nil, err
	}
	now := clock.Now()
	for _, s := range stored {
		led, ended := RestoreLedger(s.Spec, s.State, now, history)
		for _, c := range ended {
			if err := store.Complete(s.Name, c); err != nil {
				return nil, fmt.Errorf("meter: complete %q's calls in progress at the last stop: %w", s.Name, err)
			}
		}
		lm := &localMeter{name: s.Name, attr: s.Attr, version: 1, led: *led, grants: s.Grants}
		if p := s.Pause; !p.Until.IsZero() {
			p.Until = now.Add(min(p.Until.Sub(now), MaxPauseOf(s.Spec))) // on now's clock, within the cap (the clock was set back)
			lm.setPause(p)
		}
		l.meters[s.Name] = lm
	}
	return l, nil
}

// Host is "": a Local serves one host.
func (l *Local) Host() string { return "" }

// Subscribe starts delivering events to ev.
func (l *Local) Subscribe(ev Events) { l.events.Store(&eventsBox{ev}) }

// Close closes the store.
func (l *Local) Close() error { return l.store.Close() }

// WaitDurable waits until the grants made so far are durable (the store's
// group commit), or returns at once.
func (l *Local) WaitDurable() error {
	if l.syncer == nil {
		return nil
	}
	return l.syncer.WaitDurable()
}

func (l *Local) meter(name string) (*localMeter, error) {
	l.mu.RLock()
	lm := l.meters[name]
	l.mu.RUnlock()
	if lm == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotExist, name)
	}
	return lm, nil
}

// lock finds meter name and locks it, at now, brought up to date.
func (l *Local) lock(name string) (*localMeter, time.Time, error) {
	lm, err := l.meter(name)
	if err != nil {
		return nil, time.Time{}, err
	}
	lm.mu.Lock()
	now := l.clock.Now()
	l.advance(lm, now)
	return lm, now, nil
}

// advance brings lm's ledger to now and stores the holds max_hold ended.
func (l *Local) advance(lm *localMeter, now time.Time) {
	for _, c := range lm.led.Advance(now) {
		lm.expired++
		_ = l.store.Complete(lm.name, c) // a failure here is the next write's too
	}
}

// deliver hands evs to the host, after the meter's lock is released.
func (l *Local) deliver(name string, evs []localEvent) {
	b := l.events.Load()
	if b == nil {
		return
	}
	for _, e := range evs {
		switch {
		case e.wake:
			b.ev.Wake(name, e.at, true, e.order)
		case e.err != nil:
			b.ev.Refused(name, e.ticket, e.err)
		default:
			b.ev.Granted(name, e.ticket, e.call)
		}
	}
}

// Load returns every meter's definition.
func (l *Local) Load(ctx context.Context) ([]Stored, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	names := slices.Sorted(maps.Keys(l.meters)) // sorting the names moves less than sorting Stored
	out := make([]Stored, 0, len(names))
	for _, name := range names {
		lm := l.meters[name]
		lm.mu.Lock()
		out = append(out, lm.stored())
		lm.mu.Unlock()
	}
	return out, nil
}

func (lm *localMeter) stored() Stored {
	return Stored{Name: lm.name, Spec: lm.spec(), Attr: lm.attr, Grants: lm.grants, Version: lm.version}
}

// LoadMeter returns one meter's definition.
func (l *Local) LoadMeter(ctx context.Context, name string) (Stored, bool, error) {
	lm, err := l.meter(name)
	if err != nil {
		return Stored{}, false, nil
	}
	lm.mu.Lock()
	defer lm.mu.Unlock()
	return lm.stored(), true, nil
}

// CreateMeter stores and adds a new meter.
func (l *Local) CreateMeter(ctx context.Context, name string, spec Spec, attr Attr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.meters[name]; ok {
		return fmt.Errorf("%w: %q", ErrExist, name)
	}
	if err := l.store.CreateMeter(name, spec, attr); err != nil {
		return err
	}
	l.meters[name] = &localMeter{name: name, attr: attr, version: 1, led: *NewLedger(spec, l.history)}
	return nil
}

// SetSpec stores and applies a new spec (see Decider.SetSpec).
func (l *Local) SetSpec(ctx context.Context, name string, spec Spec) error {
	lm, now, err := l.lock(name)
	if err != nil {
		return err
	}
	if err := l.store.SetSpec(name, spec); err != nil {
		lm.mu.Unlock()
		return err
	}
	lm.led.SetSpec(spec, now)
	lm.version++
	l.advance(lm, now) // the holds the new max_hold ended
	evs := l.dispatch(lm, now, true)
	lm.mu.Unlock()
	l.deliver(name, evs)
	return nil
}

// SetAttr stores and applies a new owner and mode.
func (l *Local) SetAttr(ctx context.Context, name string, attr Attr) error {
	lm, err := l.meter(name)
	if err != nil {
		return err
	}
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if err := l.store.SetAttr(name, attr); err != nil {
		return err
	}
	lm.attr = attr
	lm.version++
	return nil
}

// DeleteMeter removes an idle meter; ErrBusy while it has holders or
// waiters.
func (l *Local) DeleteMeter(ctx context.Context, name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	lm := l.meters[name]
	if lm == nil {
		return fmt.Errorf("%w: %q", ErrNotExist, name)
	}
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.led.Advance(l.clock.Now())
	if open, held := lm.led.Counts(); open+held+lm.queue.Len() > 0 {
		return fmt.Errorf("%w: %q", ErrBusy, name)
	}
	if err := l.store.DeleteMeter(name); err != nil {
		return err
	}
	delete(l.meters, name)
	return nil
}
