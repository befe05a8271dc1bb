package test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWeightedClients runs weighted calls from shell (exec 3<>acquire@N,
// echo N >&3), Python (open(p, "r+"), write, close) and Go (os.OpenFile
// O_RDWR) clients at once on units:100/1s,concurrency=3, some settling
// less than their estimate (refunds), some more (debt), some not at all,
// and proves from their own logs that no span of 1 s held more than 100
// units (by actual cost once settled; debt only delays later calls, see
// unitWindowViolations) and that no more than 3 were in progress; and that
// the meter's counters agree with the clients: calls, units granted,
// settlements and units settled.
func TestWeightedClients(t *testing.T) {
	t.Parallel()
	const spec = "units:100/1s,concurrency=3"
	d := startDaemon(t, "llm="+spec)
	logs := t.TempDir()
	ms := time.Millisecond
	clients := []unitsClient{
		{kind: "sh", id: "sh1", calls: 3, hold: 50 * ms, costs: []int64{30, 50, 20}, actuals: []string{"10", "-", "45"}},
		{kind: "sh", id: "sh2", calls: 2, hold: 30 * ms, costs: []int64{60, 15}, actuals: []string{"20", "15"}},
		{kind: "python", id: "py1", threads: 2, calls: 3, hold: 30 * ms, costs: []int64{40, 20, 60}, actuals: []string{"25", "30", "-"}},
		{kind: "go", id: "go1", calls: 3, hold: 50 * ms, costs: []int64{25, 45, 35}, actuals: []string{"-", "5", "50"}},
		{kind: "go", id: "go2", calls: 2, hold: 20 * ms, costs: []int64{70, 10}, actuals: []string{"30", "0"}},
	}
	var procs []*proc
	want := 0
	var wantUnits, wantSettled, wantSettledUnits int64
	for _, c := range clients {
		for i := range c.calls {
			n := int64(max(c.threads, 1))
			want += int(n)
			wantUnits += n * c.costs[i%len(c.costs)]
			if a := c.actuals[i%len(c.actuals)]; a != "-" {
				v, err := strconv.ParseInt(a, 10, 64)
				require.NoError(t, err)
				wantSettled += n
				wantSettledUnits += n * v
			}
		}
		procs = append(procs, startUnitsClient(t, d.path("llm", "acquire"), logs, c))
	}
	for _, p := range procs {
		p.requireSuccess(t, loaded(10*time.Second)+pollTimeout)
	}
	calls := readUnitCalls(t, logs)
	require.Len(t, calls, want, "calls logged:\n%s", formatUnitCalls(calls))
	for _, c := range clients {
		require.True(t, hasClient(plainCalls(calls), c.id), "no call logged by %s", c.id)
	}
	checkUnitCalls(t, calls, spec)
	var actual int64
	for _, c := range calls {
		actual += c.units()
	}
	t.Logf("FIGURE %d weighted calls, %d units by actual cost, took %v on %s\ncalls:\n%s", len(calls), actual,
		span(plainCalls(calls)).Round(time.Millisecond), spec, formatUnitCalls(calls))

	d.waitStatus(t, "llm", "in_progress", "0 of 3")
	st := d.status(t, "llm")
	require.Equal(t, strconv.Itoa(want), st["grants_total"])
	require.Equal(t, strconv.FormatInt(wantUnits, 10), st["units_granted_since_start"])
	require.Equal(t, strconv.FormatInt(wantSettled, 10), st["settled_since_start"])
	require.Equal(t, strconv.FormatInt(wantSettledUnits, 10), st["units_settled_since_start"])
}
