package redis

import (
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	"github.com/rlfs/rlfs/meter"
)

// reassert puts back, after the store lost its data, every meter this host
// knows and this host's calls that still count: its calls in progress and
// those that completed within their meter's longest window. Each host
// does the same for its own, so the limits hold for the calls of every
// live host. A call whose id was taken meanwhile gets a new one, which
// this host maps from then on.
func (s *Store) reassert() {
	e, err := s.ensureEpoch()
	if err != nil {
		return
	}
	s.mu.Lock()
	s.epoch = e
	s.journalLocked(jrec{K: "epoch", E: e})
	defs := make([]meter.Stored, 0, len(s.defs))
	for _, d := range s.defs {
		defs = append(defs, d)
	}
	calls := map[string][]string{}
	for name, l := range s.mine {
		for id, c := range l.calls {
			calls[name] = append(calls[name], strings.Join([]string{u64(id), strconv.FormatInt(c.granted, 10),
				strconv.FormatInt(c.done, 10), "1", "-1", u64(c.ticket), strconv.Itoa(c.holder.PID),
				u64(uint64(c.holder.UID)), u64(uint64(c.holder.GID))}, ","))
		}
	}
	ev := s.events
	s.mu.Unlock()
	for _, d := range defs {
		args := append([]string{d.Name}, specFields(d.Spec, s.opt.History)...)
		if _, _, err := s.fcallScalar("rlfs1_create", d.Name, append(args, attrFields(d.Attr)...)...); err != nil {
			return
		}
		if err := s.addName(d.Name); err != nil {
			return
		}
	}
	n := 0
	for name, recs := range calls {
		res, _, err := s.fcall("rlfs1_reassert", name, append([]string{s.opt.Host, s.inc, s.leaseArg()}, recs...)...)
		if err != nil {
			continue
		}
		s.remapFrom(name, res)
		n += len(recs)
	}
	s.log.Warn("the store lost its data (its epoch changed); this host put back the meters it knows and its calls that still count",
		"store", redacted(s.opt.URL), "host", s.opt.Host, "meters", len(defs), "calls", n)
	if ev != nil {
		for _, d := range defs {
			ev.Changed(d.Name)
		}
	}
}

// remapFrom reads the {wake, now, head, ops, old1, new1, ...} reply of
// rlfs1_reassert into this host's id map.
func (s *Store) remapFrom(name string, res []rueidis.RedisMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.mine[name]
	for i := 4; i+1 < len(res); i += 2 {
		old, nu := uint64(intAt(res, i)), uint64(intAt(res, i+1))
		if old == nu || l == nil {
			continue
		}
		if s.remap == nil {
			s.remap = map[string]map[uint64]uint64{}
		}
		if s.remap[name] == nil {
			s.remap[name] = map[uint64]uint64{}
		}
		s.remap[name][old] = nu
		if c, ok := l.calls[old]; ok {
			delete(l.calls, old)
			l.calls[nu] = c
		}
	}
}

// mapID is the store's id of the call the engine knows as id.
func (s *Store) mapID(name string, id uint64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if nu, ok := s.remap[name][id]; ok {
		return nu
	}
	return id
}

func isNil(err error) bool { return rueidis.IsRedisNil(err) }
