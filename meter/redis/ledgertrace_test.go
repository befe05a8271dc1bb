package redis

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// TestLedgerTrace holds the library's ledger to the rule as plain data:
// random traces of steps (nonblocking acquires of random costs, releases,
// settlements, revocations, limits writes, time) run through the library's
// functions and through meter.State's methods as the engine uses them
// (Expire before deciding, Retire at a release, the buckets' debt re-judged
// at a limits write); after every step the rule's answer for a few costs
// (rlfs2_peek against meter.AdmitCost) and every window's usage must be the
// same, and so must the grants and the calls the history holds. Traces are
// short enough that no units walk reaches its cap and the history is never
// compacted (the two places where the library may answer differently:
// docs/engine.md). A failure names -diff.seed and -diff.case.
func TestLedgerTrace(t *testing.T) {
	l := newLib(t)
	for _, i := range diffRange(300, 60) {
		lt := newLedgerTrace(l, i)
		for range 60 + lt.r.IntN(120) {
			lt.step()
		}
	}
}

type ledgerTrace struct {
	l       *lib
	r       *rand.Rand
	name    string
	spec    meter.Spec
	history time.Duration
	st      meter.State
	open    []uint64 // calls granted and not released here (some held)
	story   []string
	scale   int64
	ticket  uint64
}

func newLedgerTrace(l *lib, i int) *ledgerTrace {
	r := caseRand(i)
	lt := &ledgerTrace{l: l, r: r, name: fmt.Sprintf("trace%d", i), scale: []int64{5, 1000, 100_000}[r.IntN(3)]}
	lt.spec = lt.genSpec()
	lt.history = []time.Duration{us(1), us(lt.scale), us(20 * lt.scale), meter.DefaultHistory}[r.IntN(4)]
	l.createHistory(lt.name, lt.spec.String(), lt.history)
	lt.logf("create %s history %v", lt.spec, lt.history)
	return lt
}

// genSpec is genSpec with units items: a units window, a units bucket.
func (lt *ledgerTrace) genSpec() meter.Spec {
	r := lt.r
	s := genSpec(r, lt.scale)
	if r.IntN(3) == 0 {
		s.Windows = append(s.Windows, meter.Window{N: 1 + r.IntN(12), Per: us(1 + r.Int64N(4*lt.scale)), Units: true})
	}
	if r.IntN(5) == 0 {
		n := 1 + r.IntN(8)
		s.UnitBucket = &meter.Bucket{N: n, Per: us(int64(n) * (1 + r.Int64N(lt.scale))), Burst: 1 + r.IntN(12)}
	}
	spec, err := meter.ParseSpec(strings.ReplaceAll(s.String(), ",", "\n"))
	if err != nil {
		return lt.genSpec()
	}
	return spec
}

func (lt *ledgerTrace) logf(format string, args ...any) {
	lt.story = append(lt.story, fmt.Sprintf("+%d %s", lt.l.now-at(0).UnixMicro(), fmt.Sprintf(format, args...)))
}

func (lt *ledgerTrace) fail(format string, args ...any) {
	lt.l.t.Helper()
	k := keysOf(libPrefix, lt.name)
	var hist []string
	if b, err := lt.l.c.Do(context.Background(), lt.l.c.B().Get().Key(k[8]).Build()).AsBytes(); err == nil {
		for i := 0; i+40 <= len(b); i += 40 {
			var g [5]int64
			for j := range g {
				g[j] = int64(math.Float64frombits(binary.LittleEndian.Uint64(b[i+8*j:])))
			}
			hist = append(hist, fmt.Sprintf("%d:%d:%d:%d:%d", g[0], g[1], g[2], g[3], g[4]))
		}
	}
	ledger, _ := lt.l.c.Do(context.Background(), lt.l.c.B().Zrange().Key(k[3]).Min("0").Max("-1").Build()).AsStrSlice()
	var past []string
	for _, p := range lt.st.Past {
		past = append(past, fmt.Sprintf("%d:%d:%d:%d:%d", p.N, instant(p.First), instant(p.Granted), instant(p.Done), p.U))
	}
	var calls []string
	for _, c := range lt.st.Calls {
		calls = append(calls, fmt.Sprintf("%d:g%d:d%d", c.ID, instant(c.GrantedAt), instant(c.DoneAt)))
	}
	lt.l.t.Fatalf("%s\ncase -diff.seed=%d %s; its steps:\n%s\nlibrary: history %v ledger %v\nmeter.State: past %v calls %v",
		fmt.Sprintf(format, args...), *diffSeed, lt.name, strings.Join(lt.story, "\n"), hist, ledger, past, calls)
}

