package rule

import (
	"math"
	"time"
)

// Bounds on what one call can do to a meter (design §7, docs/semantics.md
// "Bounds"). Costs and settlements come from any process allowed to
// acquire, so no sum of them may wrap, on any store: Lua numbers are
// doubles, exact only to 2^53, so the same bound holds in Go.

// MaxUsage is where a window's usage saturates: a units window counts at
// most MaxUsage units however much its calls settled. Every limit is at
// most MaxUnits (2^50), so a saturated window is closed, and a window stays
// closed while what counts against it is over its limit. A saturated sum
// is smaller than the true one: the instant it computes for the next grant
// may come early (the rule then looks again), never late.
const MaxUsage = 1 << 53

// weightIn is what a call (or a group of retired calls) counts against
// window w: calls, or units.
func weightIn(w Window, calls int, units int64) int64 {
	if !w.Units {
		return int64(calls)
	}
	return units
}

// addSat adds b ≥ 0 to a ≥ 0, saturating at limit.
func addSat(a, b, limit int64) int64 {
	if b > limit-a {
		return limit
	}
	return a + b
}

// AddCounter adds b ≥ 0 to a counter of units (the engine's Stats),
// saturating at the largest int64 instead of wrapping.
func AddCounter(a, b int64) int64 { return addSat(a, max(b, 0), math.MaxInt64) }

// bucketCap is the latest TAT a bucket may have at now: one full period
// of debt (Burst emission intervals) beyond empty, so that the next grant
// is at most one period away. A grant never reaches it (the rule admits a
// call only within the burst); a settlement's debt stops there and the
// rest is forgotten (docs/semantics.md, "Bounds"). Interval·Burst fits a
// Duration (checkBucket); twice it saturates at the longest Duration.
func bucketCap(b *Bucket, now time.Time) time.Time {
	period := b.Interval() * time.Duration(b.Burst)
	return now.Add(period + min(period, math.MaxInt64-period))
}

// rejudgeTAT re-expresses the debt a bucket owes at now (tat) under a new
// bucket after a limits write: the tokens owed under old are owed under nu,
// at most its whole capacity. A TAT at or before now owes nothing and stays.
func rejudgeTAT(old, nu *Bucket, tat, now time.Time) time.Time {
	switch {
	case nu == nil:
		return time.Time{} // no bucket, no debt
	case !tat.After(now):
		return tat
	case old != nil && old.Interval() != nu.Interval():
		tokens := (tat.Sub(now) + old.Interval() - 1) / old.Interval()
		if tokens > math.MaxInt64/nu.Interval() {
			return bucketCap(nu, now)
		}
		return earlier(now.Add(tokens*nu.Interval()), bucketCap(nu, now))
	}
	return earlier(tat, bucketCap(nu, now))
}
