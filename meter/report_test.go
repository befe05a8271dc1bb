package meter_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

// TestReportAgreesWithText: rlfs status builds its table and --json from a
// Report (a meter's status.json, or a stored meter's snapshot) instead of
// parsing the status text back; both come from one Snapshot and say the
// same thing.
func TestReportAgreesWithText(t *testing.T) {
	clk := metertest.NewClock()
	reg, err := meter.OpenLocal(metertest.NewMemStore(), meter.Options{Clock: clk})
	require.NoError(t, err)
	spec, err := meter.ParseSpec("10/1h,2/1s,concurrency=3")
	require.NoError(t, err)
	m, err := reg.Create("api", spec, meter.DefaultAttr())
	require.NoError(t, err)
	for range 3 {
		_, err = m.Enqueue(meter.Holder{PID: 1}, false)
		require.NoError(t, err)
	}
	snap := m.Status()
	r := snap.Report()
	text := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(snap.Text()), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		require.True(t, ok, "status line %q", line)
		text[k] = v
	}

	require.Equal(t, "api", r.Name)
	require.Equal(t, text["limits"], r.Limits)
	require.Equal(t, []meter.WindowReport{{Limit: "2/1s", Used: 2, Free: 0}, {Limit: "10/1h", Used: 2, Free: 8}}, r.Windows)
	for _, w := range r.Windows {
		require.Equal(t, text["window "+w.Limit], fmt.Sprintf("%d used, %d free", w.Used, w.Free))
	}
	require.Equal(t, text["in_progress"], fmt.Sprintf("%d of %d", r.InProgress, r.Concurrency))
	require.Equal(t, 2, r.InProgress)
	require.Equal(t, text["expired_holds"], fmt.Sprint(r.ExpiredHolds))
	require.NotNil(t, r.Waiting)
	require.Equal(t, 1, *r.Waiting, "the third open waits for the 2/1s window")
	require.Equal(t, text["waiting"], fmt.Sprint(*r.Waiting))
	require.Equal(t, text["next_grant"], r.NextGrant)
	require.Equal(t, "after a release", r.NextGrant, "two calls in progress fill the 2/1s window until they complete")
	require.Len(t, r.Counters, 10)
	for k, n := range r.Counters {
		require.Equal(t, text[k], fmt.Sprint(n), "counter %s", k)
	}
	require.Equal(t, uint64(2), r.Counters["grants_total"])

	// A stored meter (rlfs status --db) knows no waiters: null, not 0.
	stored := meter.SnapshotOf(meter.Stored{Name: "api", Spec: spec}, clk.Now().Add(time.Hour)).Report()
	require.Nil(t, stored.Waiting)
	require.Equal(t, "now", stored.NextGrant)
}
