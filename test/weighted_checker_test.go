package test

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The units-window checker: weighted calls (acquire@N, design §7) as their
// clients logged them, against a meter's units:N/PER windows.

// unitCall is one weighted call as its client logged it.
type unitCall struct {
	call
	cost   int64
	actual int64 // -1: never settled (the estimate stands)
	// settleFrom and settleTo bracket the settlement write: taken right
	// before it and right after it returned (zero if never settled).
	settleFrom, settleTo time.Time
}

func (c unitCall) settled() bool { return c.actual >= 0 }

// units is what the call finally counts: its actual cost once settled.
func (c unitCall) units() int64 {
	if c.settled() {
		return c.actual
	}
	return c.cost
}

// parseUnitCall parses a weighted client's log line: the seven fields of
// parseCall, then "COST ACTUAL|- SETTLE_FROM_NS|- SETTLE_TO_NS|-".
func parseUnitCall(line string) (unitCall, error) {
	f := strings.Fields(line)
	if len(f) != 11 {
		return unitCall{}, fmt.Errorf("want 11 fields: <client-id> <grant_ns> <release_ns> <call-id> <closed_ns> <daemon_grant_ns> <asked_ns> <cost> <actual> <settle_from_ns> <settle_to_ns>")
	}
	c, err := parseCall(strings.Join(f[:7], " "))
	if err != nil {
		return unitCall{}, err
	}
	u := unitCall{call: c, actual: -1}
	if u.cost, err = strconv.ParseInt(f[7], 10, 64); err != nil {
		return unitCall{}, err
	}
	if f[8] == "-" {
		if f[9] != "-" || f[10] != "-" {
			return unitCall{}, fmt.Errorf("settlement times without an actual cost")
		}
		return u, nil
	}
	if u.actual, err = strconv.ParseInt(f[8], 10, 64); err != nil {
		return unitCall{}, err
	}
	from, err := strconv.ParseInt(f[9], 10, 64)
	if err != nil {
		return unitCall{}, err
	}
	to, err := strconv.ParseInt(f[10], 10, 64)
	if err != nil {
		return unitCall{}, err
	}
	u.settleFrom, u.settleTo = time.Unix(0, from), time.Unix(0, to)
	if u.settleFrom.Before(u.grant) || u.settleTo.Before(u.settleFrom) || u.release.Before(u.settleTo) {
		return unitCall{}, fmt.Errorf("settlement out of order: want grant <= settle_from <= settle_to <= release")
	}
	return u, nil
}

// readUnitCalls reads every *.log in dir, sorted by grant time.
func readUnitCalls(t *testing.T, dir string) []unitCall {
	t.Helper()
	var calls []unitCall
	forLogLines(t, dir, func(f, line string) {
		c, err := parseUnitCall(line)
		require.NoError(t, err, "%s: %q", f, line)
		calls = append(calls, c)
	})
	sortUnitCalls(calls)
	return calls
}

func sortUnitCalls(calls []unitCall) {
	sort.SliceStable(calls, func(i, j int) bool { return calls[i].grant.Before(calls[j].grant) })
}

// plainCalls is the calls without their costs, for the checks of calls.
func plainCalls(calls []unitCall) []call {
	out := make([]call, len(calls))
	for i, c := range calls {
		out[i] = c.call
	}
	return out
}

// unitWindows reads the units:N/PER items of a spec.
func unitWindows(t *testing.T, spec string) []window {
	t.Helper()
	var ws []window
	for _, item := range strings.Split(spec, ",") {
		rest, ok := strings.CutPrefix(item, "units:")
		if !ok || strings.Contains(rest, "=") {
			continue
		}
		n, per, ok := strings.Cut(rest, "/")
		require.True(t, ok, "spec item %q", item)
		nn, err := strconv.Atoi(n)
		require.NoError(t, err, "spec item %q", item)
		d, err := time.ParseDuration(per)
		require.NoError(t, err, "spec item %q (the checker wants explicit durations)", item)
		ws = append(ws, window{nn, d})
	}
	return ws
}

