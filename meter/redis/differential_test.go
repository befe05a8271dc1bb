package redis

import (
	"context"
	"flag"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// The admission rule exists twice: meter.AdmitCost in Go and the ledger of
// rlfs.lua. The differential tests feed both the same random input and
// require the same decisions: TestLedgerTrace the library alone (ledger_test.go:
// its steps against meter.State's methods), and TestDifferentialTrace whole
// registries, one on metertest.MemStore and one on this store, driven by the
// same trace of operations (difftrace_test.go).
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
