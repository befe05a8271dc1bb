package meter

import "time"

// Attr is a meter's access control: the owner and mode of its directory.
type Attr struct {
	Mode uint32 // permission bits, such as 0755
	UID  uint32
	GID  uint32
}

// DefaultAttr is the attr of a meter created without one.
func DefaultAttr() Attr { return Attr{Mode: 0o755} }

// Stored is one meter as a store holds it.
type Stored struct {
	Name   string
	Spec   Spec
	Attr   Attr
	State  State  // calls that may still count, history (Past), TAT, NextID (LocalStore)
	Grants uint64 // grants ever made
	// Version orders the definitions of a meter: a larger one is newer.
	Version uint64
	// Pause is the meter's pause, as stored (LocalStore).
	Pause Pause
}

// LocalStore persists what Local decides, for one daemon (meter/sqlite;
// metertest.MemStore in tests). Local calls it with the meter's lock held,
// so a LocalStore sees the calls of one meter in order. Implementations
// must be safe for concurrent use across meters.
type LocalStore interface {
	// Load returns every stored meter with its calls, in grant order, and
	// its history, with wall-clock times.
	Load() ([]Stored, error)
	// CreateMeter stores a new meter; it fails if the name exists.
	CreateMeter(name string, spec Spec, attr Attr) error
	// SetSpec replaces a meter's spec. (The buckets' TATs that a limits
	// write re-judges are written by the next grant or settlement; a
	// restart clamps a stored TAT to one burst ahead meanwhile.)
	SetSpec(name string, spec Spec) error
	// SetAttr replaces a meter's owner and mode.
	SetAttr(name string, attr Attr) error
	// SetPause stores a meter's pause (zero: none). It must survive a
	// crash of the daemon when it returns.
	SetPause(name string, p Pause) error
	// DeleteMeter removes a meter, its history and its data files.
	DeleteMeter(name string) error
	// Grant persists a grant (with its cost) and the buckets' TATs after
	// it. It must survive a crash of the daemon when it returns, and be
	// durable to the store's sync level then or, for a GroupSyncer, once
	// WaitDurable returns. The call is not granted if it fails.
	Grant(name string, c Call, tat, utat time.Time) error
	// Complete records that a call completed at c.DoneAt. Like Grant it
	// must survive a crash of the daemon when it returns (design §4); one
	// lost to a power loss is counted at the restart, which is later, so
	// the loss errs on the safe side.
	Complete(name string, c Call) error
	// Retire drops the meter's completed calls that completed
	// (count=completion) or were granted (count=grant) at or before
	// cutoff, and replaces the meter's history with past, which holds them
	// (see State.Retire). The store may keep past without copying it: the
	// engine never changes a Past slice it handed over.
	Retire(name string, cutoff time.Time, byGrant bool, past []Past) error
	// Settle records the actual cost of call id and the units bucket's TAT
	// after it; like Grant it must survive a crash of the daemon when it
	// returns.
	Settle(name string, id uint64, actual int64, utat time.Time) error
	// Revoke forgets call id, granted but never used: the open that it was
	// granted to failed afterwards. The call is dropped and the grants
	// counter taken back.
	Revoke(name string, id uint64) error
	// Close flushes pending writes and closes the store.
	Close() error
	// Every store keeps the meters' data files (design §8).
	DataStore
}

// GroupSyncer is implemented by stores (and deciders) that make grants
// durable in groups (one fsync for many grants). Acquire calls WaitDurable
// after a grant, without holding a lock, and fails the open with ErrStore
// if it fails; the call then counts as completed at once, on the safe side.
type GroupSyncer interface {
	WaitDurable() error
}
