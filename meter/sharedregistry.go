package meter

import (
	"sync"
	"time"
)

// closeWait bounds how long Close waits for the store to take this host's
// waiters out of its queue (they would otherwise block it until the host's
// lease lapses).
const closeWait = 2 * time.Second

// openShared loads the meters of a SharedStore and subscribes to its events.
// Calls in progress belong to the store: it ends those of this host's
// earlier daemons itself.
func (r *Registry) openShared(sh SharedStore) (*Registry, error) {
	r.shared = sh
	stored, err := sh.Load()
	if err != nil {
		return nil, err
	}
	for _, s := range stored {
		m := r.newMeter(s.Name, s.Spec, s.Attr)
		m.version = s.Version
		r.meters[s.Name] = m
	}
	sh.Subscribe(sharedEvents{r})
	return r, nil
}

// ticketID numbers the opens of this daemon for a SharedStore.
func (r *Registry) ticketID() uint64 { return r.tickets.Add(1) }

// Host names this daemon in its fleet ("" without a SharedStore).
func (r *Registry) Host() string {
	if r.shared == nil {
		return ""
	}
	return r.shared.Host()
}

// Shared reports whether the meters live in a SharedStore.
func (r *Registry) Shared() bool { return r.shared != nil }

// OnChange registers f, called with the name of each meter that the
// SharedStore says was created, removed or changed (by any host, this one
// too), once the registry applied the change; a later call replaces f. f
// runs on the store's event goroutine and must not block. Without a
// SharedStore it is never called.
func (r *Registry) OnChange(f func(meter string)) { r.onChange.Store(&f) }

// closeShared fails every waiter and takes them out of the store's queue,
// waiting at most closeWait for the store.
func (r *Registry) closeShared(ms []*Meter) {
	var wg sync.WaitGroup
	for _, m := range ms {
		cancel := m.closeShared()
		wg.Add(1)
		go func() { defer wg.Done(); cancel() }()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
	}
}

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
	s, ok, err := r.shared.LoadMeter(name)
	if err != nil {
		return // the store's safety re-check will tell again
	}
	m := r.meters[name]
	switch {
	case !ok && m != nil:
		delete(r.meters, name)
		m.markRemoved()
		m.closeShared()()
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

// sharedEvents routes a SharedStore's events to the registry's meters.
type sharedEvents struct{ r *Registry }

func (e sharedEvents) Granted(meter string, ticket uint64, c Call) {
	if m := e.r.Get(meter); m != nil {
		m.sharedGranted(ticket, c)
		return
	}
	_ = e.r.shared.Revoke(meter, c.ID) // nobody here waits for it
}

func (e sharedEvents) Refused(meter string, ticket uint64, err error) {
	if m := e.r.Get(meter); m != nil {
		m.sharedRefused(ticket, err)
	}
}

func (e sharedEvents) Wake(meter string, at time.Time, head bool, order uint64) {
	if m := e.r.Get(meter); m != nil {
		m.sharedWake(at, head, order)
	}
}

func (e sharedEvents) Changed(meter string) {
	e.r.refresh(meter)
	if f := e.r.onChange.Load(); f != nil {
		(*f)(meter)
	}
}

func (e sharedEvents) Reachable() {
	for _, name := range e.r.Names() {
		if m := e.r.Get(name); m != nil {
			go m.sharedReachable()
		}
	}
}

var _ SharedEvents = sharedEvents{}
