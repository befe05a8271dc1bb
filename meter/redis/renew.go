package redis

import (
	"strconv"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// The renewal loop: every lease/3 this host renews its lease on each meter
// where it has calls or waiters (one rlfs2_renew each, sent together),
// picks up the grants whose messages it missed, checks that the store kept
// its data, and tidies its books. Steps renew a lease only when it is a
// third of the lease old (touch_lease in rlfs.lua): the loop keeps it.

func (s *Store) renewLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(s.opt.Lease / 3)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		if !s.UnreachableSince().IsZero() {
			continue // the recovery loop takes over
		}
		if s.checkEpoch() == epochPutBack {
			s.tell(func(ev meter.Events) { ev.Reachable() })
		}
		s.reconcile(false)
		s.host.tidy(s.host.storeNowEstimate())
		s.host.noteSent()
	}
}

// reconcile renews the lease of every meter where this host has calls or
// waiters, picking up the grants whose messages it missed; after a new
// subscription (full) it also tells the engine to reload every meter's
// definition.
func (s *Store) reconcile(full bool) {
	names := s.host.renewing()
	done := make(chan struct{}, len(names))
	for _, name := range names {
		go func() { s.renewMeter(name); done <- struct{}{} }()
	}
	for range names {
		<-done
	}
	ev := s.eventsOf()
	if !full || ev == nil {
		return
	}
	all, err := s.meterNames(s.base)
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, n := range all {
		seen[n] = true
		ev.Changed(n)
	}
	for _, n := range s.host.missingFrom(seen) {
		ev.Changed(n)
	}
}

// renewMeter renews this host's lease on one meter and delivers the
// grants it holds there that it did not know of.
func (s *Store) renewMeter(name string) {
	since := s.host.since(name)
	var rep renewReply
	sent, err := s.fcall(s.base, "rlfs2_renew", name, &rep, s.opt.Host, s.inc, s.leaseArg(), strconv.FormatInt(since, 10))
	if err != nil {
		return
	}
	s.host.synced(rep.now, sent)
	s.host.leaseTold(name, sent, rep.now, rep.lease)
	for _, g := range rep.grants {
		if !s.host.hasCall(name, g.id) {
			s.granted(name, g.ticket, g.id, g.granted)
		}
	}
	if since != 0 {
		s.host.looked(name, rep.complete, rep.last)
	}
	if rep.gen != 0 && s.host.needsReconcile(name, rep.gen, rep.now < rep.quietEnd) {
		s.reconcileMeter(s.base, name, rep.gen) // the store may have lost some writes (reconcile.go)
	}
	if ev := s.eventsOf(); ev != nil && s.host.waiting(name) {
		ev.Wake(name, wakeOf(rep.wake, rep.now, sent), rep.head == s.opt.Host, rep.ops)
	}
}
