package sqlite

import (
	"database/sql"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// A batch is the queued operations of one flush, coalesced: a completion of
// a call granted in the same batch is folded into its insert, and a call
// that a prune in the batch drops is never inserted. Each meter's row is
// updated once per batch.

type callKey struct {
	meter string
	id    uint64
}

type meterBatch struct {
	grants  int64
	nextID  uint64
	tat     time.Time
	hasTAT  bool
	utat    time.Time // the units bucket's TAT after the batch's last grant or settlement
	hasUTAT bool
	pruned  bool
	cutoff  time.Time
	byGrant bool
	past    []meter.Past // the history after the batch's last retirement
}

// batch is a flush's operations, coalesced.
type batch struct {
	meters    map[string]*meterBatch
	stored    map[string]uint64 // next_id as stored before this batch
	order     []callKey         // inserts in grant order
	inserts   map[callKey]*meter.Call
	completes []op // of calls stored before this batch
	revokes   []op // likewise
	settles   []op // likewise
}

// applyLocked writes ops in one transaction that the caller holds. It is
// idempotent: a replayed journal may hold grants that are in SQLite already,
// which a meter's stored next_id tells (IDs grow per meter, and batches go in
// in order).
func (s *Store) applyLocked(ops []op) error {
	b, err := s.coalesce(ops)
	if err != nil {
		return err
	}
	if err := s.writeCalls(b); err != nil {
		return err
	}
	return s.writeMeters(b)
}

// coalesce folds ops into a batch.
func (s *Store) coalesce(ops []op) (*batch, error) {
	b := &batch{meters: map[string]*meterBatch{}, stored: map[string]uint64{}, inserts: map[callKey]*meter.Call{}}
	for _, o := range ops {
		mb := b.meters[o.meter]
		if mb == nil {
			next, ok, err := s.storedNextID(o.meter)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue // the meter is gone: drop its operations
			}
			mb = &meterBatch{nextID: next}
			b.meters[o.meter], b.stored[o.meter] = mb, next
		}
		k := callKey{o.meter, o.call.ID}
		switch o.kind {
		case opGrant:
			if _, dup := b.inserts[k]; dup || o.call.ID < b.stored[o.meter] {
				continue // replayed: already stored
			}
			c := o.call
			b.inserts[k] = &c
			b.order = append(b.order, k)
			mb.grants++
			mb.nextID = max(mb.nextID, c.ID+1)
			mb.tat, mb.hasTAT = o.tat, true
			mb.utat, mb.hasUTAT = o.utat, true
		case opSettle:
			if c, ok := b.inserts[k]; ok {
				c.Actual, c.Settled = o.call.Actual, true
			} else {
				b.settles = append(b.settles, o)
			}
			mb.utat, mb.hasUTAT = o.utat, true
		case opComplete:
			if c, ok := b.inserts[k]; ok {
				c.DoneAt, c.Expired = o.call.DoneAt, o.call.Expired
			} else {
				b.completes = append(b.completes, o)
			}
		case opRevoke:
			if _, ok := b.inserts[k]; ok {
				delete(b.inserts, k) // never reaches SQLite
				mb.grants--
			} else {
				b.revokes = append(b.revokes, o)
			}
		case opRetire:
			if !mb.pruned || o.cutoff.After(mb.cutoff) {
				mb.cutoff, mb.byGrant = o.cutoff, o.byGrant
			}
			mb.pruned, mb.past = true, o.past
		}
	}
	return b, nil
}

// writeCalls inserts the batch's calls that still matter, then applies the
// completions and revocations of calls stored before.
func (s *Store) writeCalls(b *batch) error {
	for _, k := range b.order {
		c, ok := b.inserts[k]
		if !ok {
			continue // revoked
		}
		if mb := b.meters[k.meter]; mb.pruned && !c.InProgress() && prunable(*c, mb.cutoff, mb.byGrant) {
			continue
		}
		if _, err := exec(s.st.grantCall, callArgs(k.meter, *c)...); err != nil {
			return err
		}
	}
	for _, o := range b.settles {
		if _, err := exec(s.st.settle, o.call.Actual, o.meter, int64(o.call.ID)); err != nil {
			return err
		}
	}
	for _, o := range b.completes {
		if _, err := exec(s.st.complete, nsOf(o.call.DoneAt), boolInt(o.call.Expired), o.meter, int64(o.call.ID)); err != nil {
			return err
		}
	}
	for _, o := range b.revokes {
		n, err := exec(s.st.revoke, o.meter, int64(o.call.ID))
		if err != nil {
			return err
		}
		if n > 0 { // not when replayed
			if _, err := exec(s.st.ungrant, o.meter); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeMeters updates each meter's row once, and retires its calls.
func (s *Store) writeMeters(b *batch) error {
	for name, mb := range b.meters {
		if mb.grants != 0 || mb.nextID > b.stored[name] {
			stmt, args := s.st.keepTAT, []any{int64(mb.nextID), mb.grants, name}
			if mb.hasTAT {
				stmt, args = s.st.grantMeter, append([]any{nsOf(mb.tat)}, args...)
			}
			if _, err := exec(stmt, args...); err != nil {
				return err
			}
		}
		if mb.hasUTAT {
			if _, err := exec(s.st.setUTAT, nsOf(mb.utat), name); err != nil {
				return err
			}
		}
		if mb.pruned {
			stmt := s.st.pruneDone
			if mb.byGrant {
				stmt = s.st.pruneGranted
			}
			if _, err := exec(stmt, name, mb.cutoff.UnixNano()); err != nil {
				return err
			}
			if _, err := exec(s.st.setPast, encodePast(mb.past), name); err != nil {
				return err
			}
		}
	}
	return nil
}

// callArgs are the grantCall statement's arguments for call c of meter.
func callArgs(meter string, c meter.Call) []any {
	var actual any
	if c.Settled {
		actual = c.Actual
	}
	h := c.Holder
	return []any{meter, int64(c.ID), nsOf(c.GrantedAt), nsOf(c.DoneAt), boolInt(c.Expired), h.PID, h.UID, h.GID, h.Cmd, c.Cost, actual}
}

func prunable(c meter.Call, cutoff time.Time, byGrant bool) bool {
	if byGrant {
		return !c.GrantedAt.After(cutoff)
	}
	return !c.DoneAt.After(cutoff)
}

// storedNextID reads a meter's next_id; ok is false if the meter is gone.
func (s *Store) storedNextID(name string) (uint64, bool, error) {
	var next int64
	err := s.st.nextID.QueryRow(name).Scan(&next)
	if err == sql.ErrNoRows {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return uint64(next), true, nil
}
