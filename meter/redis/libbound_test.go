package redis

import (
	"context"
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

// Bounded steps of rlfs.lua: ageing that moves only what is due, the k-th
// end's walk cap, expiry, a lapse in chunks, a rebuild in chunks, and the
// MORE replies that carry them.

// hot is a meter's hot state as stored (key s), read without a step: what
// the store holds between the steps of a bounded job.
func (l *lib) hot(name string) (on, held float64) {
	l.t.Helper()
	b, err := l.c.Do(context.Background(), l.c.B().Get().Key(keysOf(libPrefix, name)[14]).Build()).AsBytes()
	require.NoError(l.t, err)
	f := func(i int) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b[8*(i-1):])) }
	return f(12), f(15) // ON, HELD (rlfs.lua's FIELDS)
}

// rlfs.lua's budgets: AGE entries walked to age a window, LAPSE calls of
// a lapsed host ended, a step.
const libAge, libLapse = 96, 12

// stepsOf is how many steps of budget b n entries take.
func stepsOf(n, b int) int { return (n + b - 1) / b }

// Ageing moves each window's start past what stopped counting, each entry
// once: across many calls it reads only what is due. A call window moves
// by rank (one ZCOUNT), however many leave; a units window walks the
// entries that leave, and a jump that leaves more than a step's budget
// (libAge) at once is aged in steps (MORE); the rule answers only when all
// is aged.
func TestLibraryAgeing(t *testing.T) {
	for _, spec := range []string{"2000/1s,concurrency=0", "units:2000/1s,concurrency=0"} {
		t.Run(spec, func(t *testing.T) { testAgeing(t, spec, strings.HasPrefix(spec, "units:")) })
	}
}

func testAgeing(t *testing.T, spec string, walks bool) {
	l := newLib(t)
	l.create("m", spec)
	start := l.now
	for i := range 1500 {
		l.now = start + int64(i)*500 // a call every 0.5 ms
		l.release("m", l.grant("m", uint64(i+1), 1))
	}
	require.Equal(t, []int64{1500}, l.view("m").usage, "usage at +750ms")
	for _, tc := range []struct {
		at     time.Duration
		used   int64
		start  int64
		mores  int           // walking
		nextAt time.Duration // the next instant an entry leaves
	}{
		{1000 * time.Millisecond, 1499, 1, 0, 1000500 * time.Microsecond},
		{1100 * time.Millisecond, 1299, 201, stepsOf(200, libAge) - 1, 1100500 * time.Microsecond}, // 200 at once
		{1100 * time.Millisecond, 1299, 201, 0, 1100500 * time.Microsecond},                        // nothing due: nothing read
		{1399 * time.Millisecond, 701, 799, stepsOf(598, libAge) - 1, 1399500 * time.Microsecond},  // 598 at once
		{3 * time.Second, 0, 1500, stepsOf(701, libAge) - 1, 0},                                    // 701 at once
	} {
		if !walks {
			tc.mores = 0
		}
		l.now = start + tc.at.Microseconds()
		ok, _ := l.peek("m", 1)
		require.True(t, ok, "peek at +%v", tc.at)
		require.Equal(t, tc.mores, l.mores, "MORE replies before the rule answered at +%v", tc.at)
		lg := l.ledger("m")
		require.Equal(t, []int64{tc.start}, lg.start, "window's start at +%v", tc.at)
		require.Equal(t, []int64{tc.used}, lg.sum, "window's sum at +%v", tc.at)
		want := int64(0)
		if tc.nextAt != 0 {
			want = start + tc.nextAt.Microseconds()
		}
		require.Equal(t, want, lg.nx, "the next instant an entry leaves, at +%v", tc.at)
	}
}

