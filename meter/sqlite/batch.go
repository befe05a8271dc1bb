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
	pruned  bool
	cutoff  time.Time
	byGrant bool
}

// applyLocked writes ops in one transaction that the caller holds. It is
// idempotent: a replayed journal may hold grants that are in SQLite already,
// which a meter's stored next_id tells (IDs grow per meter, and batches go in
// in order).
func (s *Store) applyLocked(ops []op) error {
	meters := map[string]*meterBatch{}
	stored := map[string]uint64{} // next_id as stored before this batch
	var order []callKey
	inserts := map[callKey]*meter.Call{}
	var completes, revokes []op
	for _, o := range ops {
		mb := meters[o.meter]
		if mb == nil {
			next, ok, err := s.storedNextID(o.meter)
			if err != nil {
				return err
			}
			if !ok {
				continue // the meter is gone: drop its operations
			}
			mb = &meterBatch{nextID: next}
			meters[o.meter] = mb
			stored[o.meter] = next
		}
		switch o.kind {
		case opGrant:
			if o.call.ID < stored[o.meter] {
				continue // replayed: already stored
			}
			k := callKey{o.meter, o.call.ID}
			if _, dup := inserts[k]; dup {
				continue
			}
			c := o.call
			inserts[k] = &c
			order = append(order, k)
			mb.grants++
			mb.nextID = max(mb.nextID, c.ID+1)
			mb.tat, mb.hasTAT = o.tat, true
		case opComplete:
			if c, ok := inserts[callKey{o.meter, o.call.ID}]; ok {
				c.DoneAt, c.Expired = o.call.DoneAt, o.call.Expired
			} else {
				completes = append(completes, o)
			}
		case opRevoke:
			k := callKey{o.meter, o.call.ID}
			if _, ok := inserts[k]; ok {
				delete(inserts, k) // never reaches SQLite
				mb.grants--
			} else {
				revokes = append(revokes, o)
			}
		case opPrune:
			if !mb.pruned || o.cutoff.After(mb.cutoff) {
				mb.cutoff, mb.byGrant = o.cutoff, o.byGrant
			}
			mb.pruned = true
		}
	}
	for _, k := range order {
		c, ok := inserts[k]
		if !ok {
			continue // revoked
		}
		if mb := meters[k.meter]; mb.pruned && !c.InProgress() && prunable(*c, mb.cutoff, mb.byGrant) {
			continue
		}
		h := c.Holder
		if _, err := exec(s.st.grantCall, k.meter, int64(c.ID), nsOf(c.GrantedAt), nsOf(c.DoneAt), boolInt(c.Expired), h.PID, h.UID, h.GID, h.Cmd); err != nil {
			return err
		}
	}
	for _, o := range completes {
		if _, err := exec(s.st.complete, nsOf(o.call.DoneAt), boolInt(o.call.Expired), o.meter, int64(o.call.ID)); err != nil {
			return err
		}
	}
	for _, o := range revokes {
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
	for name, mb := range meters {
		if mb.grants != 0 || mb.nextID > stored[name] {
			tat := s.st.keepTAT
			args := []any{int64(mb.nextID), mb.grants, name}
			if mb.hasTAT {
				tat = s.st.grantMeter
				args = append([]any{nsOf(mb.tat)}, args...)
			}
			if _, err := exec(tat, args...); err != nil {
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
		}
	}
	return nil
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
