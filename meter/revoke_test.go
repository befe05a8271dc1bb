package meter_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

// Regression (issue 8): Revoke decremented Stats.Grants, exported as the
// Prometheus counter rlfs_grants_total, and counters never go down. A
// revoked grant now counts in Revoked; Grants keeps it; nothing of the call
// counts against the meter.
func TestRevokeKeepsCountersMonotonic(t *testing.T) {
	r := newRig(t, "1/1s")
	c := r.call2()
	require.Equal(t, uint64(1), r.m.Status().Stats.Grants)
	require.NoError(t, r.m.Revoke(c.ID), "Revoke(%d)", c.ID)
	snap := r.m.Status()
	require.Equal(t, uint64(1), snap.Stats.Grants, "Stats.Grants after Revoke")
	require.Equal(t, uint64(1), snap.Stats.Revoked, "Stats.Revoked after Revoke")
	require.Equal(t, uint64(0), snap.Grants, "grants kept in the store after Revoke")
	require.Equal(t, 0, snap.HoldersN)
	require.Equal(t, 0, snap.Usage[0].Used, "the revoked call does not count")
	r.call() // the meter is free at once
}

// Regression (found by meter/redis's differential test): Revoke of a call
// whose max_hold ran out while nothing looked at the meter took it back,
// though it counts as completed since grant+max_hold (and Revoke refuses
// such a call once it has been expired); the library refused. Now both
// refuse it, observed or not: it keeps counting, and stays to be released.
func TestRevokeAfterUnobservedMaxHold(t *testing.T) {
	r := newRig(t, "1/10s,concurrency=0,max_hold=1s")
	c := r.call2()
	r.at(5 * s) // nobody waits, nothing looks at the meter
	require.ErrorIs(t, r.m.Revoke(c.ID), meter.ErrNotExist, "Revoke(%d) at +5s, after max_hold", c.ID)
	snap := r.m.Status()
	require.Equal(t, 1, snap.Usage[0].Used, "the expired call counts, completed at +1s")
	require.Equal(t, 1, snap.ExpiredN, "the expired call stays to be released")
	require.Equal(t, uint64(0), snap.Stats.Revoked)
	tk := r.enqueue()
	require.Equal(t, 11*s, r.nextTimer(), "the next call at +11s, when the expired one stops counting")
	r.release(c)
	r.at(11 * s)
	r.granted(tk, 11*s)
}
