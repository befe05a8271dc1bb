package test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pauseMetrics are the pause's metrics, which the dashboard shows and the
// daemon exports once the pause is merged (issue 18): until then they are
// the only names a query may use that the daemon does not export.
var pauseMetrics = []string{"rlfs_paused", "rlfs_pauses_total"}

// dashboard is the part of a Grafana dashboard's JSON the test reads.
type dashboard struct {
	Title      string      `json:"title"`
	UID        string      `json:"uid"`
	Panels     []dashPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type dashPanel struct {
	ID         int         `json:"id"`
	Title      string      `json:"title"`
	Type       string      `json:"type"`
	Datasource any         `json:"datasource"`
	GridPos    *struct{}   `json:"gridPos"`
	Panels     []dashPanel `json:"panels"` // a row's
	Targets    []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// exportedNames scrapes the daemon at addr and returns the names of the
// series it exports, from its "# TYPE" lines: a histogram's as _bucket,
// _sum and _count.
func exportedNames(t *testing.T, addr string) map[string]bool {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		switch f[3] {
		case "histogram":
			out[f[2]+"_bucket"], out[f[2]+"_sum"], out[f[2]+"_count"] = true, true, true
		case "summary":
			out[f[2]], out[f[2]+"_sum"], out[f[2]+"_count"] = true, true, true
		default:
			out[f[2]] = true
		}
	}
	return out
}

var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promBraces   = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promToken    = regexp.MustCompile(`\$?[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?|[0-9](?:[eE][+-]|[0-9a-zA-Z_.])*`)
	promKeywords = []string{"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring", "group_left", "group_right"}
)

// promMetricNames returns the metric names a PromQL expression selects:
// its identifiers less label matchers ({…}), ranges ([…]), groupings
// (by (…)), functions and aggregations (a name before "("), keywords,
// numbers and durations (0.99, 1e3, 5m) and Grafana's variables ($meter).
func promMetricNames(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	s = promBraces.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	var out []string
	for _, m := range promToken.FindAllStringSubmatch(s, -1) {
		tok := m[0]
		if m[1] != "" || strings.HasPrefix(tok, "$") || (tok[0] >= '0' && tok[0] <= '9') || slices.Contains(promKeywords, strings.ToLower(tok)) {
			continue
		}
		out = append(out, tok)
	}
	return out
}

// TestPromMetricNames checks the test's own PromQL reader.
func TestPromMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`histogram_quantile(0.99, sum by (meter, le) (rate(rlfs_wait_seconds_bucket{meter=~"$meter"}[$__rate_interval])))`: {"rlfs_wait_seconds_bucket"},
		`max by (meter, window) (rlfs_window_calls{meter=~"a|b"}) / max without (instance) (rlfs_window_limit_calls)`:      {"rlfs_window_calls", "rlfs_window_limit_calls"},
		`sum(rate(rlfs_grants_total[5m])) > 1e3 and on (meter) rlfs_waiters offset 1m`:                                     {"rlfs_grants_total", "rlfs_waiters"},
	} {
		require.Equal(t, want, promMetricNames(expr), expr)
	}
}

// TestGrafanaDashboard pins issue 18's item 5: every dashboard in
// docs/grafana parses as a Grafana dashboard (title, uid, panels with
// ids, positions, a data source and queries), shows what the issue asks
// (grants/s, wait p50/p99, usage against each limit, waiters, pauses,
// store outages, and holds), and every metric its queries and variables
// name is one a running daemon exports (scraped from its /metrics after
// a call was granted, held and released, and a pause where the daemon
// has them).
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	addr := freePort(t)
	d := startDaemonFlags(t, []string{"--metrics", addr}, "m=5/1h,concurrency=1")
	holdFor(t, d.path("m", "acquire"), 10*time.Millisecond)
	if _, err := os.Stat(d.path("m", "pause")); err == nil {
		require.NoError(t, os.WriteFile(d.path("m", "pause"), []byte("30s\n"), 0))
		require.NoError(t, os.WriteFile(d.path("m", "pause"), []byte("0\n"), 0))
	}
	waitFor(t, "the hold is observed", func() bool { return scrape(t, addr)[`rlfs_hold_seconds_count{meter="m"}`] == 1 }, nil)
	exported := exportedNames(t, addr)

	files, err := filepath.Glob("../docs/grafana/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files, "no dashboard in docs/grafana")
	for _, f := range files {
		checkDashboard(t, f, exported)
	}
}

// checkDashboard checks the dashboard in file f against the names the
// daemon exports.
func checkDashboard(t *testing.T, f string, exported map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(f)
	require.NoError(t, err)
	var dash dashboard
	require.NoError(t, json.Unmarshal(b, &dash), "%s is not JSON", f)
	require.NotEmpty(t, dash.Title, f)
	require.NotEmpty(t, dash.UID, f)
	used := map[string]bool{}
	check := func(where, expr string, names []string) {
		require.NotEmpty(t, names, "%s: %s: the query names no metric: %s", f, where, expr)
		for _, n := range names {
			used[n] = true
			if exported[n] {
				continue
			}
			if slices.Contains(pauseMetrics, n) {
				t.Logf("%s: %s: %s is not exported by this daemon yet (the pause is not merged)", f, where, n)
				continue
			}
			t.Errorf("%s: %s: the query names %s, which the daemon does not export: %s", f, where, n, expr)
		}
	}
	ids := map[int]bool{}
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			require.NotZero(t, p.ID, "%s: panel %q has no id", f, p.Title)
			require.False(t, ids[p.ID], "%s: two panels have id %d", f, p.ID)
			ids[p.ID] = true
			require.NotNil(t, p.GridPos, "%s: panel %q has no gridPos", f, p.Title)
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			require.NotNil(t, p.Datasource, "%s: panel %q has no datasource", f, p.Title)
			require.NotEmpty(t, p.Targets, "%s: panel %q has no query", f, p.Title)
			for _, tg := range p.Targets {
				require.NotEmpty(t, tg.RefID, "%s: panel %q", f, p.Title)
				check("panel "+p.Title, tg.Expr, promMetricNames(tg.Expr))
			}
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil {
			require.NoError(t, json.Unmarshal(v.Query, &q.Query), "%s: variable %s", f, v.Name)
		}
		m := regexp.MustCompile(`^label_values\(\s*([^,]+?)\s*,\s*\w+\s*\)$`).FindStringSubmatch(q.Query)
		require.NotNil(t, m, "%s: variable %s: %q is not label_values(METRIC, LABEL)", f, v.Name, q.Query)
		check("variable "+v.Name, q.Query, promMetricNames(m[1]))
	}
	for _, n := range []string{"rlfs_grants_total", "rlfs_wait_seconds_bucket", "rlfs_hold_seconds_bucket", "rlfs_window_calls",
		"rlfs_window_limit_calls", "rlfs_waiters", "rlfs_paused", "rlfs_pauses_total", "rlfs_store_writes_failing"} {
		require.True(t, used[n], "%s: no query shows %s", f, n)
	}
}
