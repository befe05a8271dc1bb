package meter

import (
	"time"

	"github.com/rlfs/rlfs/meter/rule"
)

// The rule and its data live in meter/rule (the bottom of the engine: no
// clock, no store, no host); these are its names as the engine's users know
// them, so that fsnode, the stores and the command speak of meter.Spec,
// meter.Call and meter.ParseSpec.

type (
	Spec        = rule.Spec
	Window      = rule.Window
	Bucket      = rule.Bucket
	CountMode   = rule.CountMode
	Holder      = rule.Holder
	Call        = rule.Call
	State       = rule.State
	Decision    = rule.Decision
	Past        = rule.Past
	Ledger      = rule.Ledger
	WindowUsage = rule.WindowUsage
	BucketUsage = rule.BucketUsage
)

const (
	CountCompletion = rule.CountCompletion
	CountGrant      = rule.CountGrant
	DefaultHistory  = rule.DefaultHistory
	MaxItems        = rule.MaxItems
	MaxPast         = rule.MaxPast
	MaxRetire       = rule.MaxRetire
	MaxUnits        = rule.MaxUnits
	MaxUsage        = rule.MaxUsage
	MaxWalk         = rule.MaxWalk
)

var (
	ErrNeedsRate = rule.ErrNeedsRate
	ErrTooBig    = rule.ErrTooBig
)

// ParseSpec reads a spec (rule.ParseSpec).
func ParseSpec(text string) (Spec, error) { return rule.ParseSpec(text) }

// DefaultSpec is the spec of a meter created without items (rule.DefaultSpec).
func DefaultSpec() Spec { return rule.DefaultSpec() }

// ParseDuration reads a Go duration or days (rule.ParseDuration).
func ParseDuration(s string) (time.Duration, error) { return rule.ParseDuration(s) }

// ParseCost reads a cost in units (rule.ParseCost).
func ParseCost(s string) (int64, error) { return rule.ParseCost(s) }

// FormatTime prints t in UTC, RFC 3339 with milliseconds (rule.FormatTime).
func FormatTime(t time.Time) string { return rule.FormatTime(t) }

// Admit applies the rule to a call of cost 1 (rule.Admit).
func Admit(spec Spec, st *State, now time.Time) Decision { return rule.Admit(spec, st, now) }

// AdmitCost applies the rule to a call of cost units (rule.AdmitCost).
func AdmitCost(spec Spec, st *State, now time.Time, cost int64) Decision {
	return rule.AdmitCost(spec, st, now, cost)
}

// Usage is what counts against window w at now (rule.Usage).
func Usage(spec Spec, w Window, st *State, now time.Time) int { return rule.Usage(spec, w, st, now) }

// Buckets pictures spec's token buckets at now (rule.Buckets).
func Buckets(spec Spec, tat, utat, now time.Time) []BucketUsage {
	return rule.Buckets(spec, tat, utat, now)
}

// NewLedger returns an empty ledger (rule.NewLedger).
func NewLedger(spec Spec, history time.Duration) *Ledger { return rule.NewLedger(spec, history) }

// RestoreLedger makes a stored meter's ledger after a restart (rule.RestoreLedger).
func RestoreLedger(spec Spec, st State, now time.Time, history time.Duration) (*Ledger, []Call) {
	return rule.RestoreLedger(spec, st, now, history)
}
