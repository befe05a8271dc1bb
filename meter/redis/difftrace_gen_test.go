package redis

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// The traces of TestDifferentialTrace: random ones, drawn from a case's
// PCG stream, and scripted ones that pin the divergences the random ones
// found.

// newRandomTrace opens random trace i: its scale (typical duration), its
// history horizon, its first spec and its length.
func newRandomTrace(t *testing.T, srv *redistest.Server, i int) *trace {
	r := caseRand(i)
	scale := []int64{200, 1000, 50_000}[r.IntN(3)]
	history := us(scale * []int64{5, 40, 1_000_000}[r.IntN(3)])
	length, churnW := 60+r.IntN(120), 4
	if i%6 == 5 {
		// Long, with busy spells and a long history: calls retire, the
		// history grows (past meter.MaxPast groups in some: compacted),
		// later widenings count it. (Every call through the library
		// parses the whole history: a long history makes it slow.)
		length, churnW, history = 200+r.IntN(100), 10, us(scale*1_000_000)
	}
	gen := &trace{r: r, scale: scale, hold: r.IntN(2) == 0, units: r.IntN(2) == 0}
	name := fmt.Sprintf("trace -diff.seed=%d -diff.case=%d (go test ./meter/redis/ -run 'TestDifferentialTrace$' -diff.seed=%d -diff.case=%d -v)", *diffSeed, i, *diffSeed, i)
	tr := openTrace(t, srv, name, fmt.Sprintf("diff%d-%d", *diffSeed, i), gen.genSpec(), history)
	tr.r, tr.scale, tr.hold, tr.units, tr.length, tr.churnW = r, scale, gen.hold, gen.units, length, churnW
	return tr
}

func (tr *trace) run() {
	for tr.step = 1; tr.step <= tr.length && tr.goBug == ""; tr.step++ {
		tr.op()
		tr.settle()
	}
}

// op applies one random operation to both sides: acquires (weighted in a
// trace with units items), releases, revocations, settlements, interrupted
// waits, limits writes, pauses and their lifts, busy spells, time.
func (tr *trace) op() {
	switch k := tr.r.IntN(100); {
	case k < 14:
		tr.nonblockingCost(tr.cost())
	case k < 30:
		tr.blockingCost(tr.cost())
	case k < 50 && len(tr.held) > 0:
		tr.release(tr.pickHeld())
	case k < 53 && len(tr.held) > 0:
		tr.revoke(tr.pickHeld())
	case k < 56 && len(tr.held) > 0 && tr.units:
		tr.settleCall(tr.pickHeld(), tr.r.Int64N(8))
	case k < 59 && len(tr.waiters) > 0:
		if w := tr.waiters[tr.r.IntN(len(tr.waiters))]; !w.left {
			tr.interrupt(w)
		}
	case k < 59: // nothing held, nobody waits
		tr.advance(tr.randomAdvance())
	case k < 64:
		tr.setSpec(tr.mutate())
	case k < 67:
		tr.pause(tr.dur(4)) // extends the pause in force, or does not shorten it
	case k < 68:
		tr.pause(0) // lifts it
	case k < 68+tr.churnW:
		tr.churn()
	default:
		tr.advance(tr.randomAdvance())
	}
}

// cost draws the cost of an acquire: 1 without units items; else 0 to 5,
// and now and then more than a units item may ever admit.
func (tr *trace) cost() int64 {
	switch {
	case !tr.units:
		return 1
	case tr.r.IntN(20) == 0:
		return 13 + tr.r.Int64N(8)
	}
	return tr.r.Int64N(6)
}

func (tr *trace) pickHeld() uint64 {
	if tr.r.IntN(2) == 0 {
		return tr.held[0] // the oldest: later calls queue behind it
	}
	return tr.held[tr.r.IntN(len(tr.held))]
}