// unitWindowViolations checks the window rule for units (count=completion):
// a call counts its units from its grant until PER after its release, and a
// call is granted only while the units counting plus its cost fit in N. So
// no span of PER holds more than N units by actual cost once settled, except
// for debt: a settlement above the estimate may take a window past N, and
// only calls that come after it must wait.
//
// The daemon's instants are unknown; the checker uses only what the clients'
// logs prove, in the daemon's favour. Each call's interval [grant, release +
// PER] is shrunk by tolerance and lies inside the daemon's. Take the calls
// whose intervals contain the start of one of them: the daemon counted all
// of them at the grant of the one it granted last, call k. There, it
// admitted k's cost on top of each other call i's units, which are at least
// its cost, unless it was settled: at least its actual cost if that is a
// refund (below its cost) whose write began before k's open returned, its
// actual cost if it is debt whose write returned before k's open began.
// k is unknown, but it was granted after every other call was asked for:
// the checker takes the least sum over the calls that could be k. It
// returns one message per violated window.
func unitWindowViolations(calls []unitCall, ws []window) []string {
	var msgs []string
	for _, w := range ws {
		tol := tolerance(w.per)
		ivs := make([]interval, len(calls))
		for i, c := range calls {
			ivs[i] = interval{c.grant.Add(tol), c.release.Add(w.per - tol)}
		}
		for j := range calls {
			var in []int
			for i, iv := range ivs {
				if !iv.from.After(ivs[j].from) && ivs[j].from.Before(iv.to) {
					in = append(in, i)
				}
			}
			if least, k := leastAdmitted(calls, in, tol); least > int64(w.n) {
				msgs = append(msgs, fmt.Sprintf("window units:%d/%v: at least %d units counted when call %d was granted (calls %v)",
					w.n, w.per, least, k+1, ordinals(in)))
				break
			}
		}
	}
	return msgs
}

// leastAdmitted is the least number of units the daemon must have counted,
// the last grant's cost included, when it granted the last of the calls in
// (see unitWindowViolations), and which call that was.
func leastAdmitted(calls []unitCall, in []int, tol time.Duration) (int64, int) {
	least, which := int64(-1), -1
	for _, k := range in {
		if !couldBeLast(calls, in, k, tol) {
			continue
		}
		sum := calls[k].cost
		for _, i := range in {
			if i != k {
				sum += countedAt(calls[i], calls[k], tol)
			}
		}
		if least < 0 || sum < least {
			least, which = sum, k
		}
	}
	return least, which
}

// couldBeLast reports whether call k may have been granted after every
// other call of in: its grant came after each of them was asked for.
func couldBeLast(calls []unitCall, in []int, k int, tol time.Duration) bool {
	for _, i := range in {
		if calls[k].grant.Add(tol).Before(calls[i].asked) {
			return false
		}
	}
	return true
}

// countedAt is the least the daemon counted for c when it granted k: the
// actual cost of a refund whose write began before k's open returned, or of
// debt whose write returned before k's open began; else c's cost.
func countedAt(c unitCall, k unitCall, tol time.Duration) int64 {
	switch {
	case !c.settled():
		return c.cost
	case c.actual < c.cost && !c.settleFrom.After(k.grant.Add(tol)):
		return c.actual
	case c.actual > c.cost && !c.settleTo.Add(tol).After(k.asked):
		return c.actual
	}
	return c.cost
}

// checkUnitCalls asserts the units windows, the call windows and the
// concurrency cap over weighted calls.
func checkUnitCalls(t *testing.T, calls []unitCall, spec string) {
	t.Helper()
	msgs := unitWindowViolations(calls, unitWindows(t, spec))
	plain := plainCalls(calls)
	lim := parseLimits(t, spec)
	msgs = append(msgs, windowViolations(plain, lim)...)
	if m := concurrencyViolation(plain, lim.concurrency); m != "" {
		msgs = append(msgs, m)
	}
	if len(msgs) > 0 {
		t.Errorf("%s\ncalls:\n%s", strings.Join(msgs, "\n"), formatUnitCalls(calls))
	}
}

