package redis

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/redis/rueidis"

	"github.com/rlfs/rlfs/meter"
)

// Load returns every meter's definition (their calls live in the store).
// It also ends, in every meter, the calls and waiters of this host's
// earlier daemons: they died with it.
func (s *Store) v1Load() ([]meter.Stored, error) {
	if _, err := s.flushOutbox(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	lost := s.lostWhileDown
	s.lostWhileDown = false
	s.mu.Unlock()
	if lost {
		s.reassert()
	}
	names, err := s.meterNames()
	if err != nil {
		return nil, err
	}
	var out []meter.Stored
	for _, name := range names {
		m, ok, err := s.v1LoadMeter(name)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue // listed but gone: removed meanwhile
		}
		res, _, err := s.fcall("rlfs1_start", name, s.opt.Host, s.inc)
		if err != nil && !errors.Is(err, meter.ErrNotExist) {
			return nil, err
		}
		if n := intAt(res, 4); n > 0 {
			s.log.Info("calls of this host's previous daemon counted as completed now", "meter", name, "calls", n, "host", s.opt.Host)
		}
		out = append(out, m)
	}
	s.endRestored()
	return out, nil
}

// endRestored counts the calls the journal had in progress, calls of this
// host's earlier daemon, as completed now: rlfs1_start ended them in the
// store, and that daemon's holders lost the mount with it.
func (s *Store) endRestored() {
	now := s.storeNowEstimate()
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, l := range s.mine {
		for id, c := range l.calls {
			if c.done == 0 {
				c.done = now
				l.calls[id] = c
				s.journalLocked(jrec{K: "done", M: name, ID: id, D: now})
			}
		}
	}
}

// meterNames lists the meters, sorted.
func (s *Store) meterNames() ([]string, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	names, err := s.c.Do(ctx, s.c.B().Smembers().Key(metersKey(s.opt.Prefix)).Build()).AsStrSlice()
	if err != nil {
		return nil, s.classify("list the meters", err)
	}
	sort.Strings(names)
	return names, nil
}

// LoadMeter returns one meter's definition; ok is false if it does not exist.
func (s *Store) v1LoadMeter(name string) (meter.Stored, bool, error) {
	return s.loadMeter(name, true)
}

// loadMeter is LoadMeter; with recheck, a meter this host knows that the
// store does not is looked for again if the store lost its data and this
// host put it back, and kept while that is unsure.
func (s *Store) loadMeter(name string, recheck bool) (meter.Stored, bool, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	k := keysOf(s.opt.Prefix, name)
	gen := s.putBacks()
	f, err := s.c.Do(ctx, s.c.B().Hgetall().Key(k[0]).Build()).AsStrMap()
	if err != nil {
		return meter.Stored{}, false, s.classify("read meter "+name, err)
	}
	if len(f) == 0 {
		if recheck && s.knows(name) {
			switch s.lostData(gen) {
			case epochPutBack:
				return s.loadMeter(name, false) // put back, unless removed since
			case epochUnsure:
				return meter.Stored{}, false, s.unavailable(fmt.Errorf("meter %q is missing and the store lost its data", name))
			}
		}
		s.forget(name)
		return meter.Stored{}, false, nil
	}
	m, err := storedOf(name, f)
	if err != nil {
		return meter.Stored{}, false, fmt.Errorf("redis: meter %q has limits that do not parse (%v); write its limits file on any host", name, err)
	}
	s.remember(m)
	return m, true, nil
}

// CreateMeter stores a new meter; meter.ErrExist if the name is taken.
func (s *Store) v1CreateMeter(name string, spec meter.Spec, attr meter.Attr) error {
	args := append([]string{name}, specFields(spec, s.opt.History)...)
	args = append(args, attrFields(attr)...)
	res, _, err := s.fcallScalar("rlfs1_create", name, args...)
	if err != nil {
		return err
	}
	if err := s.addName(name); err != nil {
		return err
	}
	if res == 0 {
		return fmt.Errorf("%w: %q", meter.ErrExist, name)
	}
	s.remember(meter.Stored{Name: name, Spec: spec, Attr: attr})
	s.announce("c", name)
	return nil
}

