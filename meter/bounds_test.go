package meter_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

// Issue 15, item 1: 8,200 calls held at once on a units window of 2^50,
// each settled at 2^50, wrapped the window's int64 sum negative, and the
// next calls of 2^50 were admitted. The sum saturates at MaxUsage and the
// window stays closed, to a call of cost 0 too.
func TestUnitsWindowSumSaturates(t *testing.T) {
	spec := mustSpec(t, "units:1125899906842624/1h,concurrency=0")
	st := &meter.State{}
	var ids []uint64
	for range 8200 {
		require.True(t, meter.AdmitCost(spec, st, t0, 0).OK, "AdmitCost(0) at t0 with nothing settled")
		ids = append(ids, st.GrantCost(spec, t0, meter.Holder{}, 0).ID)
	}
	for _, id := range ids {
		_, ok := st.Settle(spec, id, meter.MaxUnits, t0)
		require.True(t, ok)
	}
	w := spec.Windows[0]
	require.Equal(t, meter.MaxUsage, meter.Usage(spec, w, st, t0), "Usage after 8,200 settlements of 2^50")
	for _, cost := range []int64{meter.MaxUnits, 1, 0} {
		require.Equal(t, "release", describe(meter.AdmitCost(spec, st, t0, cost)), "AdmitCost(%d) at t0", cost)
	}
	for _, id := range ids {
		st.Complete(id, t0.Add(time.Second))
	}
	require.Equal(t, meter.MaxUsage, meter.Usage(spec, w, st, t0.Add(time.Hour)), "Usage at t0+1h")
	require.Equal(t, "1h0m1s", describe(meter.AdmitCost(spec, st, t0.Add(time.Hour), 0)), "AdmitCost(0) at t0+1h")
	require.Equal(t, "ok", describe(meter.AdmitCost(spec, st, t0.Add(time.Hour+time.Second), meter.MaxUnits)), "AdmitCost(2^50) once they stopped counting")
}

// Issue 15, item 2: one settlement of 2^50 on units:rate=100/1s put the
// bucket's TAT centuries ahead. Debt stops one full period beyond empty;
// settling back refunds only what was charged; a limits write owes the
// debt in tokens under the new rate, within the new capacity.
func TestUnitsBucketDebtBounded(t *testing.T) {
	r := newRig(t, "units:rate=100/1s,concurrency=0")
	c, err := r.m.AcquireCost(context.Background(), meter.Holder{PID: 1}, 10, true)
	require.NoError(t, err)
	next := func() time.Duration {
		t.Helper()
		s := r.m.Status()
		if s.Next.OK {
			return 0
		}
		return s.Next.At.Sub(s.Now)
	}
	require.NoError(t, r.m.Settle(c.ID, meter.MaxUnits))
	require.Equal(t, 1010*time.Millisecond, next(), "next grant after a debt of 2^50: one period (1 s) beyond an empty bucket")
	require.NoError(t, r.m.Settle(c.ID, 0))
	require.Equal(t, time.Duration(0), next(), "settled back to 0: the 10 units charged at the grant are refunded, no more")
	require.NoError(t, r.m.Settle(c.ID, 100))
	require.Equal(t, 10*time.Millisecond, next(), "a debt of 100 units: the bucket is empty")
	r.at(5 * time.Millisecond)
	require.NoError(t, r.m.Settle(c.ID, meter.MaxUnits))
	require.NoError(t, r.m.SetSpec(mustSpec(t, "units:rate=10/1s,concurrency=0")))
	require.Equal(t, 1100*time.Millisecond, next(), "200 tokens owed at 10/1s, at most one period beyond empty: 2 s, less the burst's 9")
	require.NoError(t, r.m.SetSpec(mustSpec(t, "units:rate=1000/1s,units:burst=10,concurrency=0")))
	require.Equal(t, 11*time.Millisecond, next(), "20 tokens owed at 1000/1s: 20 ms, less the burst's 9")
	require.NoError(t, r.m.Settle(c.ID, 1))
	require.Equal(t, time.Duration(0), next(), "settled to 1: its debt is refunded")
}