// formatUnitCalls is formatCalls with each call's cost and settlement.
func formatUnitCalls(calls []unitCall) string {
	if len(calls) == 0 {
		return "(no calls)\n"
	}
	t0 := calls[0].grant
	var b strings.Builder
	for i, c := range calls {
		fmt.Fprintf(&b, "%3d %-10s call %-4d asked %7.3fs grant %7.3fs release %7.3fs cost %d", i+1, c.client, c.id,
			c.asked.Sub(t0).Seconds(), c.grant.Sub(t0).Seconds(), c.release.Sub(t0).Seconds(), c.cost)
		if c.settled() {
			fmt.Fprintf(&b, " settled %d from %.3fs to %.3fs", c.actual, c.settleFrom.Sub(t0).Seconds(), c.settleTo.Sub(t0).Seconds())
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// TestWeightedCheckerHelpers proves, on made-up logs, that the units
// checker catches what it is meant to catch and accepts what the rule
// allows (refunds used at once, debt not yet known); it needs no FUSE.
func TestWeightedCheckerHelpers(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	ms := time.Millisecond
	at := func(client string, cost int64, asked, g, r time.Duration) unitCall {
		return unitCall{call: call{client: client, asked: t0.Add(asked), grant: t0.Add(g), release: t0.Add(r), closed: t0.Add(r)},
			cost: cost, actual: -1}
	}
	settle := func(c unitCall, actual int64, at time.Duration) unitCall {
		c.actual, c.settleFrom, c.settleTo = actual, t0.Add(at-ms), t0.Add(at)
		return c
	}
	ws := unitWindows(t, "units:100/1s,concurrency=0,2/1s")
	require.Equal(t, []window{{100, time.Second}}, ws)
	require.Equal(t, []window{{2, time.Second}}, parseLimits(t, "units:100/1s,2/1s").windows, "parseLimits skips units items")

	// Three calls of 40 asked at once: two at once, the third 1 s after
	// the first completed.
	good := []unitCall{at("a", 40, 0, 1*ms, 100*ms), at("b", 40, 0, 2*ms, 3000*ms), at("c", 40, 0, 1101*ms, 1102*ms)}
	require.Empty(t, unitWindowViolations(good, ws))
	early := append([]unitCall(nil), good...)
	early[2] = at("c", 40, 0, 900*ms, 901*ms)
	require.Len(t, unitWindowViolations(early, ws), 1, "the third call 200 ms early")

	// 90 then 80: the second waits for the first, unless it refunded.
	wait := []unitCall{at("a", 90, 0, 0, 100*ms), at("b", 80, 10*ms, 50*ms, 60*ms)}
	require.Len(t, unitWindowViolations(wait, ws), 1, "80 granted beside an unsettled 90")
	wait[0] = settle(wait[0], 10, 20*ms)
	require.Empty(t, unitWindowViolations(wait, ws), "80 granted once the 90 settled at 10")
	wait[0] = settle(wait[0], 30, 20*ms)
	require.Len(t, unitWindowViolations(wait, ws), 1, "a refund to 30 leaves no room for 80")
	wait[0] = settle(wait[0], 10, 90*ms)
	require.Len(t, unitWindowViolations(wait, ws), 1, "80 granted before the 90 settled at 10")

	// Debt: 50 settled at 80, then 50 more asked for within the window.
	debt := []unitCall{settle(at("a", 50, 0, 0, 100*ms), 80, 50*ms), at("b", 50, 60*ms, 70*ms, 80*ms)}
	require.Len(t, unitWindowViolations(debt, ws), 1, "a call asked after the debt was written granted within it")
	debt[1] = at("b", 50, 30*ms, 40*ms, 80*ms)
	require.Empty(t, unitWindowViolations(debt, ws), "a call granted before the debt was known")
	debt[1] = at("b", 50, 30*ms, 1200*ms, 1210*ms)
	require.Empty(t, unitWindowViolations(debt, ws), "a call granted once the debt stopped counting")

	u, err := parseUnitCall("sh 10 40 3 50 - 5 30 12 20 30")
	require.NoError(t, err)
	require.Equal(t, int64(30), u.cost)
	require.Equal(t, int64(12), u.units())
	require.Equal(t, time.Unix(0, 30), u.settleTo)
	u, err = parseUnitCall("go 10 40 3 50 9 5 30 - - -")
	require.NoError(t, err)
	require.Equal(t, int64(30), u.units())
	for _, bad := range []string{"x 10 40 3 50 - 5 30", "x 10 40 3 50 - 5 30 - 1 -", "x 10 40 3 50 - 5 30 12 20 50",
		"x 10 40 3 50 - 5 30 12 5 20", "x 10 40 3 50 - 5 y - - -"} {
		_, err = parseUnitCall(bad)
		require.Error(t, err, "parseUnitCall(%q)", bad)
	}
}
