package redis

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/rlfs/rlfs/meter"
)

// Releases go through the outbox, committed in groups: Release journals
// the completion (with the store's time of the release: it is never
// recorded earlier) in the outbox, then either delivers what the outbox
// holds itself, when no delivery is under way, or waits for the sender,
// which delivers, as soon as the delivery under way is done, everything
// that came meanwhile: the releases of one meter together in one
// rlfs2_release, the meters' in one write (DoMulti). Alone, a close costs
// one round trip as before; a busy host sends one FCALL for many closes.
// What the store cannot take waits in the outbox for the recovery loop
// (outage.go), and Release returns: the engine's Release is done when the
// store took the completion, or when it is kept for a store that does not
// answer.
//
// A release may also ride an acquire of its meter (rlfs2_acquire takes the
// pairs rlfs2_release takes): an acquire sent while the outbox holds
// releases of its meter carries them, and the store ends those calls just
// before it decides. So that a host's close and next open cost one round
// trip, a release waits up to releaseLinger for an acquire to carry it
// before it is sent alone, when nobody is known to wait on the meter (no
// ticket of this host in the store's queue, the store's queue empty at the
// last acquire's reply, and no other host's waiter queued since: the store
// tells every host with a lease on the meter when a waiter comes to an
// empty queue): a waiter it would admit is not kept waiting for somebody's
// next acquire. An open of this host whose reply has not come yet does not
// stop it (it is most often the next open of the process that closed,
// whose OPEN reached the daemon before the RELEASE); whenever anyone is
// found to wait meanwhile (that open queued, a reply's queue, another
// host's waiter), the releases waiting go at once. While a release waits,
// the sender leaves it in the outbox (and what follows it of its meter):
// another release that goes alone does not take it along. A release that
// waited in vain (a process that closes and does not open again soon)
// makes the next lingerBackoff releases of its meter go at once, until an
// open of the meter comes. The completion's instant is the release's
// (done), however late it is delivered.

// maxReleases is how many releases one rlfs2_release takes (rlfs.lua's
// RELEASES).
const maxReleases = 16

// releaseLinger is how long a release waits for an acquire to carry it;
// lingerBackoff how many go at once after one waited in vain. 1 ms: one
// process looping open+close on a daemon makes one FCALL per cycle
// (1.00-1.03; 1.17-1.24 at 250 µs, whose wait its next open often
// misses), and under load (one host, 8 processes) Redis's CPU per cycle
// is the same either way (docs/engine.md). Nobody waits for it: close(2)
// has returned, and a waiter anywhere makes it go at once.
const (
	releaseLinger = time.Millisecond
	lingerBackoff = 16
)

// Release completes call id (see above). It returns nil: what the store
// refuses is logged.
func (s *Store) Release(ctx context.Context, name string, id uint64) error {
	done := make(chan struct{})
	ok, cut := s.lingers(name)
	s.host.postpone(outOp{meter: name, id: id, done: s.host.storeNowEstimate(), settled: done, lingers: ok})
	if ok {
		t := time.NewTimer(s.linger)
		select {
		case <-done:
			t.Stop()
			return nil
		case <-t.C:
			s.host.lingeredInVain(name)
		case <-cut: // someone waits now
			t.Stop()
		case <-ctx.Done():
			t.Stop()
		case <-s.stop:
			t.Stop()
		}
		s.host.lingered(done)
	}
	if !s.UnreachableSince().IsZero() {
		// Kept (journaled) for the recovery loop, which delivers the
		// outbox when the store answers and then wakes the sender for
		// what came after its delivery: a close during an outage does not
		// try the whole outbox again (O(outbox) a close, and a round trip
		// that fails).
		return nil
	}
	if s.lead() {
		_, _ = s.flushOutbox(true)
		s.unlead()
	} else {
		s.kickSender()
	}
	select {
	case <-done:
	case <-ctx.Done():
	case <-s.stop:
	}
	return nil
}

// lingers reports whether a release of name waits for an acquire to carry
// it, and what cuts its wait short (hostState.mayLinger). Not while the
// store is unreachable: acquires carry nothing then, the recovery loop
// delivers the outbox.
func (s *Store) lingers(name string) (bool, <-chan struct{}) {
	if s.linger <= 0 || !s.UnreachableSince().IsZero() {
		return false, nil
	}
	return s.host.mayLinger(name)
}

// rode settles the releases an acquire carried (took: the store ended
// them), or puts them back in the outbox for the sender.
func (s *Store) rode(riders []outOp, took bool) {
	if len(riders) == 0 {
		return
	}
	if !took {
		s.host.returnOutbox(riders)
		s.kickSender()
		return
	}
	for _, o := range riders {
		if o.settled != nil {
			close(o.settled)
		}
	}
	s.host.settled(len(riders))
}

// lead reports whether no delivery is under way, making the caller the one
// that delivers; unlead ends its turn (and wakes the sender for what came
// meanwhile).
func (s *Store) lead() bool {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.sending {
		return false
	}
	s.sending = true
	return true
}

