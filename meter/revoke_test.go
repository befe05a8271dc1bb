package meter_test

import (
	"testing"

	"github.com/stretchr/testify/require"
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
