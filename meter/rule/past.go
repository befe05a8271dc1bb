package rule

import (
	"slices"
	"time"
)

// DefaultHistory is how long a meter keeps completed calls after they stop
// counting against its windows, so that a window widened later judges them
// (see Options.History).
const DefaultHistory = 24 * time.Hour

// MaxPast bounds a meter's Past groups; past it they are merged (compacted),
// so memory per meter stays bounded at any call rate.
const MaxPast = 256

// pastDiv sets how coarse a compaction merges: groups whose completions lie
// within 1/pastDiv of their age of each other are merged, so a call that
// completed an hour ago may count as if it completed up to 3.75 minutes
// later (never earlier).
const pastDiv = 16

// Past is a group of completed calls that no longer count against the
// meter's windows when they were retired, kept for the history horizon: a
// window widened later (a `limits` write) still counts them. A group is
// conservative: each of its calls counts as if it had been granted at
// Granted and completed at Done, the latest grant and completion among them,
// so a group may make a call count longer than it really does, never shorter.
// Past is plain data, safe to copy.
type Past struct {
	N       int       // calls in the group
	U       int64     // their units of cost (weighted calls)
	First   time.Time // the earliest completion in the group
	Granted time.Time // the latest grant in the group
	Done    time.Time // the latest completion in the group
}

// end is when the group stops counting against a window of per.
func (p Past) end(spec Spec, per time.Duration) time.Time {
	if spec.Count == CountGrant {
		return p.Granted.Add(per)
	}
	return p.Done.Add(per)
}

// pastOf is the group of one call.
func pastOf(c Call) Past {
	return Past{N: 1, U: c.Units(), First: c.DoneAt, Granted: c.GrantedAt, Done: c.DoneAt}
}

// recentPast returns the groups that completed after since: the only ones
// that can still count against a window of now-since (Granted ≤ Done).
func recentPast(past []Past, since time.Time) []Past {
	i, _ := slices.BinarySearchFunc(past, since, func(p Past, t time.Time) int {
		if p.Done.After(t) {
			return 1
		}
		return -1
	})
	return past[i:]
}

// Retire moves the completed calls that count against no window of spec
// any more from Calls to Past, drops the Past groups older than the history
// horizon (at least the longest window), and compacts Past when it has
// grown past MaxPast. It returns the cutoff (calls that completed, or with
// count=grant were granted, at or before it were retired) and whether the
// state changed.
//
// Past is never modified in place: it is appended to, re-sliced, or replaced
// by a new slice. So a store may keep a Past slice it was given until the
// next Retire without copying it.
func (st *State) Retire(spec Spec, now time.Time, history time.Duration) (cutoff time.Time, changed bool) {
	cutoff = now.Add(-spec.Longest())
	var retired []Past
	st.Calls = slices.DeleteFunc(st.Calls, func(c Call) bool {
		if c.InProgress() {
			return false
		}
		at := c.DoneAt
		if spec.Count == CountGrant {
			at = c.GrantedAt
		}
		if at.After(cutoff) {
			return false
		}
		retired = append(retired, pastOf(c))
		return true
	})
	var dropped bool
	st.Past, dropped = keepPast(st.Past, retired, now, max(history, spec.Longest()))
	return cutoff, len(retired) > 0 || dropped
}

// keepPast adds the retired groups to past, drops the groups that completed
// at or before now − keep, and compacts past when it has grown past
// MaxPast. It returns the new history and whether it dropped any. past is
// never modified in place (see Retire).
func keepPast(past, retired []Past, now time.Time, keep time.Duration) ([]Past, bool) {
	if len(retired) > 0 {
		past = addPast(past, retired)
	}
	dropped := false
	if old := len(past) - len(recentPast(past, now.Add(-keep))); old > 0 {
		past = past[old:]
		dropped = true
	}
	if len(past) > MaxPast {
		past = compactPast(past, now)
	}
	return past, dropped
}

// addPast adds groups to past, keeping it ordered by Done.
func addPast(past, groups []Past) []Past {
	byDone := func(a, b Past) int { return a.Done.Compare(b.Done) }
	slices.SortStableFunc(groups, byDone)
	if n := len(past); n == 0 || !groups[0].Done.Before(past[n-1].Done) {
		return append(past, groups...)
	}
	// Rare (count=grant retires by grant time): merge into a new slice.
	merged := make([]Past, 0, len(past)+len(groups))
	merged = append(merged, past...)
	merged = append(merged, groups...)
	slices.SortStableFunc(merged, byDone)
	return merged
}

// compactPast merges neighbouring groups whose completions lie close
// together for their age, from the newest back, into a new slice of at most
// MaxPast/2 groups: the pass of the largest div among 16, 8, 4, 2, 1 that
// leaves that few, else one group of them all. A merged group takes the
// latest grant and completion of its parts: its calls may count longer,
// never shorter. A pass leaves no more groups the smaller div is (the
// history is ordered by Done, and an older run head reaches at least as far
// back as a newer one: TestMergePastCountShrinksWithDiv), so after div 16
// the div is found by bisection: at most four passes, three when none fits
// (a burst of recent completions). rlfs.lua's compact does the same.
func compactPast(past []Past, now time.Time) []Past {
	fits := func(div time.Duration) []Past {
		if out := mergePast(past, now, div); len(out) <= MaxPast/2 {
			return out
		}
		return nil
	}
	if out := fits(pastDiv); out != nil {
		return out
	}
	if out := fits(pastDiv / 8); out != nil { // 2
		if o := fits(pastDiv / 2); o != nil { // 8
			return o
		}
		if o := fits(pastDiv / 4); o != nil { // 4
			return o
		}
		return out
	}
	if out := fits(pastDiv / 16); out != nil { // 1
		return out
	}
	return mergePast(past, now, 0) // one group: the coarsest bound
}

// mergePast is one greedy pass: a group joins the newer group after it
// while the newer group's latest completion is within (age of that
// completion)/div of the group's earliest one. div 0 merges everything.
func mergePast(past []Past, now time.Time, div time.Duration) []Past {
	var out []Past
	cur := past[len(past)-1]
	for i := len(past) - 2; i >= 0; i-- {
		p := past[i]
		if div == 0 || cur.Done.Sub(p.First) <= now.Sub(cur.Done)/div {
			cur.N += p.N
			cur.U = addSat(cur.U, p.U, MaxUsage)
			cur.First = p.First
			cur.Granted = later(cur.Granted, p.Granted)
			continue
		}
		out = append(out, cur)
		cur = p
	}
	out = append(out, cur)
	slices.Reverse(out)
	return out
}

// PastCalls is how many calls Past holds.
func (st *State) PastCalls() int {
	n := 0
	for _, p := range st.Past {
		n += p.N
	}
	return n
}

// weighted is an instant when n calls stop counting (zero: unknown).
type weighted struct {
	at time.Time
	n  int64
}

// kthWeighted returns the end at which the weight counted before it
// exceeds k (0-based): the k-th earliest end, counting each entry n times
// and ordering unknown ends (zero) last.
func kthWeighted(ends []weighted, k int64) time.Time {
	slices.SortFunc(ends, func(a, b weighted) int {
		switch {
		case a.at.IsZero() && b.at.IsZero():
			return 0
		case a.at.IsZero():
			return 1
		case b.at.IsZero():
			return -1
		}
		return a.at.Compare(b.at)
	})
	for _, e := range ends {
		if k < e.n {
			return e.at
		}
		k -= e.n
	}
	return never
}
