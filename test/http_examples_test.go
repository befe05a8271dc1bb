package test

// The HTTP recipes of examples/http (issue 18, item 2): curl by hand, curl
// under rlfs run, Python requests and Node fetch. Each is run against a
// local API that answers 429 with Retry-After past its quota, two copies at
// once on one meter: after a 429, the meter is paused (by the recipe,
// through its acquire descriptor) and no request, from either copy, reaches
// the API before the Retry-After has passed.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// httpRecipe is one recipe of examples/http and how to run it.
type httpRecipe struct {
	file  string
	argv  func(t *testing.T, script string) []string // the command line, resolved interpreters first
	pause string                                     // what its output says at each pause
}

var httpRecipes = []httpRecipe{
	{"curl.sh", func(t *testing.T, s string) []string {
		needTool(t, "curl", "curl")
		return []string{bash.need(t), s}
	}, ": meter paused"},
	{"curl-rlfs-run.sh", func(t *testing.T, s string) []string {
		needTool(t, "curl", "curl")
		return []string{bash.need(t), s}
	}, ": meter paused (rlfs run says for how long)"},
	{"requests_client.py", func(t *testing.T, s string) []string { return []string{needPythonRequests(t), s} }, ": meter paused"},
	{"fetch_client.js", func(t *testing.T, s string) []string { return []string{node.need(t), s} }, ": meter paused"},
}

// TestHTTPExamples runs each recipe of examples/http, two copies at once
// with 3 requests each, on a meter api=concurrency=1 (which alone would let
// them call as fast as they can) against an API that accepts 2 requests a
// window, then answers 429 until its Retry-After has passed: 1 (seconds),
// then an HTTP-date about 2 s ahead. Every request is done in the end,
// with exactly two 429s (the third and the sixth request: none came before
// a Retry-After had passed, from either copy); the recipes said so once per
// 429; the 429s paused the meter through an acquire descriptor (each one
// given in seconds, at least: a date that has passed by the time a slow
// client writes it sets nothing).
func TestHTTPExamples(t *testing.T) {
	t.Parallel()
	for _, r := range httpRecipes {
		t.Run(r.file, func(t *testing.T) {
			t.Parallel()
			script, err := filepath.Abs(filepath.Join("..", "examples", "http", r.file))
			require.NoError(t, err)
			argv := r.argv(t, script)
			api := startLimitedAPI(t, 2, 1, true)
			d := startDaemon(t, "api=concurrency=1")
			env := []string{"RLFS_MNT=" + d.mnt, "API_URL=" + api.url, "REQUESTS=3", "MAX_RETRIES=20",
				"PATH=" + filepath.Dir(rlfsBin) + string(os.PathListSeparator) + interpreterPATH()}
			start := time.Now()
			var ps []*proc
			for range 2 {
				ps = append(ps, startProcIn(t, t.TempDir(), env, argv[0], argv[1:]...))
			}
			var out strings.Builder
			for _, p := range ps {
				p.requireSuccess(t, loaded(20*time.Second))
				require.Contains(t, p.stdout.String(), "3 of 3 requests done", "%s's summary", r.file)
				out.WriteString(p.stdout.String())
			}
			hits := api.record()
			accepted, throttled := counts(hits)
			t.Logf("FIGURE %s: 2 clients x 3 requests: %d sent, %d answered 429, in %s", r.file, len(hits), throttled, fmtMS(time.Since(start)))
			require.Equal(t, 6, accepted, "requests the API accepted\n%s", out.String())
			require.Empty(t, earlyAfterPause(hits), "requests before a 429's Retry-After had passed\n%s", out.String())
			require.Equal(t, 2, throttled, "429s: the third and the sixth request\n%s", out.String())
			require.Equal(t, throttled, strings.Count(out.String(), r.pause), "one pause line per 429 in the recipes' output\n%s", out.String())
			pauses := d.loggedPauses(t, "api")
			require.GreaterOrEqual(t, len(pauses), 1, "the 429 in seconds paused the meter\n%s", d.log.String())
			require.LessOrEqual(t, len(pauses), throttled, "at most one pause per 429\n%s", d.log.String())
			for _, p := range pauses {
				require.Equal(t, "an acquire descriptor", p.from)
			}
			require.Equal(t, fmt.Sprint(len(hits)), d.status(t, "api")["grants_total"], "one call of the meter per request sent")
		})
	}
}