// randomAdvance is a few microseconds, around the scale, far (calls stop
// counting and retire), or up to the Go engine's next wake-up or just
// before it.
func (tr *trace) randomAdvance() time.Duration {
	r := tr.r
	switch k := r.IntN(10); {
	case k < 2:
		return us(1 + r.Int64N(5))
	case k < 6:
		return tr.dur(3)
	case k < 7:
		return tr.dur(60)
	default:
		next, ok := tr.goClk.NextTimer()
		if !ok {
			return tr.dur(2)
		}
		d := next.Sub(tr.goClk.Now())
		if k == 9 && d > time.Microsecond {
			d -= time.Microsecond
		}
		return d
	}
}

// churn makes short calls one after the other, as a busy meter does: they
// retire into the history, which grows.
func (tr *trace) churn() {
	for range 5 + tr.r.IntN(25) {
		if tr.goBug != "" {
			return
		}
		tr.nonblocking()
		if n := len(tr.held); n > 0 && tr.r.IntN(4) > 0 {
			tr.release(tr.held[n-1])
		}
		if len(tr.waiters) > 0 {
			tr.settle() // a release may grant a waiter, and moves the wake instant
		}
		tr.advance(us(1 + tr.r.Int64N(tr.scale)))
	}
}

// dur draws a duration around the trace's scale, in whole microseconds.
func (tr *trace) dur(k int64) time.Duration { return us(1 + tr.r.Int64N(k*tr.scale)) }

// genSpec draws a spec: 0-3 windows, concurrency 0-3, maybe a bucket
// (its PER a multiple of N microseconds, see genSpec in
// differential_test.go), count=completion or grant, maybe max_hold.
func (tr *trace) genSpec() meter.Spec {
	r := tr.r
	s := meter.Spec{Concurrency: r.IntN(4)}
	for range r.IntN(4) {
		s.Windows = append(s.Windows, meter.Window{N: 1 + r.IntN(3), Per: tr.dur(8)})
	}
	if r.IntN(4) == 0 {
		s.Bucket = tr.genBucket()
	}
	if r.IntN(3) == 0 {
		s.Count = meter.CountGrant
	}
	if tr.hold && r.IntN(2) == 0 {
		s.MaxHold = tr.dur(6)
	}
	if tr.units {
		tr.addUnits(&s)
	}
	return canonical(s, tr.genSpec)
}

// addUnits adds units items to s: a units window (N 1 to 12), maybe a
// second one, maybe a units bucket.
func (tr *trace) addUnits(s *meter.Spec) {
	r := tr.r
	for range 1 + r.IntN(2) {
		s.Windows = append(s.Windows, meter.Window{N: 1 + r.IntN(12), Per: tr.dur(8), Units: true})
	}
	if r.IntN(3) == 0 {
		n := 1 + r.IntN(8)
		s.UnitBucket = &meter.Bucket{N: n, Per: us(int64(n) * (1 + r.Int64N(tr.scale))), Burst: 1 + r.IntN(12)}
	}
}

func (tr *trace) genBucket() *meter.Bucket {
	n := 1 + tr.r.IntN(3)
	return &meter.Bucket{N: n, Per: us(int64(n) * (1 + tr.r.Int64N(2*tr.scale))), Burst: 1 + tr.r.IntN(3)}
}

// canonical is s as a limits write leaves it, or other() if s is invalid.
func canonical(s meter.Spec, other func() meter.Spec) meter.Spec {
	spec, err := meter.ParseSpec(strings.ReplaceAll(s.String(), ",", "\n"))
	if err != nil {
		return other()
	}
	return spec
}

