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

// A pass of mergePast leaves no more groups with a smaller div (a longer
// reach): the history is ordered by Done, and an older run head reaches at
// least as far back as a newer one. rlfs.lua's compact relies on it to find
// compactPast's div by bisection, and must give compactPast's result.
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
		// bisection, as rlfs.lua's compact does it, gives compactPast's result
		if n > MaxPast {
			want := compactPast(slices.Clone(past), now)
			fits := func(div time.Duration) []Past {
				if out := mergePast(past, now, div); len(out) <= MaxPast/2 {
					return out
				}
				return nil
			}
			got := fits(16)
			if got == nil {
				if got = fits(2); got != nil {
					if o := fits(8); o != nil {
						got = o
					} else if o := fits(4); o != nil {
						got = o
					}
				} else if got = fits(1); got == nil {
					got = mergePast(past, now, 0)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("trial %d: bisection gives %d groups, compactPast %d", trial, len(got), len(want))
			}
		}
	}
}
