package meter_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

// TestLedgerAgreesWithRule drives a Ledger through random traces (grants,
// mostly admitted and sometimes forced past the limits, completions,
// settlements, revocations, retirements, limits writes, time moving) and
// after every step compares its decisions for several costs, and its
// usage, with AdmitCost and Usage on the State it pictures: the rule as
// plain data, the specification.
func TestLedgerAgreesWithRule(t *testing.T) {
	traces, steps := 400, 120
	if n := os.Getenv("RLFS_LEDGER_TRACES"); n != "" {
		traces, _ = strconv.Atoi(n)
	}
	if testing.Short() {
		traces = 60
	}
	for i := range traces {
		r := rand.New(rand.NewPCG(uint64(i), 17))
		lt := &ledgerTrace{t: t, r: r, now: t0, name: fmt.Sprintf("trace %d", i)}
		lt.spec = lt.genSpec()
		lt.l = meter.NewLedger(lt.spec, time.Duration(r.IntN(3))*time.Second)
		for lt.step = 0; lt.step < steps; lt.step++ {
			lt.op()
			lt.check()
		}
	}
}

type ledgerTrace struct {
	t    *testing.T
	r    *rand.Rand
	name string
	spec meter.Spec
	l    *meter.Ledger
	now  time.Time
	step int
	log  []string
}

var ledgerSpecs = []string{
	"concurrency=2", "3/100ms", "2/50ms,5/300ms,concurrency=0", "concurrency=3,max_hold=40ms",
	"2/100ms,concurrency=0,max_hold=30ms", "3/100ms,count=grant,concurrency=0", "units:10/100ms,concurrency=0",
	"units:10/100ms,3/50ms,concurrency=2,max_hold=60ms", "rate=10/100ms,burst=3,concurrency=0",
	"units:rate=50/100ms,units:burst=20,concurrency=0", "units:20/200ms,count=grant,concurrency=0,max_hold=50ms",
	"4/1s,units:30/200ms,concurrency=0",
}

func (lt *ledgerTrace) genSpec() meter.Spec {
	s, err := meter.ParseSpec(ledgerSpecs[lt.r.IntN(len(ledgerSpecs))])
	require.NoError(lt.t, err)
	return s
}

func (lt *ledgerTrace) logf(format string, args ...any) {
	lt.log = append(lt.log, fmt.Sprintf("%3d +%-8v ", lt.step, lt.now.Sub(t0))+fmt.Sprintf(format, args...))
}

func (lt *ledgerTrace) fail(format string, args ...any) {
	lt.t.Helper()
	from := max(0, len(lt.log)-30)
	lt.t.Fatalf("%s, step %d: %s\nspec %s\n%s", lt.name, lt.step, fmt.Sprintf(format, args...), lt.spec, strings.Join(lt.log[from:], "\n"))
}

// pick returns a random remembered call id that is in progress or held.
func (lt *ledgerTrace) pick() (uint64, bool) {
	var ids []uint64
	for _, c := range lt.l.Holders() {
		ids = append(ids, c.ID)
	}
	for _, c := range lt.l.Expired() {
		ids = append(ids, c.ID)
	}
	if len(ids) == 0 {
		return 0, false
	}
	return ids[lt.r.IntN(len(ids))], true
}

func (lt *ledgerTrace) op() {
	l, r := lt.l, lt.r
	for _, c := range l.Advance(lt.now) {
		lt.logf("expired %d", c.ID)
	}
	cost := []int64{0, 1, 1, 2, 5, 9}[r.IntN(6)]
	switch k := r.IntN(100); {
	case k < 35:
		if d := l.Admit(lt.now, cost); d.OK || r.IntN(5) == 0 {
			c := l.Grant(lt.now, meter.Holder{PID: lt.step}, cost)
			lt.logf("grant %d cost %d (admitted %v)", c.ID, cost, d.OK)
		}
	case k < 55:
		if id, ok := lt.pick(); ok {
			_, stored := l.Complete(id, lt.now)
			cut, changed := l.Retire(lt.now)
			lt.logf("complete %d (stored %v), retire at %v: %v", id, stored, cut.Sub(t0), changed)
		}
	case k < 65:
		if id, ok := lt.pick(); ok {
			actual := int64(r.IntN(15))
			_, ok := l.Settle(id, actual, lt.now)
			lt.logf("settle %d %d: %v", id, actual, ok)
		}
	case k < 70:
		if id, ok := lt.pick(); ok {
			_, ok := l.Revoke(id)
			lt.logf("revoke %d: %v", id, ok)
		}
	case k < 74:
		lt.spec = lt.genSpec()
		l.SetSpec(lt.spec, lt.now)
		lt.logf("limits %s", lt.spec)
	default:
		d := time.Duration(1+r.IntN(40)) * time.Millisecond
		lt.now = lt.now.Add(d)
		lt.logf("advance %v", d)
	}
}

func (lt *ledgerTrace) check() {
	lt.t.Helper()
	lt.l.Advance(lt.now)
	st := lt.l.State()
	for _, cost := range []int64{0, 1, 3, 10} {
		if err := lt.spec.Fits(cost); err != nil {
			continue
		}
		want := meter.AdmitCost(lt.spec, &st, lt.now, cost)
		got := lt.l.Admit(lt.now, cost)
		if got != want {
			lt.fail("Admit(cost %d) = %s, want %s (AdmitCost on State)", cost, decisionText(got), decisionText(want))
		}
	}
	for i, u := range lt.l.Usage() {
		if want := meter.Usage(lt.spec, lt.spec.Windows[i], &st, lt.now); u.Used != want {
			lt.fail("Usage of %s = %d, want %d", u.Window, u.Used, want)
		}
	}
	open, held := lt.l.Counts()
	if n := len(st.InProgress()); n != open {
		lt.fail("%d calls in progress, State has %d", open, n)
	}
	_ = held
	if ids := slices.Collect(func(yield func(uint64) bool) {
		for _, c := range st.Calls {
			if !yield(c.ID) {
				return
			}
		}
	}); !slices.IsSorted(ids) {
		lt.fail("State's calls out of order: %v", ids)
	}
}

func decisionText(d meter.Decision) string {
	switch {
	case d.OK:
		return "ok"
	case d.At.IsZero():
		return "after a release"
	}
	return fmt.Sprintf("at +%v", d.At.Sub(t0))
}
