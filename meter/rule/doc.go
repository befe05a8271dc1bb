// Package rule is the bottom of rlfs's engine: the admission rule and the
// data it reads, with no clock, no store and no host.
//
//   - spec.go, units.go: Spec, a meter's limits, parsed from `limits` text.
//   - state.go, past.go: State and AdmitCost, the rule as plain data (the
//     specification every decider is checked against); Past, the grouped
//     history that widened windows count.
//   - bounds.go, sums.go: what one caller can do to a meter: sums that
//     saturate instead of wrapping, bucket debt of at most one period.
//   - ledger*.go, openset.go: Ledger, a meter's calls kept so that a
//     decision costs O(1) amortized or O(log n) in the calls it remembers
//     (docs/engine.md), and Ranked, the set it keeps calls in progress in.
//   - usage.go, restore.go: what status shows of windows and buckets, and
//     how stored times are rebased after a restart.
//
// Everything here is plain data and pure functions of it: every time is
// passed in. The engine (package meter) re-exports the names its users
// need (meter.Spec, meter.Call, meter.ParseSpec, …); rlfs.lua keeps the
// same rule in Redis, and meter/redis's differential tests hold the two
// equal.
package rule
