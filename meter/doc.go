// Package meter is rlfs's engine: meters, their limits and the rule that
// admits a call, the FIFO queue, grants and completions. It does no I/O of
// its own: a Clock is injected, and stores plug in below a seam.
//
// # What lives here
//
// The rule and its data (the bottom) are package meter/rule: Spec, State
// and AdmitCost (the rule as plain data, the specification), Past, the
// bounds, and the Ledger that keeps a meter's calls for O(1) decisions.
// rule_names.go gives them their meter.* names; meter/rule imports nothing
// of the engine.
//
// The seam (the middle):
//   - decider.go: Decider, one method per step of a call's life (Enqueue,
//     Cancel, Dispatch, Release, Revoke, Settle, View, Subscribe) and the
//     meters' definitions; Events, what a decider tells the host.
//   - local.go, local_steps.go: Local, the decider of one host: it decides
//     in-process with a Ledger and persists through a LocalStore
//     (store.go; meter/sqlite implements it).
//
// The host side (the top), the same whatever decides:
//   - registry.go, events.go: Registry, the live meters over one Decider,
//     and the routing of its events.
//   - meter.go, tickets.go, calls.go: Meter, one meter as this host sees
//     it: the tickets of its waiters (how a waiter waits, wakes, is
//     interrupted, times out, or keeps its place for a retry), the calls it
//     holds (release, revocation, settlement).
//   - snapshot.go, report.go, fleetstatus.go: the pictures `status`,
//     `holders/`, `waiters/` and `rlfs status` show.
//   - data.go: the data files of design §8, kept by the decider's store.
//
// # How a grant is decided
//
// On one host: Local.Enqueue (local_steps.go) brings the meter's Ledger to
// now (Ledger.Advance), asks Ledger.Admit, and grants with Ledger.Grant,
// persisting it before it answers; a release dispatches the queue
// (Local.dispatch). On a fleet: the same steps run in Redis, in rlfs.lua
// (meter/redis), and the store turns the answers into the same Admission
// and Events.
//
// # How a waiter wakes
//
// Every decider answers a queued open with the instant its head may be
// admitted (Admission.Wake, or Events.Wake when it changes); the host arms
// one timer per meter (Meter.armWakeLocked, tickets.go) and asks the
// decider to Dispatch then. Grants reach their ticket through
// Events.Granted (Meter.onGranted). Nobody polls.
//
// # Adding a store
//
// A store that records what Local decides implements LocalStore (as
// meter/sqlite does) and passes metertest.RunStoreTests and
// metertest.RunDeciderTests through OpenLocal. A store that decides itself
// for several hosts implements Decider (as meter/redis does): it keeps the
// Ledger's model (docs/engine.md) in its own atomic steps, classifies its
// failures into the seam's sentinels, and passes metertest.RunDeciderTests
// and a differential test against Local (meter/redis's difftrace_test.go
// is the model).
package meter