// mutate changes one item of the spec: a window widened (longer, or more
// calls) or narrowed, one added or dropped, concurrency, the bucket, the
// count mode or max_hold; or replaces the spec.
func (tr *trace) mutate() meter.Spec {
	r := tr.r
	s := tr.spec
	s.Windows = slices.Clone(s.Windows)
	switch k := r.IntN(10); {
	case k <= 1 && len(s.Windows) > 0: // widen
		w := &s.Windows[r.IntN(len(s.Windows))]
		if r.IntN(3) == 0 {
			w.N++
		} else {
			w.Per = min(w.Per*time.Duration(2+r.IntN(30)), time.Hour) // the lease (1000h) never lapses
		}
	case k == 2 && len(s.Windows) > 0: // narrow
		w := &s.Windows[r.IntN(len(s.Windows))]
		if w.N > 1 && r.IntN(3) == 0 {
			w.N--
		} else {
			w.Per = max(time.Microsecond, (w.Per / time.Duration(2+r.IntN(4))).Truncate(time.Microsecond))
		}
	case k == 3:
		s.Windows = append(s.Windows, meter.Window{N: 1 + r.IntN(4), Per: tr.dur(100), Units: tr.units && r.IntN(2) == 0})
	case k == 4 && len(s.Windows) > 0:
		j := r.IntN(len(s.Windows))
		s.Windows = slices.Delete(s.Windows, j, j+1)
	case k == 5:
		s.Concurrency = r.IntN(4)
	case k == 6:
		s.Count = 1 - s.Count
	case k == 7:
		if s.Bucket != nil && r.IntN(2) == 0 {
			s.Bucket = nil
		} else {
			s.Bucket = tr.genBucket()
		}
	case k == 8 && tr.hold:
		if s.MaxHold > 0 && r.IntN(3) == 0 {
			s.MaxHold = 0
		} else {
			s.MaxHold = tr.dur(6)
		}
	default:
		return tr.genSpec()
	}
	return canonical(s, tr.genSpec)
}

