package redis

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/rlfs/rlfs/meter"
)

func (s *Store) leaseArg() string { return strconv.FormatInt(micros(s.opt.Lease), 10) }

func u64(v uint64) string { return strconv.FormatUint(v, 10) }

// Enqueue asks the store for a call for r: granted at once, or queued.
func (s *Store) v1Enqueue(name string, r meter.Request) (meter.Admission, error) {
	h := r.Holder
	if s.opt.ProcessID != nil && h.PID > 0 {
		h.PID = s.opt.ProcessID(h.PID)
	}
	if !r.Nonblock {
		s.asking(name, r.Ticket, s.clock.Now())
	}
	res, sent, err := s.fcall("rlfs1_acquire", name, s.opt.Host, s.inc, s.leaseArg(), u64(r.Ticket),
		strconv.FormatInt(r.Cost, 10), boolStr(r.Nonblock), strconv.Itoa(h.PID), u64(uint64(h.UID)), u64(uint64(h.GID)))
	if err != nil {
		s.queued(name, r.Ticket, false, time.Time{})
		return meter.Admission{}, err
	}
	at := sent // the store's now is read at least at sent (exact with a test clock)
	storeNow := intAt(res, 3)
	s.synced(storeNow, at)
	switch intAt(res, 0) {
	case 1:
		h.Host = s.opt.Host
		c := meter.Call{ID: uint64(intAt(res, 1)), GrantedAt: localOf(intAt(res, 2), storeNow, at), Holder: h}
		if !s.leaseHeld(sent) {
			_ = s.v1Revoke(name, c.ID)
			return meter.Admission{}, meter.ErrUnavailable
		}
		s.own(name, r.Ticket, c, intAt(res, 2), sent)
		return meter.Admission{Granted: true, Call: c}, nil
	case 0:
		s.queued(name, r.Ticket, false, sent)
		switch intAt(res, 1) {
		case 2:
			return meter.Admission{}, meter.ErrTooManyWaiters
		case 3:
			return meter.Admission{}, fmt.Errorf("%w: a call of %d units", meter.ErrTooBig, r.Cost)
		}
		return meter.Admission{}, meter.ErrWouldBlock
	}
	s.queued(name, r.Ticket, true, sent)
	return meter.Admission{Seq: uint64(intAt(res, 1)), Wake: s.wakeOf(intAt(res, 2), storeNow, at), Head: strAt(res, 4) == s.opt.Host, Order: uint64(intAt(res, 5))}, nil
}

// Cancel takes a queued ticket out of the store's queue.
func (s *Store) v1Cancel(name string, seq, ticket uint64) (meter.Admission, error) {
	res, sent, err := s.fcall("rlfs1_cancel", name, s.opt.Host, s.inc, s.leaseArg(), u64(seq), u64(ticket))
	if err != nil {
		return meter.Admission{}, err
	}
	at := sent // the store's now is read at least at sent (exact with a test clock)
	storeNow := intAt(res, 3)
	s.queued(name, ticket, false, sent)
	switch intAt(res, 0) {
	case 0:
		return meter.Admission{Wake: s.wakeOf(intAt(res, 2), storeNow, at), Head: strAt(res, 4) == s.opt.Host, Order: uint64(intAt(res, 5))}, nil
	case 1:
		c := meter.Call{ID: uint64(intAt(res, 1)), GrantedAt: localOf(intAt(res, 2), storeNow, at), Holder: meter.Holder{Host: s.opt.Host}}
		s.own(name, ticket, c, intAt(res, 2), sent)
		return meter.Admission{Granted: true, Call: c}, nil
	}
	return meter.Admission{Gone: true}, nil
}

// Release completes call id. While the store cannot be reached, the
// completion waits in this host's outbox, with its time, and Release
// returns nil; it is delivered when the store is back.
func (s *Store) v1Release(name string, id uint64) error {
	engineID := id
	id = s.mapID(name, id)
	res, sent, err := s.fcall("rlfs1_release", name, s.opt.Host, s.inc, s.leaseArg(), u64(id), "0")
	if errors.Is(err, meter.ErrUnavailable) {
		s.postpone(outOp{meter: name, id: engineID, done: s.storeNowEstimate()})
		return nil
	}
	if err != nil {
		s.ended(name, id, 0, true)
		return err
	}
	s.synced(intAt(res, 1), sent)
	s.ended(name, id, intAt(res, 1), false)
	s.renewed(name, sent)
	return nil
}

