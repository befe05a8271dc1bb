package redis

import (
	"context"

	"github.com/rlfs/rlfs/meter"
)

// Re-assert: a store that lost its data (restarted without persistence, or
// a replica that had not caught up took over) is noticed by its epoch, a
// key set when the store was new; each host then puts back the meters it
// knows and its calls that still count.

// epochState is what a check of the store's epoch found.
type epochState int

const (
	epochSame    epochState = iota // the store kept its data (as far as this host knows)
	epochPutBack                   // it had lost its data; this host put its part back
	epochUnsure                    // it did not answer, or this host could not put all back yet
)

// reassertChunk is how many call records one rlfs2_reassert takes.
const reassertChunk = 8

// checkEpoch notices a store that lost its data, puts back this host's
// meters and calls, and tells the engine about each meter put back. After
// epochPutBack the caller has the engine present its waiters again
// (Reachable): the store lost them too. One check runs at a time. The
// engine is told from another goroutine: a caller may hold the engine's
// locks (a registry reloading a meter it found missing).
func (s *Store) checkEpoch() epochState {
	s.epochMu.Lock()
	defer s.epochMu.Unlock()
	res, err := s.do(s.base, "read the epoch", s.c.B().Get().Key(epochKey(s.opt.Prefix)).Build())
	if err != nil {
		return epochUnsure
	}
	if e, err := res.ToString(); err == nil && s.host.epochIs(e) {
		return epochSame
	}
	names, ok := s.reassert(s.base)
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

// lostData is checkEpoch for a caller that found a meter it knows missing
// from the store, having read putBacks (before) before it looked.
// epochPutBack says that the store lost its data and this host put it back
// since then (here or in another goroutine): the caller may look again; the
// engine presents its waiters again. epochUnsure says that the meter may be
// lost rather than removed.
func (s *Store) lostData(ctx context.Context, before uint64) epochState {
	st := s.checkEpoch()
	if st == epochPutBack {
		s.tell(func(ev meter.Events) { ev.Reachable() })
	}
	if s.host.putBacks() != before {
		return epochPutBack
	}
	return st
}

// reassert puts back, after the store lost its data, every meter this host
// knows and this host's calls that still count: its calls in progress and
// those that completed within their meter's longest window, reassertChunk
// records a step. Each host does the same for its own, so the limits hold
// for the calls of every live host. A call whose id was taken meanwhile
// gets a new one, which this host maps from then on.
//
// The first host to put a meter back makes it quiet for its lease: nothing
// is granted until every live host had the time to put its calls back (a
// host that did not within a lease is as good as dead, and its calls would
// have lapsed anyway). It returns the meters put back, and whether all was
// put back: else this host keeps the old epoch and tries again at its next
// check.
func (s *Store) reassert(ctx context.Context) ([]string, bool) {
	e, err := s.ensureEpoch(ctx)
	if err != nil {
		return nil, false
	}
	var names []string
	var failed error
	for _, d := range s.host.definitions() {
		args := append([]string{d.Name}, specFields(d.Spec, s.opt.History)...)
		args = append(append(args, attrFields(d.Attr)...), "quiet_for", s.leaseArg(), "lh", s.leaseArg())
		var created intReply
		if _, err := s.fcallOpt(ctx, "rlfs2_create", d.Name, 0, &created, args...); err != nil {
			failed = err
			continue
		}
		if err := s.addName(ctx, d.Name); err != nil {
			failed = err
			continue
		}
		names = append(names, d.Name)
	}
	n := 0
	for name, recs := range s.host.callRecords() {
		for len(recs) > 0 {
			chunk := recs[:min(len(recs), reassertChunk)]
			recs = recs[len(chunk):]
			var rep reassertReply
			args := append([]string{s.opt.Host, s.inc, s.leaseArg()}, chunk...)
			if _, err := s.fcallOpt(ctx, "rlfs2_reassert", name, 0, &rep, args...); err != nil {
				failed = err
				break
			}
			s.host.remapped(name, rep.ids)
			n += len(chunk)
		}
	}
	if failed != nil {
		// The epoch stays the old one here: the next check puts back
		// again what is still missing.
		s.log.Warn("the store lost its data (its epoch changed); this host could not put all of it back yet and tries again",
			"store", redacted(s.opt.URL), "host", s.opt.Host, "err", failed)
		return names, false
	}
	s.host.reasserted(e)
	s.log.Warn("the store lost its data (its epoch changed); this host put back the meters it knows and its calls that still count; "+
		"nothing is granted on them for one lease",
		"store", redacted(s.opt.URL), "host", s.opt.Host, "meters", len(names), "calls", n, "lease", s.opt.Lease)
	return names, true
}