// traceScripts pin what the random traces found, one operation a line:
// "limits SPEC", "nb" (a nonblocking acquire; "nb refused" or "nb N" also
// says what the Go side must answer), "wait" (a blocking acquire, waiter
// wSTEP), "release ID", "revoke ID", "interrupt wSTEP", "advance D", and
// "churn N D" (N times: a nonblocking acquire, its release, D later);
// "nb@C" and "wait@C" acquire a call of cost C, "settle ID N" sets call
// ID's actual cost; "pause D" pauses the meter for D, "lift" lifts it.
var traceScripts = []struct {
	name    string
	history time.Duration
	jump    bool // the Go side's clock jumps (see trace.advance)
	ops     []string
}{
	{
		// Issue 15: 8,200 settlements of 2^50 on a units window of 2^50
		// wrapped its sum (Go int64) and granted everything. Usage
		// saturates at 2^53 on both sides (a call counts at most N+1), and
		// the window stays closed, to acquire@0 too.
		name: "UnitsSumSaturates", history: meter.DefaultHistory, ops: append(append([]string{
			"limits units:1125899906842624/1h,concurrency=0",
			"nb@0 1", "nb@0 2", "nb@0 3", "nb@0 4", "nb@0 5", "nb@0 6", "nb@0 7", "nb@0 8", "nb@0 9", "nb@0 10",
		}, repeatOps(10, "settle %d 1125899906842624")...),
			"nb@1125899906842624 refused", "nb@0 refused", "release 1", "release 2", "advance 30m", "nb@1 refused",
		),
	},
	{
		// Issue 15: one settlement of 2^50 on units:rate=100/1s put the
		// bucket's next grant in the year 2232 (Go), and a TAT above
		// int64 in Redis. Debt stops one full period beyond empty; a
		// settlement back down refunds only what was charged; a limits
		// write owes the debt in tokens under the new rate.
		name: "UnitsBucketDebtBounded", history: meter.DefaultHistory, ops: []string{
			"limits units:rate=100/1s,concurrency=0",
			"nb@10 1",
			"settle 1 1125899906842624",
			"nb@1 refused",
			"settle 1 0",
			"nb@100 2",
			"settle 2 1125899906842624",
			"limits units:rate=10/1s,concurrency=0",
			"advance 1s",
			"nb@1 refused",
			"limits units:rate=1000/1s,units:burst=10,concurrency=0",
			"nb@1 refused",
			"advance 1ms",
			"nb@1 3",
			"revoke 3",
			"settle 2 5",
			"nb@10 4",
		},
	},
	{
		// Issue 15: a limits write that shrank a units item below a
		// waiter's cost left it in the store's queue for good (the Go
		// engine fails it with E2BIG), and every call behind it waited.
		name: "ShrunkUnitsRefusesWaiter", history: meter.DefaultHistory, ops: []string{
			"limits units:10/1s,concurrency=0",
			"nb@5 1",
			"wait@8",
			"wait@1",
			"limits units:6/1s,concurrency=0",
			"release 1",
			"advance 1s",
			"nb@1 3",
			"nb@5 refused",
		},
	},
	{
		// rlfs1_revoke took back a call that max_hold had ended: it then
		// counted nothing, where the Go engine keeps it counting as
		// completed (and, unless something had looked at the meter since
		// max_hold ran out, the Go engine took it back too).
		name: "RevokeAfterMaxHold", history: meter.DefaultHistory, ops: []string{
			"limits 1/1s,concurrency=0,max_hold=10ms",
			"nb 1",
			"advance 15ms",
			"revoke 1",
			"nb refused",
			"release 1",
			"advance 995ms",
			"nb 2",
		},
	},
	{
		// A limits write that lifted or lengthened max_hold made the
		// library hold again a call that max_hold had ended (its end was
		// computed from the spec in force); the Go engine had counted it
		// completed when it was held longer than max_hold (if something
		// looked at the meter then: now always, SetSpec expires first).
		name: "MaxHoldLiftedAfterItEndedAHold", history: meter.DefaultHistory, ops: []string{
			"limits concurrency=1,max_hold=10ms",
			"nb 1",
			"advance 15ms",
			"limits concurrency=1",
			"nb 2",
			"wait",
			"limits concurrency=1,max_hold=1h",
			"release 2",
			"limits concurrency=1,max_hold=5ms",
			"advance 1ms",
			"nb refused",
			"release 1",
		},
	},
	{
		// The Go engine retires a call that max_hold ended before it is
		// released, like any completed call, and drops it with the history;
		// the library kept it among its calls: a widening then counted it
		// there, and the history (status: retired) differed.
		name: "MaxHoldEndedCallRetires", history: 5 * time.Millisecond, ops: []string{
			"limits 1/1ms,concurrency=0,max_hold=2ms",
			"nb 1",
			"advance 4ms",
			"nb 2",
			"release 2",
			"advance 6ms",
			"nb 3",
			"release 3",
			"limits 2/1s,concurrency=0,max_hold=2ms",
			"nb 4",
			"nb refused",
			"release 1",
			"release 4",
		},
	},
	{
		// The pause (design §10): nothing is granted while it holds, an
		// earlier pause does not shorten it, waiters keep their places and
		// go in order when it ends; a lift dispatches at once.
		name: "PauseKeepsFIFOThenLift", history: meter.DefaultHistory, ops: []string{
			"limits 2/10ms,concurrency=0",
			"nb 1",
			"pause 5ms",
			"nb refused",
			"wait",
			"wait",
			"pause 1ms",
			"advance 2ms",
			"nb refused",
			"advance 3ms",
			"pause 1h",
			"wait",
			"advance 10ms",
			"lift",
			"advance 10ms",
		},
	},
	{
		// A pause over weighted calls: a settlement that frees units
		// grants nothing while it holds; its end does.
		name: "PauseOverSettlement", history: meter.DefaultHistory, ops: []string{
			"limits units:10/1s,concurrency=0",
			"nb@8 1",
			"wait@5",
			"pause 20ms",
			"settle 1 2",
			"advance 19ms",
			"nb@1 refused",
			"advance 1ms",
			"nb@1 3",
		},
	},
	{
		// A units window and max_hold: the holds a clock jump ended enter
		// the ledger behind the window, and the window forgets each call
		// once, with its own weight (the Go ledger expired before it aged
		// and lost the count: usage -4; skipped until meter is fixed).
		name: "UnitsExpiryAgesFirst", history: meter.DefaultHistory, jump: true, ops: []string{
			"limits units:11/161ms,concurrency=1,max_hold=122ms",
			"nb@1 1",
			"wait@5",
			"advance 3s",
			"nb@11 3",
		},
	},
	{
		// A release retires at most meter.MaxRetire (32) ledger entries, the
		// oldest, as rlfs.lua's RETIRE: 80 that leave together take three
		// releases; a widening then counts the retired ones and the rest.
		name: "RetireCapped", history: meter.DefaultHistory, ops: []string{
			"limits 100/1ms,concurrency=0",
			"churn 80 1us",
			"advance 10ms",
			"nb 81",
			"release 81",
			"nb 82",
			"release 82",
			"limits 200/1s,concurrency=0",
			"nb 83",
			"release 83",
			"advance 2s",
			"nb 84",
			"release 84",
		},
	},
	{
		// Coverage: the history grows past meter.MaxPast groups and both
		// compact it alike; a widening then judges the merged groups.
		name: "CompactedHistoryWidened", history: meter.DefaultHistory, ops: []string{
			"limits 1/100us,concurrency=0",
			"churn 300 150us",
			"limits 300/100ms,concurrency=0",
			"nb refused",
			"wait",
			"advance 1ms",
			"limits 300/50ms,concurrency=0",
		},
	},
}

