package redis

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// The admission rule exists twice: meter.Admit in Go and admit in rlfs.lua.
// The differential tests feed both the same random input and require the
// same decisions: TestDifferentialAdmit the rule alone (rlfs1_admit, on
// states built by the Go engine's own State methods), and
// TestDifferentialTrace whole registries, one on metertest.MemStore and one
// on this store, driven by the same trace of operations
// (difftrace_test.go).
//
// Every case is generated from its own PCG stream, seeded by (-diff.seed,
// case number), so a failure names the two numbers that replay it alone:
//
//	go test ./meter/redis/ -run 'TestDifferentialAdmit$' -diff.seed=S -diff.case=I -v
//
// Everything lies on a microsecond grid (the library's unit): instants are
// metertest.Epoch plus whole microseconds, and durations are whole
// microseconds, so both sides compute exactly and must agree exactly.

var (
	diffSeed  = flag.Uint64("diff.seed", 1, "differential tests: the seed of the random cases")
	diffCase  = flag.Int("diff.case", -1, "differential tests: run only this case (with its -diff.seed)")
	diffCases = flag.Int("diff.cases", 0, "differential tests: how many cases (0: the default, fewer with -short)")
)

// diffRange returns the case numbers to run: -diff.case alone, or n of them
// (short under -short), or -diff.cases.
func diffRange(n, short int) []int {
	switch {
	case *diffCase >= 0:
		return []int{*diffCase}
	case *diffCases > 0:
		n = *diffCases
	case testing.Short():
		n = short
	}
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// caseRand is the random stream of case i.
func caseRand(i int) *rand.Rand { return rand.New(rand.NewPCG(*diffSeed, uint64(i))) }

// us is d in whole microseconds; at is metertest.Epoch plus n microseconds.
func us(n int64) time.Duration { return time.Duration(n) * time.Microsecond }
func at(n int64) time.Time     { return metertest.Epoch.Add(us(n)) }

// instant writes t as the library does: microseconds since the Unix epoch,
// 0 for the zero time.
func instant(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// admitCase is one input of the rule: a spec, a state, an instant.
type admitCase struct {
	seed  uint64
	n     int
	spec  meter.Spec
	st    meter.State
	now   time.Time
	story []string // how the state was built, for the failure message
}

// genSpec draws a spec on the microsecond grid: 0-3 windows, concurrency
// 0-3, an optional bucket, count=completion or grant, an optional max_hold.
// scale is the typical duration in microseconds. The bucket's PER is a
// multiple of its N microseconds: its interval PER/N is then a whole number
// of microseconds on both sides. Otherwise the library rounds the interval
// up to whole microseconds (the safe side, by design) and Go keeps the
// nanoseconds, and the two differ on purpose.
func genSpec(r *rand.Rand, scale int64) meter.Spec {
	dur := func() time.Duration { return us(1 + r.Int64N(4*scale)) }
	s := meter.Spec{Concurrency: r.IntN(4)}
	for range r.IntN(4) {
		s.Windows = append(s.Windows, meter.Window{N: 1 + r.IntN(4), Per: dur()})
	}
	if r.IntN(3) == 0 {
		n := 1 + r.IntN(4)
		s.Bucket = &meter.Bucket{N: n, Per: us(int64(n) * (1 + r.Int64N(2*scale))), Burst: 1 + r.IntN(4)}
	}
	if r.IntN(2) == 0 {
		s.Count = meter.CountGrant
	}
	if r.IntN(3) == 0 {
		s.MaxHold = dur()
	}
	// The canonical form: windows by PER, one per PER (as a limits write).
	spec, err := meter.ParseSpec(strings.ReplaceAll(s.String(), ",", "\n"))
	if err != nil {
		return genSpec(r, scale)
	}
	return spec
}

// genAdmitCase builds a state the way the engine does, with the Go
// methods: grants (State.Grant, which moves the bucket's TAT), completions
// (State.Complete, mostly after State.Expire as the engine does, sometimes
// not: a call completed after its max_hold, as after a change of max_hold),
// and retirements (State.Retire, which builds Past, drops old history and
// compacts it past meter.MaxPast groups). The rule is then asked under the
// same spec or under another one (a limits write after the history).
func genAdmitCase(i int) admitCase {
	r := caseRand(i)
	scale := []int64{5, 1000, 1_000_000}[r.IntN(3)]
	grid := int64(1)
	if r.IntN(2) == 0 {
		grid = max(1, scale/2) // coarse: many equal instants (ties)
	}
	c := admitCase{seed: *diffSeed, n: i, spec: genSpec(r, scale)}
	built := c.spec
	if r.IntN(2) == 0 {
		built = genSpec(r, scale)
	}
	history := []time.Duration{us(1), us(scale), us(20 * scale), meter.DefaultHistory}[r.IntN(4)]
	events := r.IntN(16)
	if r.IntN(12) == 0 {
		events = 600 + r.IntN(900) // enough retirements to compact Past
	}
	var t int64
	var open []uint64 // calls granted and not completed here (some expired)
	st := &c.st
	for range events {
		switch k := r.IntN(20); {
		case k < 8:
			open = append(open, st.Grant(built, at(t), meter.Holder{}).ID)
			c.story = append(c.story, fmt.Sprintf("grant@%d", t))
		case k < 14:
			if len(open) == 0 {
				continue
			}
			if r.IntN(5) > 0 {
				st.Expire(built, at(t))
			}
			j := r.IntN(len(open))
			id := open[j]
			open = append(open[:j], open[j+1:]...)
			if _, ok := st.Complete(id, at(t)); ok {
				c.story = append(c.story, fmt.Sprintf("complete(%d)@%d", id, t))
			}
		case k < 17:
			st.Retire(built, at(t), history)
			c.story = append(c.story, fmt.Sprintf("retire@%d", t))
		default:
			t += grid * r.Int64N(1+3*scale/grid)
		}
	}
	now := t + grid*r.Int64N(1+2*scale/grid)
	if r.IntN(2) == 0 {
		st.Expire(c.spec, at(now)) // as the engine does before it admits
	}
	if r.IntN(8) == 0 && c.spec.Bucket != nil {
		st.TAT = at(now + r.Int64N(4*scale) - 2*scale) // any TAT, even before the grants
	}
	c.now = at(now)
	return c
}

// admitArgs are rlfs1_admit's arguments for c (see its comment in rlfs.lua).
func admitArgs(c admitCase) []string {
	s := c.spec
	var win []string
	for _, w := range s.Windows {
		win = append(win, fmt.Sprintf("%d:%d:0", w.N, micros(w.Per)))
	}
	rn, rper, burst := 0, int64(0), 0
	if b := s.Bucket; b != nil {
		rn, rper, burst = b.N, micros(b.Per), b.Burst
	}
	var past []string
	for _, p := range c.st.Past {
		past = append(past, fmt.Sprintf("%d:%d:%d:%d:0", p.N, instant(p.First), instant(p.Granted), instant(p.Done)))
	}
	args := []string{strings.Join(win, ";"), strconv.Itoa(s.Concurrency), strconv.Itoa(rn), strconv.FormatInt(rper, 10),
		strconv.Itoa(burst), boolStr(s.Count == meter.CountGrant), strconv.FormatInt(micros(s.MaxHold), 10),
		strconv.FormatInt(instant(c.st.TAT), 10), strconv.FormatInt(instant(c.now), 10), "1", strings.Join(past, ";"),
		"0", "0", "0", "0"}
	for _, cl := range c.st.Calls {
		args = append(args, fmt.Sprintf("%d,%d,%d,1,-1", cl.ID, instant(cl.GrantedAt), instant(cl.DoneAt)))
	}
	return args
}

// String is the case as a reader replays it: the seed and number, the
// spec, how the state was built, and the FCALL to paste into redis-cli.
func (c admitCase) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "case -diff.seed=%d -diff.case=%d\nspec %s\nnow %d (Epoch+%v)\n", c.seed, c.n, c.spec, instant(c.now), c.now.Sub(metertest.Epoch))
	if len(c.story) <= 40 {
		fmt.Fprintf(&b, "built by %s\n", strings.Join(c.story, " "))
	} else {
		fmt.Fprintf(&b, "built by %d steps (%s ...)\n", len(c.story), strings.Join(c.story[:20], " "))
	}
	fmt.Fprintf(&b, "calls %d, past groups %d, TAT %d\n", len(c.st.Calls), len(c.st.Past), instant(c.st.TAT))
	args := admitArgs(c)
	if len(args) <= 40 && len(args[10]) < 2000 {
		fmt.Fprintf(&b, "redis-cli FCALL rlfs1_admit 0 '%s'", strings.Join(args, "' '"))
	}
	return b.String()
}

