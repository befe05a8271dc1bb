package test

// How the suite judges time. Read this before adding a timing assertion.
//
// The README's command runs the suite on the user's machine, often a loaded
// 2-core one, where any process (the daemon, a client, the test itself) may
// wait long for a CPU: on such a machine `sleep 0.3` in a shell loop was
// seen to take a second. Load only ever delays. So each assertion about
// time is one of:
//
//  1. A lower bound: a meter never grants early, a max_wait or max_hold
//     never acts before its time. These are the product's guarantee and
//     stay strict: they allow measurement error only (tolerance, in
//     checker_test.go), never load, which cannot make a correct daemon
//     fail them.
//  2. Order, where order proves the property: a flood answered while the
//     holder still holds was not queued behind it; a pair of calls granted
//     closer together than the pairs around it is a pair.
//  3. An upper bound that rules out a specific failure, with a margin load
//     cannot eat: a waiter counted by mistake on 2/10s makes the next
//     caller wait 10 s, so "less than half of that" proves it was not.
//  4. An upper bound on a duration ("no lost capacity", "at once"): a
//     generous ratio of what it takes on an idle machine, loaded(d) (for a
//     shell recipe, whose own processes dominate under load,
//     exampleBound), or of the ideal schedule of the same calls as the
//     clients' own logs show them, capacityBound. They catch a daemon that
//     stalls, polls slowly or loses whole windows; the exact figures are
//     logged (FIGURE lines) and kept in docs/, not asserted.
//
// Deadlines (harness_test.go) only bound how long a broken daemon can stall
// the suite.

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// loaded is the upper bound for something that takes d on an idle machine:
// 3×d plus 5 s.
func loaded(d time.Duration) time.Duration { return 3*d + 5*time.Second }

// capacityBound is the most that calls whose ideal FIFO schedule
// (idealSpan) takes ideal may take on a loaded machine: a quarter more,
// plus 1 s. Each grant that waited may come late by the daemon's and the
// client's scheduling; a daemon that polls once a second, or misses a
// release and waits for its next timer, is late by about half a window per
// grant and exceeds it.
func capacityBound(ideal time.Duration) time.Duration { return ideal + ideal/4 + time.Second }

// spacingViolations checks instants, one per call of a meter each taken
// while its call was in progress (a grant time, or any time between grant
// and release), against the meter's N/PER windows: sorted, any N+1 of them
// span at least PER. That holds for count=completion and count=grant
// alike: if N+1 calls had instants within less than PER, all of them would
// count at the latest of their grants. It returns one message per
// violation.
func spacingViolations(instants []time.Time, lim limits) []string {
	ts := append([]time.Time(nil), instants...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	var msgs []string
	for _, w := range lim.windows {
		for i := 0; i+w.n < len(ts); i++ {
			if gap := ts[i+w.n].Sub(ts[i]); gap < w.per-tolerance(w.per) {
				msgs = append(msgs, fmt.Sprintf("window %d/%v: calls %d to %d within %v", w.n, w.per, i+1, i+w.n+1, gap))
			}
		}
	}
	return msgs
}

// checkSpacing asserts spacingViolations finds nothing.
func checkSpacing(t *testing.T, instants []time.Time, lim limits, what string) {
	t.Helper()
	if msgs := spacingViolations(instants, lim); len(msgs) > 0 {
		t.Errorf("%s: the meter granted early:\n%s\ninstants: %v", what, strings.Join(msgs, "\n"), relTimes(sorted(instants)))
	}
}

func sorted(ts []time.Time) []time.Time {
	out := append([]time.Time(nil), ts...)
	sortTimes(out)
	return out
}

// TestTimingHelpers proves, on made-up instants, that the spacing check
// catches an early grant and accepts a correct schedule; it needs no FUSE.
func TestTimingHelpers(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(ms ...int) []time.Time {
		var out []time.Time
		for _, m := range ms {
			out = append(out, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return out
	}
	lim := parseLimits(t, "2/1s")
	require.Empty(t, spacingViolations(at(0, 50, 1000, 1060, 2001, 2070), lim), "three pairs 1 s apart")
	require.Empty(t, spacingViolations(at(1000, 0, 50, 1060), lim), "unsorted")
	require.Len(t, spacingViolations(at(0, 50, 900, 1060), lim), 1, "a third call 100 ms early")
	require.Empty(t, spacingViolations(at(0, 50, 997), lim), "3 ms early is measurement error")
	require.Len(t, spacingViolations(at(0, 10, 20, 30), parseLimits(t, "2/1s,3/10s")), 3, "both windows")
	require.Equal(t, 6*time.Second, capacityBound(4*time.Second))
	require.Equal(t, 5*time.Second, loaded(0))
}