// The k-th end of a units window walks at most 256 entries from the
// window's start: past them it answers the 256th's end, early, and the
// meter looks again then. A call window finds it by rank, exactly.
func TestLibraryKthWalkCap(t *testing.T) {
	l := newLib(t)
	l.create("u", "units:100000/1s,concurrency=0")
	l.create("c", "1000/1s,concurrency=0")
	start := l.now
	for i := range 400 {
		l.now = start + int64(i)*1000 // a call every ms
		l.release("u", l.grant("u", uint64(i+1), 1))
		l.release("c", l.grant("c", uint64(i+1), 1))
	}
	l.now = start + 500_000
	ok, at := l.peek("u", 100000)
	require.False(t, ok)
	// the 400th unit must leave (at +1.399s); the walk stops at the 256th
	require.Equal(t, start+1_255_000, at, "peek of 100000 units at +500ms: the 256th entry's end")
	l.setSpec("c", "10/1s,concurrency=0") // 400 count, 10 allowed: the 391st must leave
	ok, at = l.peek("c", 1)
	require.False(t, ok)
	require.Equal(t, start+1_390_000, at, "peek of a call at +500ms: the 391st call's end, by rank")
	l.now = start + 1_390_000
	ok, _ = l.peek("c", 1)
	require.True(t, ok, "peek at +1.39s")
}

// Expiry: a call that max_hold ended counts as completed at grant +
// max_hold, once, oldest first; its record stays, held, until released.
func TestLibraryExpiry(t *testing.T) {
	l := newLib(t)
	l.create("m", "concurrency=2,max_hold=1s")
	start := l.now
	a := l.grant("m", 1, 1)
	l.now = start + 500_000
	l.grant("m", 2, 1)
	for _, tc := range []struct {
		at       time.Duration
		on, held int64
	}{
		{999 * time.Millisecond, 2, 0},
		{1200 * time.Millisecond, 1, 1},
		{1600 * time.Millisecond, 0, 2},
	} {
		l.now = start + tc.at.Microseconds()
		lg := l.ledger("m")
		require.Equal(t, tc.on, lg.on, "calls in progress at +%v", tc.at)
		require.Equal(t, tc.held, lg.held, "calls held after max_hold at +%v", tc.at)
	}
	l.release("m", a)
	lg := l.ledger("m")
	require.Equal(t, []int64{0, 1}, []int64{lg.on, lg.held}, "after call 1's release")
	require.Equal(t, int64(2), lg.history, "both calls in the history: they count in no window")
}

// Expiry of more holds than a step's budget goes on in the next steps
// (MORE) until every hold that ended is ended, and only then does the rule
// answer. (It stopped after the first step's budget: the rest stayed in
// progress, concurrency counting them, until some later instant.)
func TestLibraryExpiryInSteps(t *testing.T) {
	l := newLib(t)
	l.create("m", "1000000/1h,concurrency=1000,max_hold=1m")
	for i := range 1000 {
		l.grant("m", uint64(i+1), 1)
	}
	require.EqualValues(t, admRefused, l.acquire("m", 1001, 1).kind, "concurrency=1000: the 1001st waits")
	l.advance(2 * time.Minute)
	id := l.grant("m", 1002, 1)
	require.GreaterOrEqual(t, l.mores, 3, "MORE replies: 1000 holds end, a step's budget at a time")
	lg := l.ledger("m")
	require.Equal(t, []int64{1, 1000}, []int64{lg.on, lg.held}, "in progress: call %d alone; held: the 1000 max_hold ended", id)
	require.Equal(t, []int64{1000}, lg.sum, "the window counts the 1000 completed at their hold's end")
}

// A host whose lease lapsed has its calls ended at the lapse, libLapse a step:
// until the last step the rest are in progress still (the safe side), and
// nothing is decided.
func TestLibraryLapseInChunks(t *testing.T) {
	l := newLib(t)
	l.create("m", "10000/1h,concurrency=0")
	start := l.now
	lease := int64(time.Second / time.Microsecond)
	for i := range 600 {
		r := l.acquireAs("m", "b", lease, uint64(i+1), 1, true)
		require.EqualValues(t, admGranted, r.kind, "host b's call %d", i)
	}
	l.grant("m", 1000, 1) // host a, a long lease
	l.now = start + 2*lease
	m, err := l.send("rlfs2_acquire", "m", "a", "i", strconv.FormatInt(libLease, 10), "1001", "1", "nf", "7,1000,1000", "0")
	require.NoError(t, err)
	require.True(t, isMore(m), "the first step after b's lapse ends libLapse of its 600 calls and replies MORE")
	on, _ := l.hot("m")
	require.EqualValues(t, 600-libLapse+1, on, "calls in progress between the steps: b's other calls, a's")
	r := l.acquireAs("m", "a", libLease, 1001, 1, true)
	require.EqualValues(t, admGranted, r.kind, "a's acquire once b's calls ended")
	// a step that ends libLapse calls replies MORE (there may be more): the
	// last one ends none, then b's waiters
	require.Equal(t, 600/libLapse-1, l.mores, "MORE replies after the first")
	v := l.view("m")
	require.Equal(t, int64(2), v.holders, "holders: a's two calls")
	require.Equal(t, []int64{602}, v.usage, "b's 600 calls count from the lapse, a's 2 in progress")
	require.Equal(t, []string{"a"}, v.hosts, "hosts with a lease")
}

