package meter

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ticketID numbers the opens of this daemon.
func (r *Registry) ticketID() uint64 { return r.tickets.Add(1) }

// Host names this daemon among the hosts sharing its decider ("" for a
// decider of one host).
func (r *Registry) Host() string { return r.dec.Host() }

// Shared reports whether the decider is shared by several hosts.
func (r *Registry) Shared() bool { return r.dec.Host() != "" }

// OnChange registers f, called with the name of each meter that the
// decider says was created, removed or changed (by any host, this one
// too), once the registry applied the change; a later call replaces f. f
// runs on the decider's event goroutine and must not block.
func (r *Registry) OnChange(f func(meter string)) { r.onChange.Store(&f) }

// unreachableSince is since when the decider cannot be reached (zero: it
// answers, or it is never unreachable).
func (r *Registry) unreachableSince() time.Time {
	if rc, ok := r.dec.(Reachability); ok {
		return rc.UnreachableSince()
	}
	return time.Time{}
}

func (r *Registry) unreachable() bool { return !r.unreachableSince().IsZero() }

// refresh reloads one meter's definition after a change here or on another
// host. It holds the registry's lock while it reads, so that no Create or
// Remove of this host interleaves, and applies a definition only if it is
// not older than the one in force (Stored.Version).
func (r *Registry) refresh(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	s, ok, err := r.dec.LoadMeter(context.Background(), name)
	if err != nil {
		return // the decider's safety re-check will tell again
	}
	m := r.meters[name]
	switch {
	case !ok && m != nil:
		delete(r.meters, name)
		m.markRemoved()
		if cancel := m.close(); cancel != nil {
			cancel()
		}
	case ok && m == nil:
		m = r.newMeter(name, s.Spec, s.Attr)
		m.version = s.Version
		r.meters[name] = m
	case ok:
		m.mu.Lock()
		if s.Version >= m.version {
			m.spec, m.attr, m.version = s.Spec, s.Attr, s.Version
		}
		m.mu.Unlock()
	}
}

// registryEvents routes a decider's events to the registry's meters.
type registryEvents struct{ r *Registry }

var _ Events = registryEvents{}

func (e registryEvents) Granted(meter string, ticket uint64, c Call) {
	if m := e.r.Get(meter); m != nil {
		m.onGranted(ticket, c)
		return
	}
	_ = e.r.dec.Revoke(context.Background(), meter, c.ID) // nobody here waits for it
}

func (e registryEvents) Refused(meter string, ticket uint64, err error) {
	if m := e.r.Get(meter); m != nil {
		m.onRefused(ticket, err)
	}
}

func (e registryEvents) Wake(meter string, at time.Time, head bool, order uint64) {
	if m := e.r.Get(meter); m != nil {
		m.onWake(at, head, order)
	}
}

func (e registryEvents) Changed(meter string) {
	e.r.refresh(meter)
	if f := e.r.onChange.Load(); f != nil {
		(*f)(meter)
	}
}

func (e registryEvents) Reachable() {
	for _, name := range e.r.Names() {
		if m := e.r.Get(name); m != nil {
			go m.onReachable()
		}
	}
}

// SetSpec stores and applies a new spec at once: waiters are judged again
// under it, and the calls already made count (see Decider.SetSpec).
func (m *Meter) SetSpec(spec Spec) error {
	return m.set(func() error { return m.reg.dec.SetSpec(m.ctx(), m.name, spec) }, "limits")
}

// SetAttr stores and applies a new owner and mode.
func (m *Meter) SetAttr(a Attr) error {
	return m.set(func() error { return m.reg.dec.SetAttr(m.ctx(), m.name, a) }, "owner and mode")
}

// set stores a change through the decider, then reloads the meter's
// definition from it (with its version, so that no older one replaces it).
func (m *Meter) set(store func() error, what string) error {
	if err := store(); err != nil {
		return fmt.Errorf("%w: store %s of %q: %w", ErrStore, what, m.name, err)
	}
	m.reg.refresh(m.name)
	return nil
}

func isNotExist(err error) bool { return errors.Is(err, ErrNotExist) }
