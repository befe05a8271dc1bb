package rule

import "time"

// restore rebases stored wall-clock times onto the clock's now (so they
// carry its monotonic reading), clamps future ones to now, and completes calls
// that were in progress at now.
func restore(spec Spec, st State, now time.Time) State {
	rebase := func(t time.Time) time.Time {
		if t.IsZero() || t.After(now) {
			return now
		}
		return now.Add(t.Sub(now))
	}
	out := State{NextID: st.NextID}
	for _, c := range st.Calls {
		c.GrantedAt = rebase(c.GrantedAt)
		c.DoneAt = rebase(c.DoneAt) // zero (in progress) becomes now
		out.Calls = append(out.Calls, c)
		out.NextID = max(out.NextID, c.ID+1)
	}
	for _, p := range st.Past {
		p.First, p.Granted, p.Done = rebase(p.First), rebase(p.Granted), rebase(p.Done)
		out.Past = append(out.Past, p)
	}
	out.TAT = restoreTAT(spec.Bucket, st.TAT, now, rebase)
	out.UTAT = restoreTAT(spec.UnitBucket, st.UTAT, now, rebase)
	return out
}

// restoreTAT rebases a bucket's stored TAT and clamps one in the future to
// at most a whole burst ahead (the clock was set back: no wait is longer
// than the bucket's own).
func restoreTAT(b *Bucket, tat, now time.Time, rebase func(time.Time) time.Time) time.Time {
	if b == nil || tat.IsZero() {
		return time.Time{}
	}
	if !tat.After(now) {
		return rebase(tat)
	}
	limit := b.Interval() * time.Duration(b.Burst)
	return now.Add(min(tat.Sub(now), limit))
}