// decision is a reply of the rule: ok, and the instant (µs; 0: only after
// a release) when not ok.
type decision struct{ ok, at int64 }

func goDecision(t *testing.T, c admitCase) decision {
	d := meter.Admit(c.spec, &c.st, c.now)
	if d.OK {
		return decision{ok: 1}
	}
	require.True(t, d.At.IsZero() || d.At.Equal(time.UnixMicro(instant(d.At))), "Admit at %d = %v: off the microsecond grid\n%s", instant(c.now), d.At, c)
	return decision{at: instant(d.At)}
}

// rawClient connects to srv with the library loaded.
func rawClient(t *testing.T, srv *redistest.Server) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	require.NoError(t, err, "connect to %s", srv.Addr())
	t.Cleanup(c.Close)
	err = c.Do(context.Background(), c.B().FunctionLoad().Replace().FunctionCode(library).Build()).Error()
	require.NoError(t, err, "FUNCTION LOAD rlfs.lua")
	return c
}

// luaDecisions runs rlfs1_admit on every case, pipelined.
func luaDecisions(t *testing.T, c rueidis.Client, cases []admitCase) []decision {
	t.Helper()
	cmds := make(rueidis.Commands, len(cases))
	for i, ac := range cases {
		cmds[i] = c.B().Fcall().Function("rlfs1_admit").Numkeys(0).Arg(admitArgs(ac)...).Build()
	}
	out := make([]decision, len(cases))
	for i, res := range c.DoMulti(context.Background(), cmds...) {
		arr, err := res.ToArray()
		require.NoError(t, err, "rlfs1_admit\n%s", cases[i])
		require.Len(t, arr, 2, "rlfs1_admit reply\n%s", cases[i])
		out[i] = decision{intAt(arr, 0), intAt(arr, 1)}
	}
	return out
}

func compareAdmit(t *testing.T, cases []admitCase, got []decision) {
	t.Helper()
	for i, c := range cases {
		want := goDecision(t, c)
		if got[i] != want {
			t.Fatalf("rlfs1_admit at %d = {ok %d, at %d}, want meter.Admit's {ok %d, at %d}\n%s",
				instant(c.now), got[i].ok, got[i].at, want.ok, want.at, c)
		}
	}
}

func TestDifferentialAdmit(t *testing.T) {
	c := rawClient(t, redistest.Start(t))
	var batch []admitCase
	n, ok, compacted := 0, 0, 0
	flush := func() {
		compareAdmit(t, batch, luaDecisions(t, c, batch))
		batch = batch[:0]
	}
	for _, i := range diffRange(4000, 1000) {
		ac := genAdmitCase(i)
		n++
		if meter.Admit(ac.spec, &ac.st, ac.now).OK {
			ok++
		}
		if ac.st.PastCalls() > len(ac.st.Past) {
			compacted++
		}
		if batch = append(batch, ac); len(batch) == 256 {
			flush()
		}
	}
	flush()
	t.Logf("seed %d: %d cases agree (%d admitted, %d with compacted history)", *diffSeed, n, ok, compacted)
}
