package redis

import (
	"cmp"
	"context"
	"slices"
	"strconv"

	"github.com/rlfs/rlfs/meter"
)

// Reconcile: a store that lost some of its writes (a replica that had not
// caught up took over, a planned failover while the old master still took
// writes, a restart from an AOF written every second) is noticed by the
// library, not by the epoch (the survivor has it): the first step on a
// meter served before by another server unsettles it (rlfs.lua's
// unsettle): its generation moves, and nothing is granted on it for a
// lease (its quiet time; after a restart from an AOF, only until every host
// with a lease on it reconciled: rlfs2_settled). Each host's renewal of the
// meter sees the new generation, and the host reconciles the meter while
// the quiet time lasts: it compares what the store shows of its own (rlfs2_mine) with
// what it knows, and puts right what differs, in bounded steps:
//
//   - its calls the store lacks are put back (rlfs2_reassert, with their
//     completion if they ended), and the id counter moves past them: the
//     calls granted on the lost writes are those of an id at least the
//     counter the store had when it was unsettled (rcid), since what a
//     replica or an AOF keeps is a prefix of what was written;
//   - its calls the store shows in progress that it ended (a lost release)
//     are released at the completion it journaled; those it does not know
//     (granted to a ticket it no longer waits for) at the reconcile;
//   - its waiters the store shows that it no longer has (granted, or
//     cancelled, on the lost writes) leave the queue (rlfs2_forget); if it
//     has waiters the store lacks, the engine asks again for every one
//     (Reachable: those the store has keep their places).

// books is what this host knows of one meter: its calls by id (the
// store's) and the tickets it waits for.
type books struct {
	calls   map[uint64]ownCall
	waiters map[uint64]bool
}

// books copies this host's part of meter name.
func (h *hostState) books(name string) books {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := books{calls: map[uint64]ownCall{}, waiters: map[uint64]bool{}}
	if p := h.meters[name]; p != nil {
		for id, c := range p.calls {
			b.calls[id] = c
		}
		for t := range p.waiters {
			b.waiters[t] = true
		}
	}
	return b
}

// needsReconcile reports whether this host must reconcile meter name, of
// generation gen: it did not yet, and the meter's quiet time lasts (after
// it, a generation is only taken note of: this host's calls since are the
// store's own). It marks the reconcile under way.
func (h *hostState) needsReconcile(name string, gen int64, quiet bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.meters[name]
	if p == nil || p.gen == gen || p.reconciling {
		return false
	}
	if !quiet {
		p.gen = gen
		return false
	}
	p.reconciling = true
	return true
}

// reconciled ends a reconcile of meter name; ok: of generation gen.
func (h *hostState) reconciled(name string, gen int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.meters[name]; p != nil {
		p.reconciling = false
		if ok {
			p.gen = gen
		}
	}
}

// release is a completion to deliver: call id ended at done (µs; 0: now).
type release struct {
	id   uint64
	done int64
}

// reconcilePlan is what a host puts right on one meter.
type reconcilePlan struct {
	forget  []storeWaiter // its waiters the store shows, that it no longer has
	release []release     // its calls the store shows in progress, that it ended or does not know
	pickup  []storeCall   // grants to tickets it waits for, whose message it missed
	putBack []uint64      // its calls the store lacks
	ask     bool          // it has waiters the store lacks
}

// planReconcile compares what the store shows of this host's calls and
// waiters on a meter unsettled when its id counter was rcid with what this
// host knows (b, read after them: a ticket queued meanwhile is in both).
func planReconcile(b books, calls []storeCall, queued []storeWaiter, rcid uint64) reconcilePlan {
	var p reconcilePlan
	shown, tickets := map[uint64]bool{}, map[uint64]bool{}
	for _, c := range calls {
		own, ok := b.calls[c.id]
		tickets[c.ticket] = true
		switch {
		case ok && own.ticket == c.ticket:
			shown[c.id] = true
			if own.done != 0 {
				p.release = append(p.release, release{c.id, own.done})
			}
		case b.waiters[c.ticket]:
			if !ok {
				p.pickup = append(p.pickup, c)
			}
		default:
			p.release = append(p.release, release{c.id, 0})
		}
	}
	for id := range b.calls {
		if !shown[id] && rcid != 0 && id >= rcid {
			p.putBack = append(p.putBack, id)
		}
	}
	slices.Sort(p.putBack)
	for _, w := range queued {
		tickets[w.ticket] = true
		if !b.waiters[w.ticket] {
			p.forget = append(p.forget, w)
		}
	}
	for t := range b.waiters {
		p.ask = p.ask || !tickets[t]
	}
	slices.SortFunc(p.release, func(a, b release) int { return cmp.Compare(a.id, b.id) })
	return p
}

// reconcileMeter reconciles meter name, of generation gen (see above).
func (s *Store) reconcileMeter(ctx context.Context, name string, gen int64) {
	p, err := s.reconcileSteps(ctx, name)
	if err == nil {
		var rep stepReply
		_, err = s.fcall(ctx, "rlfs2_settled", name, &rep, s.opt.Host, strconv.FormatInt(gen, 10))
	}
	s.host.reconciled(name, gen, err == nil)
	if err != nil {
		s.log.Warn("the store may have lost its last writes on this meter (a failover, or a restart); this host could not reconcile it yet and tries again at its next renewal",
			"store", redacted(s.opt.URL), "host", s.opt.Host, "meter", name, "err", err)
		return
	}
	if len(p.forget)+len(p.release)+len(p.pickup)+len(p.putBack) > 0 || p.ask {
		s.log.Warn("the store had lost its last writes on this meter (a failover, or a restart); this host put back what it knows: "+
			"nothing is granted on it until its quiet time ends",
			"store", redacted(s.opt.URL), "host", s.opt.Host, "meter", name, "calls_put_back", len(p.putBack),
			"releases_put_back", len(p.release), "waiters_removed", len(p.forget), "grants_picked_up", len(p.pickup), "asks_again", p.ask)
	}
}