// A limits write rebuilds the ledger in steps of 256 entries: the meter
// decides nothing until it is done (every step replies MORE and helps),
// then counts what it counted, under the new spec.
func TestLibraryRebuildInChunks(t *testing.T) {
	for _, tc := range []struct{ from, to string }{
		{"10000/1h,concurrency=0", "10000/2h,concurrency=0"},                            // same order
		{"10000/1h,concurrency=0", "10000/1h,count=grant,concurrency=0"},                // re-keyed by grant
		{"10000/1h,count=grant,concurrency=0", "units:50000/1h,10000/1h,concurrency=0"}, // re-keyed by completion
	} {
		t.Run(tc.from+" to "+tc.to, func(t *testing.T) {
			l := newLib(t)
			l.create("m", tc.from)
			start := l.now
			for i := range 1500 {
				l.now = start + int64(i)*1000
				l.release("m", l.grant("m", uint64(i+1), 1))
			}
			open := l.grant("m", 5000, 1)
			l.setSpec("m", tc.to)
			m, err := l.send("rlfs2_acquire", "m", "a", "i", strconv.FormatInt(libLease, 10), "5001", "1", "nf", "7,1000,1000", "0")
			require.NoError(t, err)
			require.True(t, isMore(m), "an acquire during the rebuild: MORE, nothing granted")
			var rep stepReply
			l.step(&rep, "rlfs2_rebuild", "m")
			require.GreaterOrEqual(t, l.mores, 1, "the rebuild's steps after the acquire's")
			v := l.view("m")
			for i, used := range v.usage {
				require.Equal(t, int64(1501), used, "window %d after the rebuild: 1500 calls and the open one", i)
			}
			l.release("m", open)
			require.Equal(t, v.grants, int64(1501))
		})
	}
}

// A window widened by a limits write counts again the calls the history
// kept (they are put back into the ledger), as meter.State counts Past.
func TestLibraryWideningPutsBack(t *testing.T) {
	l := newLib(t)
	l.create("m", "1000/100ms,concurrency=0")
	start := l.now
	for i := range 30 {
		l.now = start + int64(i)*1000
		l.release("m", l.grant("m", uint64(i+1), 1))
	}
	l.now = start + 500_000
	l.release("m", l.grant("m", 100, 1)) // retires the 30: they count in no window
	lg := l.ledger("m")
	require.Equal(t, int64(30), lg.history, "groups in the history")
	require.Equal(t, int64(1), lg.ledger, "ledger entries: the last call")
	require.Equal(t, int64(30), l.view("m").retired, "retired calls")
	l.setSpec("m", "1000/1s,concurrency=0")
	v := l.view("m")
	require.Equal(t, []int64{31}, v.usage, "usage under 1000/1s: the 30 put back and the last")
	require.Equal(t, int64(30), v.retired, "retired calls, put back or not")
	st := meter.State{}
	spec := mustSpecT(t, "1000/100ms,concurrency=0")
	for i := range 30 {
		c := st.Grant(spec, at(int64(i)*1000), meter.Holder{})
		st.Complete(c.ID, at(int64(i)*1000))
	}
	c := st.Grant(spec, at(500_000), meter.Holder{})
	st.Complete(c.ID, at(500_000))
	st.Retire(spec, at(500_000), meter.DefaultHistory)
	require.Equal(t, 31, meter.Usage(mustSpecT(t, "1000/1s"), mustSpecT(t, "1000/1s").Windows[0], &st, at(500_000)),
		"meter.State's usage agrees")
}
