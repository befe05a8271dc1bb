package rule

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// randomPast is n groups ordered by Done, some merged already (First
// before Done), spread over span before now, in bursts and gaps.
func randomPast(r *rand.Rand, n int, now time.Time, span time.Duration) []Past {
	var past []Past
	at := now.Add(-span)
	for range n {
		switch r.IntN(4) {
		case 0: // a gap
			at = at.Add(time.Duration(r.Int64N(int64(span) / int64(n) * 4)))
		case 1: // a burst: the same instant or nearly
			at = at.Add(time.Duration(r.Int64N(10)) * time.Microsecond)
		default:
			at = at.Add(time.Duration(r.Int64N(int64(span)/int64(n)) + 1))
		}
		if at.After(now) {
			at = now
		}
		first := at.Add(-time.Duration(r.Int64N(int64(span) / 8)))
		past = append(past, Past{N: 1 + r.IntN(3), U: 1, First: first, Granted: first, Done: at})
	}
	return past
}

// compactLinear is compactPast as first written: every div from 16 down
// until a pass leaves at most MaxPast/2 groups, else one group of all.
func compactLinear(past []Past, now time.Time) []Past {
	for div := time.Duration(pastDiv); ; div /= 2 {
		out := mergePast(past, now, div)
		if len(out) <= MaxPast/2 || div <= 1 {
			if len(out) > MaxPast/2 {
				out = mergePast(out, now, 0)
			}
			return out
		}
	}
}

// A pass of mergePast leaves no more groups with a smaller div (a longer
// reach): the history is ordered by Done, and an older run head reaches at
// least as far back as a newer one. compactPast (and rlfs.lua's compact)
// rely on it to find the div by bisection.
func TestMergePastCountShrinksWithDiv(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 1))
	now := time.Unix(1_800_000_000, 0)
	for trial := range 2000 {
		n := 2 + r.IntN(2*MaxPast)
		span := []time.Duration{time.Millisecond, time.Second, time.Hour, 24 * time.Hour}[r.IntN(4)]
		past := randomPast(r, n, now, span)
		prev := len(past) + 1
		for div := time.Duration(pastDiv); div >= 1; div /= 2 {
			got := len(mergePast(past, now, div))
			if got > prev {
				t.Fatalf("trial %d (%d groups over %v): div %d leaves %d groups, div %d left %d", trial, n, span, div, got, div*2, prev)
			}
			prev = got
		}
		// compactPast's bisection (and rlfs.lua's compact, which does the
		// same) gives what trying every div from 16 down gives
		if n > MaxPast {
			if got, want := compactPast(slices.Clone(past), now), compactLinear(past, now); !slices.Equal(got, want) {
				t.Fatalf("trial %d: bisection gives %d groups, the linear search %d", trial, len(got), len(want))
			}
		}
	}
}
