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

// Subscribe starts delivering the store's events to h: this host's grants
// and wake instants (its channel), and the meters created, changed and
// removed on any host. It also starts renewing this host's leases.
func (s *Store) v1Subscribe(h meter.Events) {
	s.mu.Lock()
	s.events = h
	s.mu.Unlock()
	mb := newMailbox()
	s.wg.Add(3)
	go s.subscribe(mb)
	go s.deliver(mb)
	go s.renewLoop()
}

// mailbox hands messages from the connection's goroutine to deliver, in
// order, without ever blocking the connection or dropping one.
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

func (s *Store) deliver(mb *mailbox) {
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
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-s.stop; cancel() }()
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

// onHostMessage handles "g,TICKET,ID,GRANTED,NOW,METER" (a grant),
// "r,TICKET,0,0,NOW,METER" (a waiter refused: a limits write left no units
// item that can ever admit its cost) and "n,AT,NOW,HEADHOST,OPS,METER"
// (when to try the head of the queue).
func (s *Store) onHostMessage(text string) {
	p := strings.SplitN(text, ",", 6)
	num := func(i int) int64 { n, _ := strconv.ParseInt(p[i], 10, 64); return n }
	switch {
	case p[0] == "g" && len(p) == 6:
		ticket, _ := strconv.ParseUint(p[1], 10, 64)
		s.granted(p[5], ticket, uint64(num(2)), num(3))
	case p[0] == "r" && len(p) == 6:
		ticket, _ := strconv.ParseUint(p[1], 10, 64)
		s.queued(p[5], ticket, false, time.Time{})
		s.tell(func(ev meter.Events) { ev.Refused(p[5], ticket, meter.ErrTooBig) })
	case p[0] == "n" && len(p) == 6:
		name := p[5]
		s.mu.Lock()
		ev, l := s.events, s.mine[name]
		waiting := l != nil && len(l.waiters) > 0
		s.mu.Unlock()
		if ev != nil && waiting {
			var wake time.Time
			if num(1) != 0 {
				wake = s.toLocal(num(1))
			}
			ev.Wake(name, wake, p[3] == s.opt.Host, uint64(num(4)))
		}
	}
}

// granted delivers a grant to the engine once, while this host's lease on
// the meter holds; otherwise the call is revoked.
func (s *Store) granted(name string, ticket, id uint64, grantedUs int64) {
	c := meter.Call{ID: id, GrantedAt: s.toLocal(grantedUs), Holder: meter.Holder{Host: s.opt.Host}}
	if !s.leaseHeld(s.leaseOf(name, ticket)) {
		s.log.Warn("a grant came after this host's lease could have lapsed; revoking it", "meter", name, "call", id)
		_ = s.v1Revoke(name, id)
		return
	}
	if !s.own(name, ticket, c, grantedUs, time.Time{}) {
		return // delivered already
	}
	s.mu.Lock()
	ev := s.events
	s.mu.Unlock()
	if ev != nil {
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
		s.forget(name)
	}
	s.mu.Lock()
	ev := s.events
	s.mu.Unlock()
	if ev != nil {
		ev.Changed(name)
	}
}

// renewLoop renews this host's leases every Lease/3, checks that the store
// kept its data, and tidies this host's bookkeeping.
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
		s.mu.Lock()
		down := !s.down.IsZero()
		s.mu.Unlock()
		if down {
			continue // the recovery loop takes over
		}
		if s.checkEpoch() == epochPutBack {
			s.tell(func(ev meter.Events) { ev.Reachable() })
		}
		s.reconcile(false)
		s.tidy(s.storeNowEstimate())
	}
}

// reconcile renews the lease of every meter where this host has calls or
// waiters, picking up the grants whose messages it missed; after a new
// subscription (full) it also reloads every meter's definition.
func (s *Store) reconcile(full bool) {
	s.mu.Lock()
	var names []string
	for name := range s.mine {
		names = append(names, name)
	}
	ev := s.events
	s.mu.Unlock()
	for _, name := range names {
		s.renewMeter(name)
	}
	if full && ev != nil {
		if all, err := s.meterNames(); err == nil {
			seen := map[string]bool{}
			for _, n := range all {
				seen[n] = true
				ev.Changed(n)
			}
			s.mu.Lock()
			var gone []string
			for n := range s.defs {
				if !seen[n] {
					gone = append(gone, n)
				}
			}
			s.mu.Unlock()
			for _, n := range gone {
				ev.Changed(n)
			}
		}
	}
}

// renewMeter renews this host's lease on one meter and delivers the
// grants it holds there that it did not know of.
func (s *Store) renewMeter(name string) {
	res, sent, err := s.fcall("rlfs1_renew", name, s.opt.Host, s.inc, s.leaseArg())
	if err != nil {
		return
	}
	at := sent // the store's now is read at least at sent (exact with a test clock)
	s.renewed(name, sent)
	storeNow := intAt(res, 1)
	s.synced(storeNow, at)
	for i := 4; i+2 < len(res); i += 3 {
		id, ticket, g := uint64(intAt(res, i)), uint64(intAt(res, i+1)), intAt(res, i+2)
		s.mu.Lock()
		l := s.mine[name]
		known := l != nil && hasCall(l, id)
		s.mu.Unlock()
		if !known {
			s.granted(name, ticket, id, g)
		}
	}
	s.mu.Lock()
	ev, l := s.events, s.mine[name]
	waiting := l != nil && len(l.waiters) > 0
	s.mu.Unlock()
	if ev != nil && waiting {
		ev.Wake(name, s.wakeOf(intAt(res, 0), storeNow, at), strAt(res, 2) == s.opt.Host, uint64(intAt(res, 3)))
	}
}

func hasCall(l *local, id uint64) bool {
	_, ok := l.calls[id]
	return ok
}
