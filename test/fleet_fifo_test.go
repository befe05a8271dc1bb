package test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// The fleet's FIFO must-show: nine waiters queued alternately on three
// hosts behind one holder (concurrency=1) are granted strictly in arrival
// order, and each handoff, every one from one host to another, is pushed:
// the releasing host's store call wakes the next host's waiter, nobody
// polls. That is proven by counting the store's calls while the nine wait
// for 2 s: nothing but each host's lease renewal (every lease/3, 3.3 s) may
// reach it, where a daemon polling even every 500 ms would make a dozen.
// A handoff is measured from the clients' own logs, the next grant minus
// the previous release (taken right before its close, so it includes the
// close itself): a few ms on an idle machine, logged, and asserted only
// with margins that load cannot eat, against a daemon that found grants at
// its lease renewals: the median under 500 ms, none waiting 5 s.
func TestFleetFIFOHandoff(t *testing.T) {
	t.Parallel()
	const spec = "concurrency=1"
	srv, ds := fleet(t, 3, nil, "q="+spec)
	holder := pyHold(t, ds[0].path("q", "acquire"))
	holder.waitOutput(t, "held ")
	logs := t.TempDir()
	var arrival []string
	var procs []*proc
	for i := range 9 {
		d := ds[(i+1)%3] // h2, h3, h1, h2, …: each handoff changes host
		kind := []string{"go", "python", "exec"}[i%3]
		id := fmt.Sprintf("w%d-%s-%s", i, d.host(), kind)
		procs = append(procs, startClient(t, d.path("q", "acquire"), logs, client{kind: kind, id: id, calls: 1, hold: 10 * time.Millisecond}))
		if kind == "python" {
			id += "-t0"
		}
		arrival = append(arrival, id)
		ds[0].waitStatus(t, "q", "waiting", strconv.Itoa(i+1))
	}
	requireQuietStore(t, srv, 2*time.Second, 3)
	released := holder.release(t)
	for _, p := range procs {
		p.requireSuccess(t, pollTimeout)
	}
	calls := readCalls(t, logs)
	require.Len(t, calls, 9)
	require.Empty(t, fifoViolation(calls, arrival), "arrival order %q\ncalls:\n%s", arrival, formatCalls(calls))
	for i, c := range calls {
		require.Equal(t, arrival[i], c.client, "grant %d\ncalls:\n%s", i+1, formatCalls(calls))
	}
	checkCalls(t, calls, parseLimits(t, spec))

	var handoffs []time.Duration
	prev := released
	for _, c := range calls {
		require.False(t, c.grant.Before(prev.Add(-tolerance(0))), "%s granted %v before the previous call's release\ncalls:\n%s",
			c.client, prev.Sub(c.grant), formatCalls(calls))
		handoffs = append(handoffs, c.grant.Sub(prev))
		prev = c.release
	}
	all := append([]time.Duration(nil), handoffs...)
	p50, worst := percentile(all, 50), percentile(all, 100)
	t.Logf("FIGURE fleet handoff: 9 cross-host handoffs p50 %s, max %s (each: %s)\ncalls:\n%s",
		fmtMS(p50), fmtMS(worst), fmtDurations(handoffs), formatCalls(calls))
	require.Less(t, p50, 500*time.Millisecond, "median cross-host handoff (%s)", fmtDurations(handoffs))
	require.Less(t, worst, loaded(0), "slowest cross-host handoff (%s)", fmtDurations(handoffs))
}

// requireQuietStore requires that, over the next interval (the length of
// what is measured, not a synchronization), the store runs at most two
// calls per host of a fleet of n: their lease renewals, every lease/3.
func requireQuietStore(t *testing.T, srv *redistest.Server, interval time.Duration, n int) {
	t.Helper()
	before := storeCalls(t, srv)
	time.Sleep(interval)
	got := storeCalls(t, srv) - before
	t.Logf("FIGURE fleet idle waiters: %d store calls in %v from %d hosts with waiters", got, interval, n)
	require.LessOrEqual(t, got, 2*n, "store calls in %v while every waiter waits for a release: the daemons poll", interval)
}

// On a window meter the store, not a release, decides when the head may
// go: nine waiters queued alternately on three hosts behind a full 1/200ms
// window are granted in arrival order, 200 ms apart (strict: the window
// rule), each close to the instant its window frees: the head's host sleeps
// until that instant, nobody polls. Lateness (grant minus the earliest
// instant the window allowed it, from the clients' logs) is a few ms on
// an idle machine (logged); a daemon that missed the instant and waited
// for its lease renewal (every lease/3, 3.3 s by default) to try again
// would be late by seconds, so the median must stay under 500 ms, a margin
// load cannot eat, and none may be late by loaded(0).
func TestFleetFIFOWindow(t *testing.T) {
	t.Parallel()
	const spec = "1/200ms"
	_, ds := fleet(t, 3, nil, "q="+spec)
	holder := pyHold(t, ds[0].path("q", "acquire"))
	holder.waitOutput(t, "held ")
	logs := t.TempDir()
	var arrival []string
	var procs []*proc
	for i := range 9 {
		d := ds[(i+1)%3]
		id := fmt.Sprintf("w%d-%s", i, d.host())
		procs = append(procs, startClient(t, d.path("q", "acquire"), logs, client{kind: "go", id: id, calls: 1}))
		arrival = append(arrival, id)
		ds[0].waitStatus(t, "q", "waiting", strconv.Itoa(i+1))
	}
	released := holder.release(t)
	for _, p := range procs {
		p.requireSuccess(t, pollTimeout)
	}
	calls := readCalls(t, logs)
	require.Len(t, calls, 9)
	require.Empty(t, fifoViolation(calls, arrival), "arrival order %q\ncalls:\n%s", arrival, formatCalls(calls))
	lim := parseLimits(t, spec)
	checkCalls(t, calls, lim)
	var late []time.Duration
	prev := released
	for _, c := range calls {
		late = append(late, c.grant.Sub(prev.Add(200*time.Millisecond)))
		prev = c.release
	}
	sorted := append([]time.Duration(nil), late...)
	p50, worst := percentile(sorted, 50), percentile(sorted, 100)
	t.Logf("FIGURE fleet window handoff: 9 cross-host grants on %s, lateness p50 %s, max %s (each: %s)\ncalls:\n%s",
		spec, fmtMS(p50), fmtMS(worst), fmtDurations(late), formatCalls(calls))
	require.Less(t, p50, 500*time.Millisecond, "median lateness (%s)", fmtDurations(late))
	require.Less(t, worst, loaded(0), "latest grant (%s)", fmtDurations(late))
}
