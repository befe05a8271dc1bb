package test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// call is one call as its client logged it.
type call struct {
	client  string
	grant   time.Time // taken by the client right after open returned
	release time.Time // taken by the client right before close
	id      int64     // the daemon's call id from the grant line; 0 if unknown
	closed  time.Time // taken once the descriptor was closed; release if not logged
	daemon  time.Time // the grant time the daemon printed (ms); zero if not logged
	asked   time.Time // taken right before the open; zero if not logged
}

// window is one N/PER limit.
type window struct {
	n   int
	per time.Duration
}

// limits is what the checker needs of a meter's spec (count=completion).
type limits struct {
	windows     []window
	concurrency int // 0: unlimited
}

// parseLimits reads the N/PER and concurrency=K items of a spec such as
// "3/1s,concurrency=2"; the other items do not matter to the checker (units
// items are unitWindows' business).
func parseLimits(t *testing.T, spec string) limits {
	t.Helper()
	lim := limits{concurrency: 1}
	for _, item := range strings.Split(spec, ",") {
		if strings.HasPrefix(item, "units:") {
			continue
		}
		if k, ok := strings.CutPrefix(item, "concurrency="); ok {
			n, err := strconv.Atoi(k)
			require.NoError(t, err, "spec item %q", item)
			lim.concurrency = n
			continue
		}
		n, per, ok := strings.Cut(item, "/")
		if !ok || strings.Contains(item, "=") {
			continue
		}
		nn, err := strconv.Atoi(n)
		require.NoError(t, err, "spec item %q", item)
		d, err := time.ParseDuration(per)
		require.NoError(t, err, "spec item %q (the checker wants explicit durations)", item)
		lim.windows = append(lim.windows, window{nn, d})
	}
	return lim
}

// tolerance is how much the checker shrinks each recorded interval at both
// ends before counting overlaps, so that it never blames the daemon for
// measurement error:
//
//   - Clients take the grant time after open returned (late) and the release
//     time before close (early), so a recorded interval already lies inside
//     the daemon's; that error is in the daemon's favor and needs no tolerance.
//   - cat cannot time itself: its grant time is the one the daemon printed,
//     truncated to the millisecond (up to 1 ms early); node's clock has
//     millisecond precision too.
//   - The daemon measures waits on the monotonic clock, clients record wall
//     clock time; under an NTP slew the two drift apart by up to 500 ppm.
//
// Hence 5 ms plus 500 ppm of the window.
func tolerance(per time.Duration) time.Duration {
	return 5*time.Millisecond + per/2000
}

// readCalls reads every *.log in dir, sorted by grant time.
func readCalls(t *testing.T, dir string) []call {
	t.Helper()
	var calls []call
	forLogLines(t, dir, func(f, line string) {
		c, err := parseCall(line)
		require.NoError(t, err, "%s: %q", f, line)
		calls = append(calls, c)
	})
	sortCalls(calls)
	return calls
}

// forLogLines calls each with every non-empty line of every *.log in dir.
func forLogLines(t *testing.T, dir string, each func(file, line string)) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.log"))
	require.NoError(t, err)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if line != "" {
				each(f, line)
			}
		}
	}
}

// parseCall parses "<client-id> <grant_ns> <release_ns>", optionally
// followed by "<call-id>|-", "<closed_ns>", "<daemon_grant_ns>|-" and
// "<asked_ns>".
func parseCall(line string) (call, error) {
	f := strings.Fields(line)
	if len(f) < 3 || len(f) > 7 {
		return call{}, fmt.Errorf("want <client-id> <grant_ns> <release_ns> [call-id [closed_ns [daemon_grant_ns [asked_ns]]]]")
	}
	g, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return call{}, err
	}
	r, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return call{}, err
	}
	c := call{client: f[0], grant: time.Unix(0, g), release: time.Unix(0, r), closed: time.Unix(0, r)}
	if len(f) > 3 && f[3] != "-" {
		if c.id, err = strconv.ParseInt(f[3], 10, 64); err != nil {
			return call{}, err
		}
	}
	if len(f) > 4 {
		cl, err := strconv.ParseInt(f[4], 10, 64)
		if err != nil {
			return call{}, err
		}
		c.closed = time.Unix(0, cl)
	}
	if len(f) > 5 && f[5] != "-" {
		dg, err := strconv.ParseInt(f[5], 10, 64)
		if err != nil {
			return call{}, err
		}
		c.daemon = time.Unix(0, dg)
	}
	if len(f) > 6 {
		a, err := strconv.ParseInt(f[6], 10, 64)
		if err != nil {
			return call{}, err
		}
		c.asked = time.Unix(0, a)
		if c.asked.After(c.grant) {
			return call{}, fmt.Errorf("asked after grant")
		}
	}
	if c.release.Before(c.grant) || c.closed.Before(c.release) {
		return call{}, fmt.Errorf("times out of order: want grant <= release <= closed")
	}
	return c, nil
}