func (lt *ledgerTrace) now() time.Time { return time.UnixMicro(lt.l.now) }

// step runs one random step on both sides, then compares them.
func (lt *ledgerTrace) step() {
	r := lt.r
	switch k := r.IntN(20); {
	case k < 7:
		lt.acquire(r.Int64N(5))
	case k < 12 && len(lt.open) > 0:
		lt.release(lt.open[r.IntN(len(lt.open))])
	case k < 13 && len(lt.open) > 0:
		lt.settle(lt.open[r.IntN(len(lt.open))], r.Int64N(7))
	case k < 14 && len(lt.open) > 0:
		lt.revoke(lt.open[r.IntN(len(lt.open))])
	case k < 15:
		lt.setSpec(lt.genSpec())
	default:
		lt.l.advance(us(r.Int64N(2 * lt.scale)))
	}
	lt.compare()
}

func (lt *ledgerTrace) acquire(cost int64) {
	lt.ticket++
	lt.st.Expire(lt.spec, lt.now())
	want := meter.AdmitCost(lt.spec, &lt.st, lt.now(), cost)
	got := lt.l.acquire(lt.name, lt.ticket, cost)
	lt.logf("acquire cost %d: kind %d id %d (meter.AdmitCost: %v)", cost, got.kind, got.id, want.OK)
	switch {
	case want.OK && got.kind == admGranted:
		c := lt.st.GrantCost(lt.spec, lt.now(), meter.Holder{}, cost)
		if c.ID != got.id {
			lt.fail("call id %d, meter.State's %d", got.id, c.ID)
		}
		lt.open = append(lt.open, c.ID)
	case want.OK || got.kind == admGranted:
		lt.fail("acquire of cost %d: library %+v, meter.AdmitCost %+v", cost, got, want)
	case lt.spec.Fits(cost) != nil && got.id != refusedTooBig:
		lt.fail("acquire of cost %d beyond the spec: refused %d, want %d", cost, got.id, refusedTooBig)
	}
}

func (lt *ledgerTrace) forget(id uint64) {
	lt.open = slices.DeleteFunc(lt.open, func(x uint64) bool { return x == id })
}

func (lt *ledgerTrace) release(id uint64) {
	lt.logf("release %d", id)
	lt.l.release(lt.name, id)
	lt.st.Expire(lt.spec, lt.now())
	lt.st.Complete(id, lt.now())
	lt.st.Retire(lt.spec, lt.now(), lt.history)
	lt.forget(id)
}

func (lt *ledgerTrace) settle(id uint64, actual int64) {
	lt.st.Expire(lt.spec, lt.now())
	_, inState := lt.st.Settle(lt.spec, id, actual, lt.now())
	m, err := lt.l.send("rlfs2_settle", lt.name, u64(id), fmt.Sprint(actual))
	lt.logf("settle %d to %d (in meter.State: %v)", id, actual, inState)
	switch {
	case err == nil && isMore(m):
		lt.fail("settle replied MORE in a short trace")
	case inState && err != nil:
		lt.fail("settle %d: %v; meter.State settled it", id, err)
	case !inState && (err == nil || !strings.Contains(err.Error(), "RLFS_NOCALL")):
		lt.fail("settle %d: %v, want RLFS_NOCALL: meter.State retired it", id, err)
	}
}

