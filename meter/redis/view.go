package redis

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// View pictures a meter across the fleet, after its upkeep (the leases
// that lapsed): counts, usage and the next grant in one step (rlfs2_view),
// then, with q.Lists, its holders and waiters in chunks (rlfs2_list).
func (s *Store) View(ctx context.Context, name string, q meter.ViewQuery) (meter.View, error) {
	var callArg, seqArg string
	if q.Call != 0 {
		callArg = u64(s.host.mapID(name, q.Call))
	}
	if q.Seq != 0 {
		seqArg = u64(q.Seq)
	}
	var rep viewReply
	sent, err := s.fcall(ctx, "rlfs2_view", name, &rep, callArg, seqArg)
	if err != nil {
		return meter.View{}, err
	}
	s.host.synced(rep.now, sent)
	// Instants shown are converted from the reply's arrival: at most a
	// round trip late, never early (a grant or a pause's end must not read
	// before the store's).
	recv := s.arrived(sent)
	local := func(us int64) time.Time { return localOf(us, rep.now, recv) }
	v, err := viewOf(name, rep, recv, local) // now is the store's, converted as the rest
	if err != nil {
		return meter.View{}, err
	}
	if q.Call != 0 && rep.call != "" {
		if r, ok := parseCallRecord(rep.call); ok {
			c := r.call(q.Call, local)
			v.Call = &c
		}
	}
	if q.Seq != 0 && rep.waiter != "" {
		if r, ok := parseWaiterRecord(rep.waiter); ok {
			w := r.waiter(q.Seq, local)
			v.Waiter, v.Place = &w, int(rep.place)
		}
	}
	if q.Lists {
		if err := s.lists(ctx, name, &v, local); err != nil {
			return meter.View{}, err
		}
	}
	return v, nil
}

// viewOf turns rlfs2_view's reply into a meter.View (without lists).
func viewOf(name string, rep viewReply, at time.Time, local func(int64) time.Time) (meter.View, error) {
	spec, err := meter.ParseSpec(rep.spec)
	if err != nil {
		return meter.View{}, fmt.Errorf("redis: meter %q has limits that do not parse (%v); write its limits file on any host", name, err)
	}
	attr := attrOf(rep.mode, rep.uid, rep.gid)
	v := meter.View{Spec: spec, Attr: attr, Now: at, Grants: uint64(rep.grants), Hosts: rep.hosts,
		HoldersN: int(rep.holders), ExpiredN: int(rep.held), WaitersN: int(rep.waiters), Retired: int(rep.retired)}
	for i, w := range spec.Windows {
		if i < len(rep.usage) {
			v.Usage = append(v.Usage, meter.WindowUsage{Window: w, Used: int(rep.usage[i])})
		}
	}
	switch {
	case rep.nextOK:
		v.Next = meter.Decision{OK: true}
	case rep.nextAt != 0:
		v.Next = meter.Decision{At: local(rep.nextAt)}
	}
	instant := func(us int64) time.Time {
		if us == 0 {
			return time.Time{}
		}
		return local(us)
	}
	v.Buckets = meter.Buckets(spec, instant(rep.tat), instant(rep.utat), v.Now)
	v.RetiredSince = instant(rep.retiredSince)
	v.Pause = rep.pause.of(local)
	return v, nil
}

// lists reads the meter's holders (held ones in Expired) in grant order,
// and its waiters in queue order, a chunk a step. The chunks are read one
// after another: a list is a picture of moments a few round trips apart.
func (s *Store) lists(ctx context.Context, name string, v *meter.View, local func(int64) time.Time) error {
	seen := map[uint64]bool{}
	for cursor := "0"; ; {
		var rep listReply
		if _, err := s.fcall(ctx, "rlfs2_list", name, &rep, "c", cursor); err != nil {
			return err
		}
		for i, k := range rep.keys {
			id, _ := strconv.ParseUint(k, 10, 64)
			r, ok := parseCallRecord(rep.recs[i])
			if !ok || seen[id] {
				continue
			}
			seen[id] = true
			c := r.call(id, local)
			if c.Expired {
				v.Expired = append(v.Expired, c)
			} else {
				v.Holders = append(v.Holders, c)
			}
		}
		if cursor = rep.cursor; cursor == "0" {
			break
		}
	}
	byID := func(a, b meter.Call) int { return cmpUint(a.ID, b.ID) }
	slices.SortFunc(v.Holders, byID)
	slices.SortFunc(v.Expired, byID)
	for after := "0"; ; {
		var rep listReply
		if _, err := s.fcall(ctx, "rlfs2_list", name, &rep, "w", after); err != nil {
			return err
		}
		for i, k := range rep.keys {
			seq, _ := strconv.ParseUint(k, 10, 64)
			if r, ok := parseWaiterRecord(rep.recs[i]); ok {
				v.Waiters = append(v.Waiters, r.waiter(seq, local))
			}
		}
		if after = rep.cursor; after == "0" {
			break
		}
	}
	return nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func attrOf(mode, uid, gid string) meter.Attr {
	u := func(s string) uint32 { v, _ := strconv.ParseUint(s, 10, 32); return uint32(v) }
	return meter.Attr{Mode: u(mode), UID: u(uid), GID: u(gid)}
}