func sortCalls(calls []call) {
	sort.SliceStable(calls, func(i, j int) bool { return calls[i].grant.Before(calls[j].grant) })
}

// formatCalls is a table of calls, times relative to the first grant.
func formatCalls(calls []call) string {
	if len(calls) == 0 {
		return "(no calls)\n"
	}
	t0 := calls[0].grant
	var b strings.Builder
	for i, c := range calls {
		fmt.Fprintf(&b, "%3d %-14s call %-4d grant %9.3fs release %9.3fs held %v",
			i+1, c.client, c.id, c.grant.Sub(t0).Seconds(), c.release.Sub(t0).Seconds(), c.release.Sub(c.grant).Round(time.Microsecond))
		if !c.asked.IsZero() {
			fmt.Fprintf(&b, " asked %.3fs", c.asked.Sub(t0).Seconds())
		}
		if !c.daemon.IsZero() {
			fmt.Fprintf(&b, " daemon granted %.3fs", c.daemon.Sub(t0).Seconds())
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// interval is a stretch of time during which a call counts.
type interval struct{ from, to time.Time }

// maxOverlap is the largest number of intervals that contain one instant,
// and the indexes of those intervals.
func maxOverlap(ivs []interval) (int, []int) {
	best, which := 0, []int(nil)
	for j := range ivs {
		var in []int
		for i, iv := range ivs {
			if !iv.from.After(ivs[j].from) && ivs[j].from.Before(iv.to) {
				in = append(in, i)
			}
		}
		if len(in) > best {
			best, which = len(in), in
		}
	}
	return best, which
}

// windowViolations checks the window rule with count=completion: a call
// counts from its grant until PER after its release, and no instant may see
// more than N calls counting. It returns one message per violated window.
func windowViolations(calls []call, lim limits) []string {
	var msgs []string
	for _, w := range lim.windows {
		tol := tolerance(w.per)
		ivs := make([]interval, len(calls))
		for i, c := range calls {
			ivs[i] = interval{c.grant.Add(tol), c.release.Add(w.per - tol)}
		}
		if n, which := maxOverlap(ivs); n > w.n {
			msgs = append(msgs, fmt.Sprintf("window %d/%v: %d calls count at once (calls %v, tolerance %v)", w.n, w.per, n, ordinals(which), tol))
		}
	}
	return msgs
}

// concurrencyViolation checks that no more than K calls were in progress at
// once; "" if none.
func concurrencyViolation(calls []call, k int) string {
	if k == 0 {
		return ""
	}
	tol := tolerance(0)
	ivs := make([]interval, len(calls))
	for i, c := range calls {
		ivs[i] = interval{c.grant.Add(tol), c.release.Add(-tol)}
	}
	if n, which := maxOverlap(ivs); n > k {
		return fmt.Sprintf("concurrency=%d: %d calls in progress at once (calls %v)", k, n, ordinals(which))
	}
	return ""
}

func ordinals(idx []int) []int {
	out := make([]int, len(idx))
	for i, x := range idx {
		out[i] = x + 1
	}
	return out
}

// checkCalls asserts the window rule and the concurrency cap over calls.
func checkCalls(t *testing.T, calls []call, lim limits) {
	t.Helper()
	msgs := windowViolations(calls, lim)
	if m := concurrencyViolation(calls, lim.concurrency); m != "" {
		msgs = append(msgs, m)
	}
	if len(msgs) > 0 {
		t.Errorf("%s\ncalls:\n%s", strings.Join(msgs, "\n"), formatCalls(calls))
	}
}

// fifoViolation checks that clients, listed in the order in which they
// joined the queue, were granted in that order: by the daemon's call ids
// where both are known, else by grant time. Each client's first call counts.
func fifoViolation(calls []call, arrival []string) string {
	first := map[string]call{}
	for _, c := range calls {
		if _, ok := first[c.client]; !ok {
			first[c.client] = c
		}
	}
	for i := 1; i < len(arrival); i++ {
		a, okA := first[arrival[i-1]]
		b, okB := first[arrival[i]]
		switch {
		case !okA || !okB:
			return fmt.Sprintf("no call logged by %q or %q", arrival[i-1], arrival[i])
		case a.id != 0 && b.id != 0 && a.id >= b.id:
			return fmt.Sprintf("%s arrived before %s but got call %d after call %d", arrival[i-1], arrival[i], a.id, b.id)
		case b.grant.Before(a.grant.Add(-tolerance(0))):
			return fmt.Sprintf("%s arrived before %s but was granted %v later", arrival[i-1], arrival[i], a.grant.Sub(b.grant))
		}
	}
	return ""
}

// span is the time from the first grant to the last release.
func span(calls []call) time.Duration {
	if len(calls) == 0 {
		return 0
	}
	first, last := calls[0].grant, calls[0].release
	for _, c := range calls {
		if c.grant.Before(first) {
			first = c.grant
		}
		if c.release.After(last) {
			last = c.release
		}
	}
	return last.Sub(first)
}

// closedCalls is calls with each release moved to when the client knew its
// descriptor closed: an upper estimate of the daemon's release, for
// computing the best schedule the daemon could have achieved.
func closedCalls(calls []call) []call {
	out := append([]call(nil), calls...)
	for i := range out {
		out[i].release = out[i].closed
	}
	return out
}

// idealSpan is the span of the best schedule a FIFO meter with lim could
// achieve for the same calls (same order, same hold times, each asked for no
// earlier than its client asked): each call is granted at the earliest
// instant at which the concurrency cap and every window admit it. A daemon
// that loses no capacity comes close to it.
func idealSpan(calls []call, lim limits) time.Duration {
	if len(calls) == 0 {
		return 0
	}
	start := calls[0].grant
	var done []interval // scheduled calls: grant, release
	prev, end := start, start
	for _, c := range calls {
		from := prev
		if c.asked.After(from) {
			from = c.asked
		}
		at := from
		for _, cand := range candidates(done, lim, from) {
			if admits(done, lim, cand) {
				at = cand
				break
			}
		}
		iv := interval{at, at.Add(c.release.Sub(c.grant))}
		done = append(done, iv)
		prev = at
		if iv.to.After(end) {
			end = iv.to
		}
	}
	return end.Sub(start)
}

// candidates are the instants, from on, at which admission can change:
// from itself, releases, and releases plus each PER; in order.
func candidates(done []interval, lim limits, from time.Time) []time.Time {
	out := []time.Time{from}
	for _, iv := range done {
		for _, at := range append([]time.Duration{0}, perOf(lim)...) {
			if t := iv.to.Add(at); t.After(from) {
				out = append(out, t)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

func perOf(lim limits) []time.Duration {
	var out []time.Duration
	for _, w := range lim.windows {
		out = append(out, w.per)
	}
	return out
}

// admits reports whether a call may be granted at now, after done.
func admits(done []interval, lim limits, now time.Time) bool {
	inProgress := 0
	for _, iv := range done {
		if now.Before(iv.to) {
			inProgress++
		}
	}
	if lim.concurrency > 0 && inProgress >= lim.concurrency {
		return false
	}
	for _, w := range lim.windows {
		counting := 0
		for _, iv := range done {
			if now.Before(iv.to.Add(w.per)) {
				counting++
			}
		}
		if counting >= w.n {
			return false
		}
	}
	return true
}

// checkCapacity asserts that the calls lost no capacity: they took no
// longer than capacityBound of the ideal FIFO schedule, with each hold
// running until its client knew its descriptor closed (an upper estimate of
// the daemon's release, so that the client's own close latency does not
// count against the daemon). And, strictly, no shorter than the ideal
// schedule with each hold running from the client's grant to its release
// (times inside the daemon's own), which no correct daemon can beat.
func checkCapacity(t *testing.T, calls []call, lim limits) {
	t.Helper()
	closed := closedCalls(calls)
	got, ideal := span(closed), idealSpan(closed, lim)
	t.Logf("%d calls took %v; the ideal FIFO schedule takes %v (%.2fx)\ncalls:\n%s", len(calls), got.Round(time.Millisecond),
		ideal.Round(time.Millisecond), got.Seconds()/ideal.Seconds(), formatCalls(calls))
	if got > capacityBound(ideal) {
		t.Errorf("%d calls took %v, more than capacityBound(%v) = %v: the meter lost capacity", len(calls), got, ideal, capacityBound(ideal))
	}
	if least, held := idealSpan(calls, lim), span(calls); held < least-tolerance(0) {
		t.Errorf("%d calls took %v from the first grant to the last release, less than the ideal FIFO schedule of %v: the meter granted early",
			len(calls), held, least)
	}
}

// TestChecker proves that the checker catches what it is meant to catch, on
// made-up logs; it needs no FUSE.
func TestChecker(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(client string, id int64, g, r time.Duration) call {
		return call{client: client, grant: t0.Add(g), release: t0.Add(r), id: id, closed: t0.Add(r)}
	}
	ms := time.Millisecond
	lim := parseLimits(t, "2/1s,concurrency=1")
	require.Equal(t, limits{windows: []window{{2, time.Second}}, concurrency: 1}, lim)

	// Three pairs of instant calls 1 s apart: what 2/1s allows, and ideal.
	good := []call{
		at("a", 1, 0, 1*ms), at("b", 2, 2*ms, 3*ms),
		at("c", 3, 1001*ms, 1002*ms), at("d", 4, 1003*ms, 1004*ms),
		at("e", 5, 2002*ms, 2003*ms), at("f", 6, 2004*ms, 2005*ms),
	}
	require.Empty(t, windowViolations(good, lim))
	require.Empty(t, concurrencyViolation(good, 1))
	require.Empty(t, fifoViolation(good, []string{"a", "b", "c", "d", "e", "f"}))
	require.InDelta(t, 2.005, span(good).Seconds(), 1e-9)
	require.InDelta(t, 2.004, idealSpan(good, lim).Seconds(), 1e-9)

	// A third call 100 ms too early breaks the window; within tolerance not.
	early := append([]call(nil), good...)
	early[2] = at("c", 3, 900*ms, 901*ms)
	require.Len(t, windowViolations(early, lim), 1)
	early[2] = at("c", 3, 999*ms, 1000*ms)
	require.Empty(t, windowViolations(early, lim), "2 ms early is measurement noise")

	// Counting from completion, not from grant: a call held 500 ms counts
	// until 1.5 s.
	held := []call{at("a", 1, 0, 500*ms), at("b", 2, 501*ms, 502*ms), at("c", 3, 1200*ms, 1201*ms)}
	require.Len(t, windowViolations(held, lim), 1)

	// Overlapping holds break concurrency=1.
	overlap := []call{at("a", 1, 0, 100*ms), at("b", 2, 50*ms, 150*ms)}
	require.NotEmpty(t, concurrencyViolation(overlap, 1))
	require.Empty(t, concurrencyViolation(overlap, 2))
	require.Empty(t, concurrencyViolation(overlap, 0))

	// Arrival order b, a but a was served first.
	require.NotEmpty(t, fifoViolation(good, []string{"b", "a"}))
	require.NotEmpty(t, fifoViolation(good, []string{"a", "zz"}))

	// Lost capacity: the second pair came 1 s late.
	late := append([]call(nil), good[:4]...)
	late[2] = at("c", 3, 2001*ms, 2002*ms)
	late[3] = at("d", 4, 2003*ms, 2004*ms)
	require.Greater(t, span(late)-idealSpan(late, lim), 900*ms)
	// ... unless their clients asked that late: then nothing was lost.
	late[2].asked, late[3].asked = t0.Add(2000*ms), t0.Add(2002*ms)
	require.Less(t, span(late)-idealSpan(late, lim), 5*ms)

	// The original library's scenario: 56 instant calls on
	// 1/500ms,20/10s,50/30s take 32.5 s at best; 8 calls 3.5 s, 24 calls 11.5 s.
	orig := parseLimits(t, "1/500ms,20/10s,50/30s")
	instant := make([]call, 56)
	for i := range instant {
		instant[i] = at("x", int64(i+1), 0, 0)
	}
	require.Equal(t, 3500*ms, idealSpan(instant[:8], orig))
	require.Equal(t, 11500*ms, idealSpan(instant[:24], orig))
	require.Equal(t, 32500*ms, idealSpan(instant, orig))

	c, err := parseCall("py1-t0 1795752903715000000 1795752903716000000 7 1795752903716500000")
	require.NoError(t, err)
	require.Equal(t, call{client: "py1-t0", grant: time.Unix(0, 1795752903715000000), release: time.Unix(0, 1795752903716000000),
		id: 7, closed: time.Unix(0, 1795752903716500000)}, c)
	c, err = parseCall("sh 1 2")
	require.NoError(t, err)
	require.Equal(t, call{client: "sh", grant: time.Unix(0, 1), release: time.Unix(0, 2), closed: time.Unix(0, 2)}, c)
	c, err = parseCall("go 10 20 3 30 9 8")
	require.NoError(t, err)
	require.Equal(t, time.Unix(0, 9), c.daemon)
	require.Equal(t, time.Unix(0, 8), c.asked)
	for _, bad := range []string{"x 2 1 -", "x 1 3 - 2", "x 1", "x 1 2 3 4 5 6 7 8", "x 1 2 y", "x 1 2 3 4 z", "x 1 2 3 4 - 5"} {
		_, err = parseCall(bad)
		require.Error(t, err, "parseCall(%q)", bad)
	}
}