// revoke is meter.Meter.Revoke on the State: a call that max_hold ended
// stays; else nothing of it counts, and the buckets get their tokens back.
func (lt *ledgerTrace) revoke(id uint64) {
	lt.logf("revoke %d", id)
	refused := lt.l.revoke(lt.name, id)
	lt.st.Expire(lt.spec, lt.now())
	i := slices.IndexFunc(lt.st.Calls, func(c meter.Call) bool { return c.ID == id })
	if i < 0 || !lt.st.Calls[i].InProgress() {
		if refused == "" {
			lt.fail("revoke %d of a call not in progress: taken back", id)
		}
		return
	}
	if refused != "" {
		lt.fail("revoke %d of a call in progress: %s", id, refused)
	}
	c := lt.st.Calls[i]
	lt.st.Calls = slices.Delete(lt.st.Calls, i, i+1)
	if b := lt.spec.Bucket; b != nil {
		lt.st.TAT = lt.st.TAT.Add(-b.Interval())
	}
	if b := lt.spec.UnitBucket; b != nil && !lt.st.UTAT.IsZero() {
		lt.st.UTAT = lt.st.UTAT.Add(-b.Interval() * time.Duration(c.Units()-c.Absorbed))
	}
	lt.forget(id)
}

// setSpec is meter.Meter.SetSpec on the State: holds the old max_hold
// ended are expired, the buckets' debt re-judged.
func (lt *ledgerTrace) setSpec(nu meter.Spec) {
	lt.logf("limits %s", nu)
	lt.st.Expire(lt.spec, lt.now())
	lt.st.TAT = rejudgeForTest(lt.spec.Bucket, nu.Bucket, lt.st.TAT, lt.now())
	lt.st.UTAT = rejudgeForTest(lt.spec.UnitBucket, nu.UnitBucket, lt.st.UTAT, lt.now())
	lt.spec = nu
	lt.l.setSpecHistory(lt.name, nu.String(), lt.history)
	var rep stepReply
	lt.l.step(&rep, "rlfs2_rebuild", lt.name)
}

// rejudgeForTest is meter's rejudgeTAT (bounds.go), which the engine
// applies at a limits write.
func rejudgeForTest(old, nu *meter.Bucket, tat, now time.Time) time.Time {
	switch {
	case nu == nil:
		return time.Time{}
	case !tat.After(now):
		return tat
	}
	limit := now.Add(2 * nu.Interval() * time.Duration(nu.Burst))
	if old != nil && old.Interval() != nu.Interval() {
		tokens := (tat.Sub(now) + old.Interval() - 1) / old.Interval()
		tat = now.Add(tokens * nu.Interval())
	}
	if tat.After(limit) {
		return limit
	}
	return tat
}

// compare asks both sides the rule's answer for a few costs, and compares
// the usage of every window, the grants and the history.
func (lt *ledgerTrace) compare() {
	lt.st.Expire(lt.spec, lt.now())
	for _, cost := range []int64{0, 1, 3} {
		want := meter.AdmitCost(lt.spec, &lt.st, lt.now(), cost)
		ok, at := lt.l.peek(lt.name, cost)
		if lt.l.mores != 0 {
			lt.fail("peek replied MORE in a short trace")
		}
		if ok != want.OK || (!ok && at != instant(want.At)) {
			lt.fail("peek of cost %d = {ok %v, at %d}, meter.AdmitCost = %+v (at %d)", cost, ok, at, want, instant(want.At))
		}
	}
	v := lt.l.view(lt.name)
	for i, w := range lt.spec.Windows {
		if want := meter.Usage(lt.spec, w, &lt.st, lt.now()); int64(want) != v.usage[i] {
			lt.fail("usage of %s = %d, meter.Usage = %d", w, v.usage[i], want)
		}
	}
	if v.retired != int64(lt.st.PastCalls()) {
		lt.fail("retired calls %d, meter.State's history %d", v.retired, lt.st.PastCalls())
	}
}