func TestDifferentialTraceScripts(t *testing.T) {
	srv := redistest.Start(t)
	for i, sc := range traceScripts {
		t.Run(sc.name, func(t *testing.T) {
			spec, ok := strings.CutPrefix(sc.ops[0], "limits ")
			require.True(t, ok, "a script starts with limits")
			tr := openTrace(t, srv, "script "+sc.name, fmt.Sprintf("script%d", i), mustParse(t, spec), sc.history)
			defer tr.close()
			tr.jump = sc.jump
			for tr.step = 1; tr.step < len(sc.ops); tr.step++ {
				tr.script(sc.ops[tr.step])
				tr.settle()
				if tr.goBug != "" {
					t.Skip(tr.goBug)
				}
			}
		})
	}
}

// script applies one operation of a script.
func (tr *trace) script(op string) {
	t := tr.t
	f := strings.Fields(op)
	id := func(i int) uint64 {
		n, err := strconv.ParseUint(f[i], 10, 64)
		require.NoError(t, err, "%q: a call id", op)
		return n
	}
	dur := func(i int) time.Duration {
		d, err := meter.ParseDuration(f[i])
		require.NoError(t, err, "%q: a duration", op)
		return d
	}
	cost := int64(1)
	if op, c, ok := strings.Cut(f[0], "@"); ok {
		n, err := strconv.ParseInt(c, 10, 64)
		require.NoError(t, err, "%q: a cost", f[0])
		f[0], cost = op, n
	}
	switch f[0] {
	case "settle":
		n, err := strconv.ParseInt(f[2], 10, 64)
		require.NoError(t, err, "%q: an actual cost", op)
		tr.settleCall(id(1), n)
	case "limits":
		tr.setSpec(mustParse(t, strings.TrimPrefix(op, "limits ")))
	case "nb":
		got := tr.nonblockingCost(cost)
		if len(f) > 1 && f[1] == "refused" && got != "refused" {
			tr.fail("nonblocking Acquire = %s, want refused", got)
		}
		if len(f) > 1 && f[1] != "refused" && !strings.HasPrefix(got, "call "+f[1]+" ") {
			tr.fail("nonblocking Acquire = %s, want call %s", got, f[1])
		}
	case "wait":
		tr.blockingCost(cost)
	case "release":
		tr.release(id(1))
	case "revoke":
		tr.revoke(id(1))
	case "interrupt":
		i := slices.IndexFunc(tr.waiters, func(w *traceWaiter) bool { return w.name == f[1] })
		require.GreaterOrEqual(t, i, 0, "%q: no such waiter", op)
		tr.interrupt(tr.waiters[i])
	case "advance":
		tr.advance(dur(1))
	case "pause":
		tr.pause(dur(1))
	case "lift":
		tr.pause(0)
	case "churn":
		n, err := strconv.Atoi(f[1])
		require.NoError(t, err, "%q: a count", op)
		for range n {
			if out := tr.nonblocking(); out != "refused" {
				tr.release(tr.held[len(tr.held)-1])
			}
			tr.advance(dur(2))
		}
	default:
		t.Fatalf("%q: unknown operation", op)
	}
}

// repeatOps formats op with 1…n.
func repeatOps(n int, op string) []string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf(op, i))
	}
	return out
}