// reconcileSteps reads what the store shows, plans, and puts it right.
func (s *Store) reconcileSteps(ctx context.Context, name string) (reconcilePlan, error) {
	calls, rcid, err := s.storeCalls(ctx, name)
	if err != nil {
		return reconcilePlan{}, err
	}
	queued, err := s.storeWaiters(ctx, name)
	if err != nil {
		return reconcilePlan{}, err
	}
	p := planReconcile(s.host.books(name), calls, queued, uint64(rcid))
	if err := s.forgetWaiters(ctx, name, p.forget); err != nil {
		return p, err
	}
	if err := s.releaseCalls(ctx, name, p.release); err != nil {
		return p, err
	}
	for _, c := range p.pickup {
		s.granted(name, c.ticket, c.id, c.granted)
	}
	if err := s.putBack(ctx, name, p.putBack); err != nil {
		return p, err
	}
	if p.ask {
		s.tell(func(ev meter.Events) { ev.Reachable() })
	}
	return p, nil
}

// storeCalls lists this host's calls in progress on meter name, as the
// store shows them, and the id counter it had when it was unsettled.
func (s *Store) storeCalls(ctx context.Context, name string) ([]storeCall, int64, error) {
	var out []storeCall
	seen := map[uint64]bool{}
	from := "0"
	for {
		var rep mineReply
		if _, err := s.fcall(ctx, "rlfs2_mine", name, &rep, s.opt.Host, s.inc, "c", from); err != nil {
			return nil, 0, err
		}
		for _, c := range rep.calls {
			if !seen[c.id] {
				seen[c.id] = true
				out = append(out, c)
			}
		}
		if rep.complete {
			return out, rep.rcid, nil
		}
		// grants of one instant may span pages: read on from it, unless a
		// whole page had it
		next := strconv.FormatInt(rep.last, 10)
		if next == from {
			next = "(" + next
		}
		from = next
	}
}

// storeWaiters lists this host's waiters on meter name, as the store
// shows them.
func (s *Store) storeWaiters(ctx context.Context, name string) ([]storeWaiter, error) {
	var out []storeWaiter
	from := "0"
	for {
		rep := mineReply{waiters: true}
		if _, err := s.fcall(ctx, "rlfs2_mine", name, &rep, s.opt.Host, s.inc, "w", from); err != nil {
			return nil, err
		}
		out = append(out, rep.queued...)
		if rep.complete {
			return out, nil
		}
		from = "(" + strconv.FormatInt(rep.last, 10)
	}
}

// forgetChunk is how many waiters one rlfs2_forget takes (rlfs.lua's LIST).
const forgetChunk = 96

// forgetWaiters takes this host's waiters ws out of the store's queue.
func (s *Store) forgetWaiters(ctx context.Context, name string, ws []storeWaiter) error {
	for len(ws) > 0 {
		chunk := ws[:min(len(ws), forgetChunk)]
		ws = ws[len(chunk):]
		args := []string{s.opt.Host, s.inc}
		for _, w := range chunk {
			args = append(args, u64(w.seq), u64(w.ticket))
		}
		var rep stepReply
		if _, err := s.fcall(ctx, "rlfs2_forget", name, &rep, args...); err != nil {
			return err
		}
	}
	return nil
}

// releaseCalls completes calls rs in the store (rlfs2_release, which
// skips a call no longer there).
func (s *Store) releaseCalls(ctx context.Context, name string, rs []release) error {
	for len(rs) > 0 {
		chunk := rs[:min(len(rs), maxReleases)]
		rs = rs[len(chunk):]
		var args []string
		for _, r := range chunk {
			args = append(args, u64(r.id), strconv.FormatInt(r.done, 10))
		}
		var rep stepReply
		if _, err := s.fcall(ctx, "rlfs2_release", name, &rep, args...); err != nil {
			return err
		}
	}
	return nil
}

// putBack puts this host's calls ids back into the store, reassertChunk a
// step; then releases those of them that this host ended meanwhile (their
// release may have reached the store before they were back).
func (s *Store) putBack(ctx context.Context, name string, ids []uint64) error {
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), reassertChunk)]
		ids = ids[len(chunk):]
		b := s.host.books(name)
		args := []string{s.opt.Host, s.inc, s.leaseArg()}
		open := map[uint64]bool{}
		for _, id := range chunk {
			if c, ok := b.calls[id]; ok {
				args = append(args, reassertRecord(id, c))
				open[id] = c.done == 0
			}
		}
		if len(args) == 3 {
			continue
		}
		var rep reassertReply
		if _, err := s.fcallOpt(ctx, "rlfs2_reassert", name, 0, &rep, args...); err != nil {
			return err
		}
		s.host.remapped(name, rep.ids)
		after := s.host.books(name)
		var late []release
		for _, on := range rep.ids {
			if !open[on[0]] {
				continue
			}
			if c, ok := after.calls[on[1]]; !ok {
				late = append(late, release{on[1], 0})
			} else if c.done != 0 {
				late = append(late, release{on[1], c.done})
			}
		}
		if err := s.releaseCalls(ctx, name, late); err != nil {
			return err
		}
	}
	return nil
}
