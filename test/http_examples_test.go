package test

// The HTTP recipes of examples/http (issue 18, item 2): curl by hand, curl
// under rlfs run, Python requests and Node fetch. Each is run against a
// local API that answers 429 with Retry-After past its rate, two copies at
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
// them call as fast as they can) against an API of 1 request a second in
// bursts of 2, whose 429s say Retry-After: 1, or an HTTP-date about as far
// ahead (every other one). Every request is done in the end; there was at
// least one 429; each 429 paused the meter, set by the recipe through its
// acquire descriptor; and no request reached the API before the
// Retry-After of a 429 before it had passed.
func TestHTTPExamples(t *testing.T) {
	t.Parallel()
	for _, r := range httpRecipes {
		t.Run(r.file, func(t *testing.T) {
			t.Parallel()
			script, err := filepath.Abs(filepath.Join("..", "examples", "http", r.file))
			require.NoError(t, err)
			argv := r.argv(t, script)
			api := startLimitedAPI(t, 1, 2, 1, true)
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
			require.GreaterOrEqual(t, throttled, 1, "the API's rate was passed: at least one 429\n%s", out.String())
			require.Empty(t, earlyAfterPause(hits), "requests before a 429's Retry-After had passed\n%s", out.String())
			require.Equal(t, throttled, strings.Count(out.String(), r.pause), "one pause line per 429 in the recipes' output\n%s", out.String())
			pauses := d.loggedPauses(t, "api")
			require.Len(t, pauses, throttled, "the daemon paused the meter once per 429\n%s", d.log.String())
			for _, p := range pauses {
				require.Equal(t, "an acquire descriptor", p.from)
			}
			require.Equal(t, fmt.Sprint(len(hits)), d.status(t, "api")["grants_total"], "one call of the meter per request sent")
		})
	}
}