// Revoke forgets call id: its open failed.
func (s *Store) v1Revoke(name string, id uint64) error {
	engineID := id
	id = s.mapID(name, id)
	res, sent, err := s.fcall("rlfs1_revoke", name, s.opt.Host, s.inc, s.leaseArg(), u64(id))
	if errors.Is(err, meter.ErrUnavailable) {
		s.postpone(outOp{meter: name, id: engineID, revoke: true})
		return nil
	}
	s.ended(name, id, 0, true)
	if err != nil {
		return err
	}
	s.synced(intAt(res, 1), sent)
	s.renewed(name, sent)
	return nil
}

// Settle sets the actual cost of call id.
func (s *Store) v1Settle(name string, id uint64, cost int64) error {
	id = s.mapID(name, id)
	_, sent, err := s.fcall("rlfs1_settle", name, s.opt.Host, s.inc, s.leaseArg(), u64(id), strconv.FormatInt(cost, 10))
	if err != nil {
		return err
	}
	s.renewed(name, sent)
	return nil
}

// Dispatch grants what the store's rule admits now.
func (s *Store) v1Dispatch(name string) (meter.Admission, error) {
	res, sent, err := s.fcall("rlfs1_dispatch", name, s.opt.Host, s.inc, s.leaseArg())
	if err != nil {
		return meter.Admission{}, err
	}
	at := sent // the store's now is read at least at sent (exact with a test clock)
	s.renewed(name, sent)
	return meter.Admission{Wake: s.wakeOf(intAt(res, 0), intAt(res, 1), at), Head: strAt(res, 2) == s.opt.Host, Order: uint64(intAt(res, 3))}, nil
}

// wakeFrom passes a {wake, now, head} reply on to the engine.
func (s *Store) wakeFrom(name string, res []rueidis.RedisMessage, sent time.Time) {
	at := sent // the store's now is read at least at sent (exact with a test clock)
	s.renewed(name, sent)
	s.mu.Lock()
	ev := s.events
	s.mu.Unlock()
	if ev != nil && len(res) >= 3 {
		ev.Wake(name, s.wakeOf(intAt(res, 0), intAt(res, 1), at), strAt(res, 2) == s.opt.Host, uint64(intAt(res, 3)))
	}
}

// localOf converts store instant us (µs) to the engine's clock, given that
// the store's now was storeNow when the engine's clock read at.
func localOf(us, storeNow int64, at time.Time) time.Time {
	return at.Add(time.Duration(us-storeNow) * time.Microsecond)
}

// wakeOf is localOf for a wake instant, where 0 means none.
func (s *Store) wakeOf(us, storeNow int64, at time.Time) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return localOf(us, storeNow, at)
}

// toLocal converts store instant us (µs) to the engine's clock with the
// latest reply's reading of both (for messages, whose own delay is unknown).
func (s *Store) toLocal(us int64) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sync.local.IsZero() {
		return s.clock.Now()
	}
	return s.sync.local.Add(time.UnixMicro(us).Sub(s.sync.store))
}

// synced remembers a store instant and when it was read, to estimate the
// store's time while it cannot be asked.
func (s *Store) synced(storeNow int64, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sync.store, s.sync.local = time.UnixMicro(storeNow), at
}

// storeNowEstimate is the store's time now, as best known (µs).
func (s *Store) storeNowEstimate() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sync.local.IsZero() {
		return 0
	}
	return s.sync.store.Add(s.clock.Now().Sub(s.sync.local)).UnixMicro()
}

func intAt(res []rueidis.RedisMessage, i int) int64 {
	if i >= len(res) {
		return 0
	}
	if n, err := res[i].AsInt64(); err == nil {
		return n
	}
	str, _ := res[i].ToString()
	n, _ := strconv.ParseInt(str, 10, 64)
	return n
}

func strAt(res []rueidis.RedisMessage, i int) string {
	if i >= len(res) {
		return ""
	}
	if str, err := res[i].ToString(); err == nil {
		return str
	}
	n, _ := res[i].AsInt64()
	return strconv.FormatInt(n, 10)
}

// classify turns an error of a plain command into ErrUnavailable when the
// store did not answer.
func (s *Store) classify(op string, err error) error {
	if re, ok := rueidis.IsRedisErr(err); ok {
		if re.IsLoading() || re.IsClusterDown() || re.IsTryAgain() || strings.HasPrefix(re.Error(), "MASTERDOWN") {
			return s.unavailable(err)
		}
		return errors.New("redis: " + op + ": " + err.Error())
	}
	return s.unavailable(err)
}

func isNoFunction(re *rueidis.RedisError) bool {
	return strings.Contains(re.Error(), "Function not found")
}
