package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/rlfs/rlfs/meter"
)

// The steps of a call's life, as meter.Decider names them: each is one
// library function (one round trip, plus the steps of a bounded job
// under way), whose reply tells this host's books (hostState) what
// happened.

func (s *Store) leaseArg() string { return strconv.FormatInt(micros(s.opt.Lease), 10) }

// Enqueue asks the store for a call for r: granted at once, or queued. A
// grant is used only while this host's lease on the meter surely holds
// (fencing); otherwise it is revoked and the store counts as unreachable.
func (s *Store) Enqueue(ctx context.Context, name string, r meter.Request) (meter.Admission, error) {
	h := r.Holder
	if s.opt.ProcessID != nil && h.PID > 0 {
		h.PID = s.pids.of(h.PID, s.opt.ProcessID) // other hosts cannot resolve a thread of this one
	}
	first, asked := s.host.asking(name, r.Ticket, !r.Nonblock)
	var rep admissionReply
	how := ""
	if r.Nonblock {
		how += "n"
	}
	if first {
		how += "f"
	}
	who := strconv.Itoa(h.PID) + "," + u64(uint64(h.UID)) + "," + u64(uint64(h.GID))
	args := []string{s.opt.Host, s.inc, s.leaseArg(), u64(r.Ticket), strconv.FormatInt(r.Cost, 10), how, who}
	if !first {
		args = append(args, strconv.FormatInt(asked, 10)) // (asked for before: since when)
	}
	var riders []outOp
	if s.UnreachableSince().IsZero() { // else the recovery loop delivers them
		riders = s.host.takeRiders(name, maxReleases)
	}
	if len(riders) > 0 && first {
		args = append(args, "")
	}
	sent, err := s.fcallRiding(ctx, "rlfs2_acquire", name, recheckMissing, &rep, riders, args...)
	s.rode(riders, err == nil && rep.rode == int64(len(riders)))
	if err != nil {
		if errors.Is(err, meter.ErrUnavailable) {
			s.host.unanswered(name) // it may have been granted: the renewal looks
		}
		if r.Nonblock || !errors.Is(err, meter.ErrUnavailable) {
			s.host.unqueued(name, r.Ticket)
		}
		return meter.Admission{}, err
	}
	s.host.synced(rep.now, sent)
	s.host.leaseTold(name, sent, rep.now, rep.lease)
	s.host.queueSeen(name, rep.queue)
	switch rep.kind {
	case admGranted:
		h.Host = s.opt.Host
		c := meter.Call{ID: rep.id, GrantedAt: localOf(rep.at, rep.now, s.arrived(sent)), Holder: h, Cost: r.Cost}
		if !s.host.leaseHolds(name) {
			s.host.unqueued(name, r.Ticket)
			_ = s.Revoke(ctx, name, c.ID)
			return meter.Admission{}, s.unavailable(fmt.Errorf("this host's lease on %q may have lapsed", name))
		}
		s.host.own(name, r.Ticket, c, rep.at, r.Cost)
		return meter.Admission{Granted: true, Call: c}, nil
	case admRefused:
		s.host.unqueued(name, r.Ticket)
		switch rep.id {
		case refusedWaiters:
			return meter.Admission{}, meter.ErrTooManyWaiters
		case refusedTooBig:
			return meter.Admission{}, fmt.Errorf("%w: a call of %d units", meter.ErrTooBig, r.Cost)
		}
		return meter.Admission{}, meter.ErrWouldBlock
	case admQueued:
		s.host.queued(name, r.Ticket, rep.now)
		return meter.Admission{Seq: rep.id, Wake: wakeOf(rep.at, rep.now, sent), Head: rep.head == s.opt.Host, Order: rep.ops}, nil
	}
	return meter.Admission{}, fmt.Errorf("redis: rlfs2_acquire %q: unknown reply kind %d", name, rep.kind)
}

// Cancel takes a queued ticket out of the store's queue.
func (s *Store) Cancel(ctx context.Context, name string, seq, ticket uint64) (meter.Admission, error) {
	var rep admissionReply
	sent, err := s.fcall(ctx, "rlfs2_cancel", name, &rep, s.opt.Host, s.inc, s.leaseArg(), u64(seq), u64(ticket))
	if err != nil {
		return meter.Admission{}, err
	}
	s.host.synced(rep.now, sent)
	s.host.leaseTold(name, sent, rep.now, rep.lease)
	s.host.unqueued(name, ticket)
	switch rep.kind {
	case admLeft:
		return meter.Admission{Wake: wakeOf(rep.at, rep.now, sent), Head: rep.head == s.opt.Host, Order: rep.ops}, nil
	case admGranted:
		c := meter.Call{ID: rep.id, GrantedAt: localOf(rep.at, rep.now, s.arrived(sent)), Holder: meter.Holder{Host: s.opt.Host}}
		s.host.own(name, ticket, c, rep.at, 0)
		return meter.Admission{Granted: true, Call: c}, nil
	}
	return meter.Admission{Gone: true}, nil
}

// Dispatch grants what the store's rule admits now.
func (s *Store) Dispatch(ctx context.Context, name string) (meter.Admission, error) {
	var rep stepReply
	sent, err := s.fcall(ctx, "rlfs2_dispatch", name, &rep, s.opt.Host, s.inc, s.leaseArg())
	if err != nil {
		return meter.Admission{}, err
	}
	s.host.synced(rep.now, sent)
	return meter.Admission{Wake: wakeOf(rep.wake, rep.now, sent), Head: rep.head == s.opt.Host, Order: rep.ops}, nil
}

// Revoke forgets call id: its open failed. A call that max_hold ended
// is not taken back (meter.ErrNotExist): it counts as completed, and stays
// this host's until released.
func (s *Store) Revoke(ctx context.Context, name string, id uint64) error {
	engineID := id
	id = s.host.mapID(name, id)
	var rep stepReply
	sent, err := s.fcall(ctx, "rlfs2_revoke", name, &rep, u64(id))
	switch {
	case errors.Is(err, meter.ErrUnavailable):
		s.host.postpone(outOp{meter: name, id: engineID, revoke: true})
		return nil
	case errors.Is(err, errHeld):
		return err
	}
	s.host.ended(name, id, 0, true)
	if err != nil {
		return err
	}
	s.host.synced(rep.now, sent)
	return nil
}

// Settle sets the actual cost of call id.
func (s *Store) Settle(ctx context.Context, name string, id uint64, actual int64) error {
	id = s.host.mapID(name, id)
	var rep stepReply
	_, err := s.fcall(ctx, "rlfs2_settle", name, &rep, u64(id), strconv.FormatInt(actual, 10))
	return err
}

// deliver sends one operation of the outbox, alone (releases.go sends them
// together; this is for those that need more than one step).
func (s *Store) deliver(ctx context.Context, o outOp) error {
	var rep stepReply
	id := u64(s.host.mapID(o.meter, o.id))
	if o.revoke {
		_, err := s.fcallOpt(ctx, "rlfs2_revoke", o.meter, recheckMissing, &rep, id)
		if !errors.Is(err, errHeld) {
			return err
		}
		// max_hold ended it meanwhile: the engine forgot it, so it is
		// released now (it counts as completed at its hold's end).
	}
	_, err := s.fcallOpt(ctx, "rlfs2_release", o.meter, recheckMissing, &rep, id, strconv.FormatInt(o.done, 10))
	return err
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
