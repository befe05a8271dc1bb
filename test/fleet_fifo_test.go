package test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The fleet's FIFO must-show: nine waiters queued alternately on three
// hosts behind one holder (concurrency=1) are granted strictly in arrival
// order, and each handoff, every one from one host to another, takes
// milliseconds: the releasing host's store call wakes the next host's
// waiter, nobody polls. A handoff is measured from the clients' own logs,
// the next grant minus the previous release (taken right before its close,
// so it includes the close itself). The median is a few ms on an idle
// machine; a daemon that polled or waited for a timer would take hundreds
// of ms at every handoff, so the median must stay under 50 ms and no
// handoff may take a second, margins load cannot eat.
func TestFleetFIFOHandoff(t *testing.T) {
	t.Parallel()
	const spec = "concurrency=1"
	_, ds := fleet(t, 3, nil, "q="+spec)
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
	require.Less(t, p50, 50*time.Millisecond, "median cross-host handoff (%s)", fmtDurations(handoffs))
	require.Less(t, worst, time.Second, "slowest cross-host handoff (%s)", fmtDurations(handoffs))
}

// On a window meter the store, not a release, decides when the head may
// go: nine waiters queued alternately on three hosts behind a full 1/200ms
// window are granted in arrival order, 200 ms apart (strict: the window
// rule), each close to the instant its window frees: the head's host sleeps
// until that instant, nobody polls. Lateness (grant minus the earliest
// instant the window allowed it, from the clients' logs) is a few ms on
// an idle machine; a daemon that missed the instant and waited for its
// lease renewal (every lease/3, 3.3 s by default) to try again would be
// late by seconds, so the median must stay under 50 ms and none may be a
// second late.
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
	require.Less(t, p50, 50*time.Millisecond, "median lateness (%s)", fmtDurations(late))
	require.Less(t, worst, time.Second, "latest grant (%s)", fmtDurations(late))
}
