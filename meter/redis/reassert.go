package redis

import (
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	"github.com/rlfs/rlfs/meter"
)

// epochState is what a check of the store's epoch found.
type epochState int

const (
	epochSame    epochState = iota // the store kept its data (as far as this host knows)
	epochPutBack                   // it had lost its data; this host put its part back
	epochUnsure                    // it did not answer, or this host could not put all back yet
)

// checkEpoch notices a store that lost its data (restarted without
// persistence, or a replica that had not caught up took over), puts back
// this host's meters and calls, and tells the engine about each meter put
// back. After epochPutBack the caller has the engine present its waiters
// again (Reachable): the store lost them too. One check runs at a time.
// The engine is told from another goroutine: a caller may hold the
// engine's locks (a registry reloading a meter it found missing).
func (s *Store) checkEpoch() epochState {
	s.epochMu.Lock()
	defer s.epochMu.Unlock()
	ctx, cancel := s.ctx()
	e, err := s.c.Do(ctx, s.c.B().Get().Key(epochKey(s.opt.Prefix)).Build()).ToString()
	cancel()
	s.mu.Lock()
	same := err == nil && e == s.epoch
	s.mu.Unlock()
	switch {
	case same:
		return epochSame
	case err != nil && !isNil(err):
		return epochUnsure
	}
	names, ok := s.reassert()
	s.tell(func(ev meter.Events) {
		for _, name := range names {
			ev.Changed(name)
		}
	})
	if !ok {
		return epochUnsure
	}
	return epochPutBack
}

// putBacks counts the times this host put back what the store lost; a
// caller reads it before it looks for a meter, for lostData.
func (s *Store) putBacks() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reasserts
}

// lostData is checkEpoch for a caller that found a meter it knows missing
// from the store, having read putBacks before it looked. epochPutBack says
// that the store lost its data and this host put it back since then (here
// or in another goroutine): the caller may look again; the engine presents
// its waiters again. epochUnsure says that the meter may be lost rather
// than removed.
func (s *Store) lostData(before uint64) epochState {
	st := s.checkEpoch()
	if st == epochPutBack {
		s.tell(func(ev meter.Events) { ev.Reachable() })
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reasserts != before {
		return epochPutBack
	}
	return st
}

// tell runs f with the engine's events in a goroutine of its own (none
// once the store is closed).
func (s *Store) tell(f func(meter.Events)) {
	s.mu.Lock()
	ev := s.events
	if ev == nil || s.closed {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		f(ev)
	}()
}

// reassert puts back, after the store lost its data, every meter this host
// knows and this host's calls that still count: its calls in progress and
// those that completed within their meter's longest window. Each host
// does the same for its own, so the limits hold for the calls of every
// live host. A call whose id was taken meanwhile gets a new one, which
// this host maps from then on.
//
// The first host to put a meter back makes it quiet for its lease: nothing
// is granted until every live host had the time to put its calls back (a
// host that did not within a lease is as good as dead, and its calls would
// have lapsed anyway). It returns the meters put back, and whether all
// was put back: else this host keeps the old epoch and tries again at its
// next check.
func (s *Store) reassert() ([]string, bool) {
	e, err := s.ensureEpoch()
	if err != nil {
		return nil, false
	}
	s.mu.Lock()
	defs := make([]meter.Stored, 0, len(s.defs))
	for _, d := range s.defs {
		defs = append(defs, d)
	}
	calls := s.callRecords()
	s.mu.Unlock()
	var names []string
	var failed error
	for _, d := range defs {
		args := append([]string{d.Name}, specFields(d.Spec, s.opt.History)...)
		args = append(append(args, attrFields(d.Attr)...), "quiet_for", s.leaseArg())
		if _, _, err := s.fcallScalar("rlfs1_create", d.Name, args...); err != nil {
			failed = err
			continue
		}
		if err := s.addName(d.Name); err != nil {
			failed = err
			continue
		}
		names = append(names, d.Name)
	}
	n := 0
	for name, recs := range calls {
		res, _, err := s.fcallOf("rlfs1_reassert", name, false, append([]string{s.opt.Host, s.inc, s.leaseArg()}, recs...)...)
		if err != nil {
			failed = err
			continue
		}
		s.remapFrom(name, res)
		n += len(recs)
	}
	if failed != nil {
		// The epoch stays the old one here: the next check puts back
		// again what is still missing.
		s.log.Warn("the store lost its data (its epoch changed); this host could not put all of it back yet and tries again",
			"store", redacted(s.opt.URL), "host", s.opt.Host, "err", failed)
		return names, false
	}
	s.mu.Lock()
	s.epoch = e
	s.journalLocked(jrec{K: "epoch", E: e})
	s.reasserts++
	s.mu.Unlock()
	s.log.Warn("the store lost its data (its epoch changed); this host put back the meters it knows and its calls that still count; "+
		"nothing is granted on them for one lease",
		"store", redacted(s.opt.URL), "host", s.opt.Host, "meters", len(names), "calls", n, "lease", s.opt.Lease)
	return names, true
}

// callRecords lists, by meter, this host's calls that still count as
// rlfs1_reassert takes them. The caller holds s.mu.
func (s *Store) callRecords() map[string][]string {
	calls := map[string][]string{}
	for name, l := range s.mine {
		for id, c := range l.calls {
			calls[name] = append(calls[name], strings.Join([]string{u64(id), strconv.FormatInt(c.granted, 10),
				strconv.FormatInt(c.done, 10), "1", "-1", u64(c.ticket), strconv.Itoa(c.holder.PID),
				u64(uint64(c.holder.UID)), u64(uint64(c.holder.GID))}, ","))
		}
	}
	return calls
}

// remapFrom reads the {wake, now, head, ops, old1, new1, ...} reply of
// rlfs1_reassert into this host's id map.
func (s *Store) remapFrom(name string, res []rueidis.RedisMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.mine[name]
	for i := 4; i+1 < len(res); i += 2 {
		old, nu := uint64(intAt(res, i)), uint64(intAt(res, i+1))
		if old == nu || l == nil {
			continue
		}
		if s.remap == nil {
			s.remap = map[string]map[uint64]uint64{}
		}
		if s.remap[name] == nil {
			s.remap[name] = map[uint64]uint64{}
		}
		s.remap[name][old] = nu
		if c, ok := l.calls[old]; ok {
			delete(l.calls, old)
			l.calls[nu] = c
		}
	}
}

// mapID is the store's id of the call the engine knows as id.
func (s *Store) mapID(name string, id uint64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if nu, ok := s.remap[name][id]; ok {
		return nu
	}
	return id
}

func isNil(err error) bool { return rueidis.IsRedisNil(err) }
