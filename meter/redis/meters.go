package redis

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/rlfs/rlfs/meter"
)

// The meters' definitions: Load, create, limits and owner writes, removal.
// The set of meters ({PREFIX}:meters) lists their names for Load; a meter
// is created before it is listed and unlisted after it is removed, and
// every host hears of each change on the event channel.

// Load returns every meter's definition (their calls live in the store).
// It also ends, in every meter, the calls and waiters of this host's
// earlier daemons: they died with it.
func (s *Store) Load(ctx context.Context) ([]meter.Stored, error) {
	lost := s.host.takeLostWhileDown()
	if lost {
		s.host.dropOutbox()
	} else if _, err := s.flushOutbox(false); err != nil {
		return nil, err
	}
	if lost {
		s.reassert(ctx)
	}
	names, err := s.meterNames(ctx)
	if err != nil {
		return nil, err
	}
	var out []meter.Stored
	for _, name := range names {
		m, ok, err := s.LoadMeter(ctx, name)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue // listed but gone: removed meanwhile
		}
		if err := s.start(ctx, name); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	// The calls the journal had in progress were calls of this host's
	// earlier daemon: rlfs2_start ended them in the store, and their
	// holders lost the mount with it.
	s.host.endAll(s.host.storeNowEstimate())
	return out, nil
}

// start ends the calls and waiters of this host's earlier daemons in meter
// name, in steps.
func (s *Store) start(ctx context.Context, name string) error {
	var ended int64
	for {
		var rep startReply
		sent, err := s.fcall(ctx, "rlfs2_start", name, &rep, s.opt.Host, s.inc)
		if errors.Is(err, meter.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		s.host.synced(rep.now, sent)
		ended += rep.ended
		if !rep.more {
			break
		}
	}
	if ended > 0 {
		s.log.Info("calls of this host's previous daemon counted as completed now", "meter", name, "calls", ended, "host", s.opt.Host)
	}
	return nil
}

// meterNames lists the meters, sorted.
func (s *Store) meterNames(ctx context.Context) ([]string, error) {
	res, err := s.do(ctx, "list the meters", s.c.B().Smembers().Key(metersKey(s.opt.Prefix)).Build())
	if err != nil {
		return nil, err
	}
	names, err := res.AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("redis: list the meters: %w", err)
	}
	sort.Strings(names)
	return names, nil
}

// LoadMeter returns one meter's definition; ok is false if it does not
// exist. A meter this host knows that the store does not is looked for
// again if the store lost its data and this host put it back, and kept
// (ErrUnavailable) while that is unsure.
func (s *Store) LoadMeter(ctx context.Context, name string) (meter.Stored, bool, error) {
	var rep defReply
	_, err := s.fcall(ctx, "rlfs2_def", name, &rep)
	if errors.Is(err, meter.ErrNotExist) {
		s.host.forget(name)
		return meter.Stored{}, false, nil
	}
	if err != nil {
		return meter.Stored{}, false, err
	}
	m, err := storedOf(name, rep)
	if err != nil {
		return meter.Stored{}, false, fmt.Errorf("redis: meter %q has limits that do not parse (%v); write its limits file on any host", name, err)
	}
	s.host.remember(m)
	return m, true, nil
}

// CreateMeter stores a new meter; meter.ErrExist if the name is taken.
func (s *Store) CreateMeter(ctx context.Context, name string, spec meter.Spec, attr meter.Attr) error {
	args := append([]string{name}, specFields(spec, s.opt.History)...)
	args = append(append(args, attrFields(attr)...), "lh", s.leaseArg()) // lh: the quiet time should it be unsettled
	var created intReply
	if _, err := s.fcallOpt(ctx, "rlfs2_create", name, 0, &created, args...); err != nil {
		return err
	}
	if err := s.addName(ctx, name); err != nil {
		return err
	}
	if created == 0 {
		return fmt.Errorf("%w: %q", meter.ErrExist, name)
	}
	s.host.remember(meter.Stored{Name: name, Spec: spec, Attr: attr})
	s.announce(ctx, "c", name)
	return nil
}

// announce tells every host that meter name was created ("c") or removed
// ("d"), after the set of meters says so.
func (s *Store) announce(ctx context.Context, kind, name string) {
	_, _ = s.do(ctx, "announce "+name, s.c.B().Publish().Channel(eventChannel(s.opt.Prefix)).Message(kind+","+name).Build())
}

// addName lists name in the set of meters (also when it was listed).
func (s *Store) addName(ctx context.Context, name string) error {
	_, err := s.do(ctx, "list meter "+name, s.c.B().Sadd().Key(metersKey(s.opt.Prefix)).Member(name).Build())
	return err
}

// SetSpec replaces a meter's spec. The store applies it at once and
// rebuilds the meter's ledger in bounded steps (rlfs2_rebuild, sent until
// it is done; any other host's step on the meter helps): nothing is
// granted on the meter meanwhile. Then the queue is judged again.
func (s *Store) SetSpec(ctx context.Context, name string, spec meter.Spec) error {
	args := append([]string{name}, specFields(spec, s.opt.History)...)
	var ok intReply
	if _, err := s.fcall(ctx, "rlfs2_setspec", name, &ok, args...); err != nil {
		return err
	}
	s.host.setDef(name, func(m *meter.Stored) { m.Spec = spec })
	var rep stepReply
	sent, err := s.fcall(ctx, "rlfs2_rebuild", name, &rep)
	if err != nil {
		return err
	}
	s.host.synced(rep.now, sent)
	if ev := s.eventsOf(); ev != nil && s.host.waiting(name) {
		ev.Wake(name, wakeOf(rep.wake, rep.now, sent), rep.head == s.opt.Host, rep.ops)
	}
	return nil
}

// SetAttr replaces a meter's owner and mode.
func (s *Store) SetAttr(ctx context.Context, name string, attr meter.Attr) error {
	var ok intReply
	if _, err := s.fcall(ctx, "rlfs2_setattr", name, &ok, append([]string{name}, attrFields(attr)...)...); err != nil {
		return err
	}
	s.host.setDef(name, func(m *meter.Stored) { m.Attr = attr })
	return nil
}

// DeleteMeter removes an idle meter with its history and data files;
// meter.ErrBusy while a host has calls or waiters on it.
func (s *Store) DeleteMeter(ctx context.Context, name string) error {
	var deleted intReply
	if _, err := s.fcall(ctx, "rlfs2_delete", name, &deleted, name); err != nil {
		return err
	}
	if deleted == 0 {
		return fmt.Errorf("%w: %q", meter.ErrBusy, name)
	}
	s.host.forget(name)
	if _, err := s.do(ctx, "unlist meter "+name, s.c.B().Srem().Key(metersKey(s.opt.Prefix)).Member(name).Build()); err != nil {
		return err
	}
	s.announce(ctx, "d", name)
	return nil
}
