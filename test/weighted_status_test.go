package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// weightedReport is what a program reads of a meter with units items in
// status.json and rlfs status --json.
type weightedReport struct {
	Meter   string `json:"meter"`
	Windows []struct {
		Limit string `json:"limit"`
		Used  int    `json:"used"`
		Free  int    `json:"free"`
	} `json:"windows"`
	Buckets []struct {
		Item  string `json:"item"`
		Free  int    `json:"free"`
		Burst int    `json:"burst"`
	} `json:"buckets"`
	Counters map[string]int `json:"counters"`
}

// TestWeightedStatus: everywhere a call shows, its cost shows. With a call
// of 40 settled at 15 and a call of 30 held on units:100/1h, and a call of
// 60 taken from the bucket units:rate=100/1h: holders/ entries say cost:
// (and actual: once settled), a waiter's entry its cost:; status shows the
// window ("45 used, 55 free"), the bucket ("40 of 100 free") and the units
// counters; status.json and rlfs status --json carry the same, the table
// too; and the Prometheus metrics count units granted and settled.
func TestWeightedStatus(t *testing.T) {
	t.Parallel()
	addr := freePort(t)
	d := startDaemonFlags(t, []string{"--metrics", addr}, "w=units:100/1h,concurrency=0", "b=units:rate=100/1h,concurrency=0")
	settled := unitsHold(t, d.path("w", "acquire@40"))
	settled.settle(t, 15)
	plain := unitsHold(t, d.path("w", "acquire@30"))
	waiter := startUnitsHold(t, d.path("w", "acquire@90"))
	d.waitStatus(t, "w", "waiting", "1")
	holderHas(t, d, "w", settled.p.pid(), "state: holding", "cost: 40", "actual: 15")
	holderHas(t, d, "w", plain.p.pid(), "cost: 30")
	require.NotContains(t, holderEntry(t, d, "w", plain.p.pid()), "actual:", "an unsettled call's entry")
	ws := d.entries(t, "w", "waiters")
	require.Len(t, ws, 1)
	b, err := os.ReadFile(d.path("w", "waiters", ws[0]))
	require.NoError(t, err)
	require.Contains(t, strings.Split(string(b), "\n"), "cost: 90", "waiters/%s:\n%s", ws[0], b)

	c := startProc(t, "cat", d.path("b", "acquire@60"))
	c.requireSuccess(t, pollTimeout)
	d.waitStatus(t, "b", "in_progress", "0 of unlimited")

	st := d.status(t, "w")
	require.Equal(t, "45 used, 55 free", st["window units:100/1h"])
	require.Equal(t, "70", st["units_granted_since_start"])
	require.Equal(t, "1", st["settled_since_start"])
	require.Equal(t, "15", st["units_settled_since_start"])
	bst := d.status(t, "b")
	require.Equal(t, "40 of 100 free", bst["bucket units:rate=100/1h"])
	require.Equal(t, "concurrency=0,units:rate=100/1h,units:burst=100", bst["limits"], "the units bucket's burst defaults to its rate's N")

	byFile, byCmd := weightedReports(t, d)
	requireWeightedReports(t, byFile)
	requireWeightedReports(t, byCmd)
	table, err := exec.Command(rlfsBin, "status", d.mnt).Output()
	require.NoError(t, err)
	require.Regexp(t, `(?m)^b\s+concurrency=0,units:rate=100/1h,units:burst=100\s+60 of units:burst=100\s`, string(table))
	require.Regexp(t, `(?m)^w\s+units:100/1h,concurrency=0\s+45 of units:100/1h\s+2 of unlimited\s+1\s`, string(table))

	metrics := scrape(t, addr)
	require.Equal(t, 70.0, metrics[`rlfs_units_granted_total{meter="w"}`])
	require.Equal(t, 60.0, metrics[`rlfs_units_granted_total{meter="b"}`])
	require.Equal(t, 1.0, metrics[`rlfs_settlements_total{meter="w"}`])
	require.Equal(t, 15.0, metrics[`rlfs_units_settled_total{meter="w"}`])
	require.Equal(t, 0.0, metrics[`rlfs_settlements_total{meter="b"}`])
	require.Equal(t, 45.0, metrics[`rlfs_window_calls{meter="w",window="units:100/1h"}`], "a units window's series counts units")
	require.Equal(t, 100.0, metrics[`rlfs_window_limit_calls{meter="w",window="units:100/1h"}`])
	require.False(t, waiter.isGranted())
}

// weightedReports reads meters w and b as their status.json files say and
// as rlfs status --json says.
func weightedReports(t *testing.T, d *daemon) (byFile, byCmd map[string]weightedReport) {
	t.Helper()
	byFile, byCmd = map[string]weightedReport{}, map[string]weightedReport{}
	for _, m := range []string{"w", "b"} {
		var r weightedReport
		raw, err := os.ReadFile(d.path(m, "status.json"))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(raw, &r), "%s/status.json: %s", m, raw)
		byFile[m] = r
	}
	out, err := exec.Command(rlfsBin, "status", "--json", d.mnt).Output()
	require.NoError(t, err)
	var all struct {
		Meters []weightedReport `json:"meters"`
	}
	require.NoError(t, json.Unmarshal(out, &all), "rlfs status --json: %s", out)
	for _, r := range all.Meters {
		byCmd[r.Meter] = r
	}
	return byFile, byCmd
}

// requireWeightedReports checks the reports of meters w and b of
// TestWeightedStatus.
func requireWeightedReports(t *testing.T, rs map[string]weightedReport) {
	t.Helper()
	w, b := rs["w"], rs["b"]
	require.Len(t, w.Windows, 1)
	require.Equal(t, "units:100/1h", w.Windows[0].Limit)
	require.Equal(t, 45, w.Windows[0].Used)
	require.Equal(t, 55, w.Windows[0].Free)
	require.Equal(t, 70, w.Counters["units_granted_since_start"])
	require.Equal(t, 1, w.Counters["settled_since_start"])
	require.Equal(t, 15, w.Counters["units_settled_since_start"])
	require.Len(t, b.Buckets, 1)
	require.Equal(t, "units:rate=100/1h", b.Buckets[0].Item)
	require.Equal(t, 40, b.Buckets[0].Free)
	require.Equal(t, 100, b.Buckets[0].Burst)
}
