package redis

import (
	"fmt"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// Outages: the first call the store does not answer marks it unreachable
// and starts the recovery loop, which waits for it, puts back what it
// lost, delivers the completions kept meanwhile, and tells the engine.

// unavailable records that the store did not answer and returns
// meter.ErrUnavailable. The first failure starts the recovery loop.
func (s *Store) unavailable(cause error) error {
	s.mu.Lock()
	s.failures++
	start := s.down.IsZero() && !s.closed
	if start {
		s.down = s.clock.Now()
		s.outages++
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if start {
		s.log.Warn("store unreachable: nothing is granted until it is back; completions are kept and delivered then",
			"store", redacted(s.opt.URL), "host", s.opt.Host, "err", cause)
		go s.recover()
	}
	return fmt.Errorf("%w: %v", meter.ErrUnavailable, cause)
}

// Health is how the store fares since Open.
type Health struct {
	Failures uint64    // calls the store did not answer
	Outages  uint64    // times it became unreachable
	Down     time.Time // since when it is unreachable (zero: it answers)
}

// Health reports how the store fares. Safe for concurrent use.
func (s *Store) Health() Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Health{Failures: s.failures, Outages: s.outages, Down: s.down}
}

// UnreachableSince says since when the store is unreachable (zero: it
// answers); meter.Reachability.
func (s *Store) UnreachableSince() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

// recover waits for the store to answer again, puts back what it lost,
// delivers the completions made meanwhile, then tells the engine.
func (s *Store) recover() {
	defer s.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-s.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
		if !s.ping() {
			continue
		}
		s.checkEpoch() // the engine's waiters are presented again below, by Reachable
		n, err := s.flushOutbox(false)
		if err != nil {
			continue
		}
		s.reachableAgain(n)
		return
	}
}

// reachableAgain ends an outage whose kept completions (n) were delivered:
// the store counts as reachable, the sender takes what came after that
// delivery, and the engine is told.
func (s *Store) reachableAgain(n int) {
	s.mu.Lock()
	since := s.down
	s.down = time.Time{}
	ev := s.events
	s.mu.Unlock()
	s.log.Info("store reachable again", "store", redacted(s.opt.URL), "unreachable_for", s.clock.Now().Sub(since).Round(time.Millisecond), "completions_delivered", n)
	// A close that still found the store unreachable after the delivery
	// left its completion in the outbox (Release): the sender takes it.
	s.kickSender()
	if ev != nil {
		ev.Reachable()
	}
	s.reconcile(true)
}

func (s *Store) ping() bool {
	cctx, cancel := s.callCtx(s.base)
	defer cancel()
	return s.c.Do(cctx, s.c.B().Ping().Build()).Error() == nil
}

// flushOutbox delivers the completions and revocations kept in the
// outbox (releases.go), and returns how many.
func (s *Store) flushOutbox(sendable bool) (int, error) {
	out := s.host.takeOutbox(sendable)
	if len(out) == 0 {
		return 0, nil
	}
	return s.deliverOps(out)
}
