package redis

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/rlfs/rlfs/meter"
)

// Events: the store tells this host about grants, refusals and wake
// instants on its channel, and every host about meters created, changed
// and removed on the event channel (Redis pub/sub). Messages go through a
// mailbox, in order, to the engine's meter.Events.

// Subscribe starts delivering the store's events to ev: this host's grants
// and wake instants (its channel), and the meters created, changed and
// removed on any host. It also starts the renewal loop.
func (s *Store) Subscribe(ev meter.Events) {
	s.mu.Lock()
	s.events = ev
	start := !s.renewOn && !s.closed
	s.renewOn = true
	s.mu.Unlock()
	if !start {
		return
	}
	mb := newMailbox()
	s.wg.Add(3)
	go s.subscribe(mb)
	go s.deliverMail(mb)
	go s.renewLoop()
}

// mailbox hands messages from the connection's goroutine to deliverMail,
// in order, without ever blocking the connection or dropping one.
type mailbox struct {
	mu   sync.Mutex
	msgs []func()
	kick chan struct{}
}

func newMailbox() *mailbox { return &mailbox{kick: make(chan struct{}, 1)} }

func (m *mailbox) put(f func()) {
	m.mu.Lock()
	m.msgs = append(m.msgs, f)
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *mailbox) take() []func() {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.msgs
	m.msgs = nil
	return out
}

func (s *Store) deliverMail(mb *mailbox) {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-mb.kick:
		}
		for _, f := range mb.take() {
			f()
		}
	}
}

// subscribe listens to this host's channel and the event channel until
// Close, subscribing again after a broken connection. Each (re)subscription
// is followed by a reconciliation: what was missed meanwhile is asked for.
func (s *Store) subscribe(mb *mailbox) {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(s.base)
	defer cancel()
	hostCh, evCh := hostChannel(s.opt.Prefix, s.opt.Host), eventChannel(s.opt.Prefix)
	ctx = rueidis.WithOnSubscriptionHook(ctx, func(sub rueidis.PubSubSubscription) {
		if sub.Kind == "subscribe" && sub.Channel == hostCh {
			mb.put(func() { s.reconcile(true) })
		}
	})
	backoff := 50 * time.Millisecond
	for {
		_ = s.c.Receive(ctx, s.c.B().Subscribe().Channel(hostCh, evCh).Build(), func(msg rueidis.PubSubMessage) {
			text := msg.Message
			if msg.Channel == evCh {
				mb.put(func() { s.onChange(text) })
			} else {
				mb.put(func() { s.onHostMessage(text) })
			}
		})
		select {
		case <-s.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// hostMessage is a message on this host's channel:
//
//	g,TICKET,ID,GRANTED,NOW,LEASE,METER  a grant of a queued ticket, with
//	                                     this host's lease expiry
//	r,TICKET,0,0,NOW,METER               a waiter refused: a limits write left
//	                                     no units item that can admit its cost
//	n,AT,NOW,HEADHOST,OPS,METER          when to try the head of the queue
//	q,QN,0,0,NOW,METER                   another host's waiter queued on an
//	                                     empty queue: releases go at once
type hostMessage struct {
	kind                  string
	ticket, id, ops       uint64
	at, now, lease, grant int64
	head, meter           string
}

// parseHostMessage decodes a message; ok is false for one it does not know.
func parseHostMessage(text string) (hostMessage, bool) {
	kind, _, _ := strings.Cut(text, ",")
	n := 6
	if kind == "g" {
		n = 7
	}
	p := strings.SplitN(text, ",", n)
	if len(p) != n {
		return hostMessage{}, false
	}
	num := func(i int) int64 { v, _ := strconv.ParseInt(p[i], 10, 64); return v }
	m := hostMessage{kind: kind, meter: p[n-1]}
	switch kind {
	case "g":
		m.ticket, m.id, m.grant, m.now, m.lease = uint64(num(1)), uint64(num(2)), num(3), num(4), num(5)
	case "r":
		m.ticket, m.now = uint64(num(1)), num(4)
	case "n":
		m.at, m.now, m.head, m.ops = num(1), num(2), p[3], uint64(num(4))
	case "q":
		m.id, m.now = uint64(num(1)), num(4)
	default:
		return hostMessage{}, false
	}
	return m, true
}

func (s *Store) onHostMessage(text string) {
	m, ok := parseHostMessage(text)
	if !ok {
		return
	}
	switch m.kind {
	case "g":
		if m.lease != 0 {
			s.host.leaseToldLocal(m.meter, s.host.toLocal(m.lease))
		}
		s.granted(m.meter, m.ticket, m.id, m.grant)
	case "r":
		s.host.unqueued(m.meter, m.ticket)
		s.tell(func(ev meter.Events) { ev.Refused(m.meter, m.ticket, meter.ErrTooBig) })
	case "q":
		s.host.queueSeen(m.meter, int64(max(m.id, 1))) // releases waiting for an acquire go now
		if s.host.sendable() {
			s.kickSender()
		}
	case "n":
		if !s.host.waiting(m.meter) {
			return
		}
		var wake time.Time
		if m.at != 0 {
			wake = s.host.toLocal(m.at)
		}
		if ev := s.eventsOf(); ev != nil {
			ev.Wake(m.meter, wake, m.head == s.opt.Host, m.ops)
		}
	}
}

// granted delivers a grant to the engine once, while this host's lease on
// the meter holds (fencing); otherwise the call is revoked.
func (s *Store) granted(name string, ticket, id uint64, grantedUs int64) {
	c := meter.Call{ID: id, GrantedAt: s.host.grantedLocal(grantedUs), Holder: meter.Holder{Host: s.opt.Host}}
	if !s.host.leaseHolds(name) {
		s.log.Warn("a grant came after this host's lease could have lapsed; revoking it", "meter", name, "call", id)
		s.host.unqueued(name, ticket)
		_ = s.Revoke(s.base, name, id)
		return
	}
	if !s.host.own(name, ticket, c, grantedUs, 0) {
		return // delivered already
	}
	if ev := s.eventsOf(); ev != nil {
		ev.Granted(name, ticket, c)
	}
}

// onChange handles "c|s|a|d,METER": a meter created, its spec or owner
// changed, or removed, on any host.
func (s *Store) onChange(text string) {
	kind, name, ok := strings.Cut(text, ",")
	if !ok {
		return
	}
	if kind == "d" {
		s.host.forget(name)
	}
	if ev := s.eventsOf(); ev != nil {
		ev.Changed(name)
	}
}

func (s *Store) eventsOf() meter.Events {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events
}

// tell runs f with the engine's events in a goroutine of its own (none
// once the store is closed): a caller may hold the engine's locks.
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
