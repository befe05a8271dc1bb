package redis

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/rlfs/rlfs/meter"
)

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
		n, err := s.flushOutbox()
		if err != nil {
			continue
		}
		s.mu.Lock()
		since := s.down
		s.down = time.Time{}
		ev := s.events
		s.mu.Unlock()
		s.log.Info("store reachable again", "store", redacted(s.opt.URL), "unreachable_for", s.clock.Now().Sub(since).Round(time.Millisecond), "completions_delivered", n)
		if ev != nil {
			ev.Reachable()
		}
		s.reconcile(true)
		return
	}
}

func (s *Store) ping() bool {
	ctx, cancel := s.ctx()
	defer cancel()
	return s.c.Do(ctx, s.c.B().Ping().Build()).Error() == nil
}

// flushOutbox delivers the completions and revocations kept while the
// store was unreachable, in order, and returns how many.
func (s *Store) flushOutbox() (int, error) {
	s.mu.Lock()
	out := s.outbox
	s.outbox = nil
	s.mu.Unlock()
	for i, o := range out {
		var err error
		if o.revoke {
			_, _, err = s.fcall("rlfs1_revoke", o.meter, s.opt.Host, s.inc, s.leaseArg(), u64(s.mapID(o.meter, o.id)))
		} else {
			_, _, err = s.fcall("rlfs1_release", o.meter, s.opt.Host, s.inc, s.leaseArg(), u64(s.mapID(o.meter, o.id)), strconv.FormatInt(o.done, 10))
		}
		if errors.Is(err, meter.ErrUnavailable) {
			s.mu.Lock()
			s.outbox = append(append([]outOp(nil), out[i:]...), s.outbox...)
			s.mu.Unlock()
			return i, err
		}
	}
	if len(out) > 0 {
		s.mu.Lock()
		if len(s.outbox) == 0 {
			s.journalLocked(jrec{K: "sent"})
		}
		s.mu.Unlock()
	}
	return len(out), nil
}