func (s *Store) unlead() {
	s.sendMu.Lock()
	s.sending = false
	s.sendMu.Unlock()
	if s.host.sendable() {
		s.kickSender()
	}
}

// kickSender wakes the sender.
func (s *Store) kickSender() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// sendLoop delivers what the outbox holds whenever it is woken and no
// delivery is under way, while the store answers (the recovery loop takes
// over while it does not).
func (s *Store) sendLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		if s.UnreachableSince().IsZero() && s.lead() {
			_, _ = s.flushOutbox(true)
			s.unlead()
		}
	}
}

// delivery is the FCALLs that deliver some of the outbox's operations, in
// order: consecutive releases of a meter share one (at most maxReleases).
type delivery struct {
	cmds []rueidis.Completed
	ops  [][]outOp // what each command delivers
}

// deliveryOf builds the commands that deliver ops.
func (s *Store) deliveryOf(ops []outOp) delivery {
	var d delivery
	last := map[string]int{} // meter -> its open release command's index
	for _, o := range ops {
		if !o.revoke {
			if i, ok := last[o.meter]; ok && len(d.ops[i]) < maxReleases {
				d.ops[i] = append(d.ops[i], o)
				continue
			}
			last[o.meter] = len(d.ops)
		} else {
			delete(last, o.meter) // a revocation comes between, in order
		}
		d.ops = append(d.ops, []outOp{o})
	}
	for _, group := range d.ops {
		d.cmds = append(d.cmds, s.deliveryCmd(group))
	}
	return d
}

// deliveryCmd is the FCALL of one group: one revocation, or releases.
func (s *Store) deliveryCmd(group []outOp) rueidis.Completed {
	o := group[0]
	fn, args := "rlfs2_release", []string{s.opt.Prefix, s.nowArg()}
	if o.revoke {
		fn, args = "rlfs2_revoke", append(args, u64(s.host.mapID(o.meter, o.id)))
	} else {
		for _, r := range group {
			args = append(args, u64(s.host.mapID(r.meter, r.id)), strconv.FormatInt(r.done, 10))
		}
	}
	return s.c.B().Fcall().Function(fn).Numkeys(1).Key(keysOf(s.opt.Prefix, o.meter)[0]).Arg(args...).Build()
}

// delivered sorts the replies to a delivery (outcomeOf): the operations
// the store took (or refused for good: logged), those to send one by one
// (deliver: MORE, a bounded job under way; a library to load again; a held
// call's revocation, which becomes its release; a meter missing), and
// those that wait in the outbox because the store did not answer (down
// says why).
type delivered struct {
	took       []outOp
	lone, back []outOp
	down       error
}

func (s *Store) outcomeOf(d delivery, resps []rueidis.RedisResult) delivered {
	var out delivered
	for i, r := range resps {
		ops := d.ops[i]
		msg, err := r.ToMessage()
		if err == nil {
			if isMore(msg) {
				out.lone = append(out.lone, ops...)
			} else {
				out.took = append(out.took, ops...)
			}
			continue
		}
		re, _ := rueidis.IsRedisErr(err)
		switch {
		case re != nil && (strings.HasPrefix(re.Error(), "RLFS_") || strings.Contains(re.Error(), "Function not found")):
			// the meter missing (removed, or lost and put back), a held
			// call's revocation, the library to load again: deliver (fcall)
			// knows what to do
			out.lone = append(out.lone, ops...)
		default:
			cerr := s.classify(s.base, "deliver the completions of "+strconv.Quote(ops[0].meter), err)
			if errors.Is(cerr, meter.ErrUnavailable) || s.base.Err() != nil {
				out.back = append(out.back, ops...)
				if out.down == nil {
					out.down = cerr
				}
				continue
			}
			s.log.Warn("the store refused completions; they are dropped", "meter", ops[0].meter, "calls", len(ops), "err", cerr)
			out.took = append(out.took, ops...)
		}
	}
	return out
}

// deliverOps delivers ops (taken from the outbox) in one round trip, then
// one by one those that need it; what the store did not take goes back to
// the outbox. It returns how many it delivered.
func (s *Store) deliverOps(ops []outOp) (int, error) {
	d := s.deliveryOf(ops)
	cctx, cancel := s.callCtx(s.base)
	resps := s.c.DoMulti(cctx, d.cmds...)
	cancel()
	out := s.outcomeOf(d, resps)
	for i, o := range out.lone {
		if err := s.deliver(s.base, o); errors.Is(err, meter.ErrUnavailable) || s.base.Err() != nil {
			out.back = append(out.back, out.lone[i:]...)
			if out.down == nil {
				out.down = err
			}
			break
		}
		out.took = append(out.took, o)
	}
	for _, list := range [][]outOp{out.took, out.back} {
		for i, o := range list {
			if o.settled != nil {
				close(o.settled) // its Release returns: taken, or kept for later
				list[i].settled = nil
			}
		}
	}
	s.host.returnOutbox(out.back)
	s.host.settled(len(out.took))
	return len(out.took), out.down
}