// announce tells every host that meter name was created ("c") or removed
// ("d"), after the set of meters says so.
func (s *Store) announce(kind, name string) {
	ctx, cancel := s.ctx()
	defer cancel()
	_ = s.c.Do(ctx, s.c.B().Publish().Channel(eventChannel(s.opt.Prefix)).Message(kind+","+name).Build()).Error()
}

// addName lists name in the set of meters (also when it was listed).
func (s *Store) addName(name string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.c.Do(ctx, s.c.B().Sadd().Key(metersKey(s.opt.Prefix)).Member(name).Build()).Error(); err != nil {
		return s.classify("list meter "+name, err)
	}
	return nil
}

// SetSpec replaces a meter's spec; the store applies it at once.
func (s *Store) v1SetSpec(name string, spec meter.Spec) error {
	args := append([]string{name}, specFields(spec, s.opt.History)...)
	res, sent, err := s.fcall("rlfs1_setspec", name, args...)
	if err != nil {
		return err
	}
	s.setDef(name, func(m *meter.Stored) { m.Spec = spec })
	s.wakeFrom(name, res, sent)
	return nil
}

// SetAttr replaces a meter's owner and mode.
func (s *Store) v1SetAttr(name string, attr meter.Attr) error {
	if _, _, err := s.fcallScalar("rlfs1_setattr", name, append([]string{name}, attrFields(attr)...)...); err != nil {
		return err
	}
	s.setDef(name, func(m *meter.Stored) { m.Attr = attr })
	return nil
}

// DeleteMeter removes an idle meter with its history and data files;
// meter.ErrBusy while a host has calls or waiters on it.
func (s *Store) v1DeleteMeter(name string) error {
	res, _, err := s.fcallScalar("rlfs1_delete", name, name)
	if err != nil {
		return err
	}
	if res == 0 {
		return fmt.Errorf("%w: %q", meter.ErrBusy, name)
	}
	s.forget(name)
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.c.Do(ctx, s.c.B().Srem().Key(metersKey(s.opt.Prefix)).Member(name).Build()).Error(); err != nil {
		return s.classify("unlist meter "+name, err)
	}
	s.announce("d", name)
	return nil
}

// fcallScalar is fcall for the functions that reply with one integer.
func (s *Store) fcallScalar(fn, name string, args ...string) (int64, bool, error) {
	k := keysOf(s.opt.Prefix, name)
	a := append([]string{s.opt.Prefix, s.nowArg()}, args...)
	for attempt := 0; ; attempt++ {
		ctx, cancel := s.ctx()
		n, err := s.c.Do(ctx, s.c.B().Fcall().Function(fn).Numkeys(int64(len(k))).Key(k[:]...).Arg(a...).Build()).AsInt64()
		cancel()
		if re, ok := rueidis.IsRedisErr(err); ok {
			switch msg := re.Error(); {
			case isNoFunction(re):
				if lerr := s.reloadLibrary(attempt, err); lerr != nil {
					return 0, false, lerr
				}
				continue
			case strings.HasPrefix(msg, errNoMeter):
				return 0, false, fmt.Errorf("%w: %q", meter.ErrNotExist, name)
			case strings.HasPrefix(msg, "RLFS_NOSPACE "):
				return 0, false, fmt.Errorf("%w: %s", meter.ErrNoSpace, strings.TrimPrefix(msg, "RLFS_NOSPACE "))
			}
		}
		if err != nil {
			return 0, false, s.classify(fn+" "+name, err)
		}
		return n, true, nil
	}
}

// remember, setDef and forget keep the definitions this host knows, to put
// them back should the store lose its data.
func (s *Store) remember(m meter.Stored) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m.State, m.Grants = meter.State{}, 0
	if old, ok := s.defs[m.Name]; !ok || !old.Spec.Equal(m.Spec) || old.Attr != m.Attr {
		s.journalLocked(defRec(m))
	}
	s.defs[m.Name] = m
}

func (s *Store) setDef(name string, f func(*meter.Stored)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.defs[name]; ok {
		f(&m)
		s.defs[name] = m
		s.journalLocked(defRec(m))
	}
}

// knows reports whether this host knows meter name's definition.
func (s *Store) knows(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.defs[name]
	return ok
}

func (s *Store) forget(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.defs[name]; ok {
		delete(s.defs, name)
		s.journalLocked(jrec{K: "undef", M: name})
	}
}
