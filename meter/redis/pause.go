package redis

import (
	"context"
	"strconv"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// Pause pauses meter name on every host until p.Until, or lifts its pause
// when p.Until is zero (design §10): one step of the library
// (rlfs2_pause), which keeps the pause with the meter (in Redis: a
// restart of this daemon or of Redis with AOF keeps it), extends the one
// in force only with a later one, and tells every host with waiters the
// queue's new wake instant. The pause travels as a duration from now, so
// that it ends on the store's clock as the host meant it, whatever the
// hosts' clocks say.
func (s *Store) Pause(ctx context.Context, name string, p meter.Pause) (meter.Pause, error) {
	arg := "lift"
	if !p.Until.IsZero() {
		// A pause already over changes nothing (0): the store replies the
		// one in force.
		arg = strconv.FormatInt(max(micros(p.Until.Sub(s.clock.Now())), 0), 10)
	}
	var rep pauseReply
	sent, err := s.fcall(ctx, "rlfs2_pause", name, &rep, arg, p.By, p.From)
	if err != nil {
		return meter.Pause{}, err
	}
	s.host.synced(rep.now, sent)
	if rep.set {
		return p, nil // the one asked for, on the engine's clock exactly
	}
	recv := s.arrived(sent) // never early: see View
	return rep.of(func(us int64) time.Time { return localOf(us, rep.now, recv) }), nil
}

// of is the pause of a reply on the engine's clock (local converts the
// store's instants).
func (r pauseReply) of(local func(int64) time.Time) meter.Pause {
	if r.until == 0 {
		return meter.Pause{}
	}
	return meter.Pause{Until: local(r.until), By: r.by, From: r.from}
}
