package test

// The 429-storm experiment (examples/http/storm, issue 18), run small so
// that it keeps working: its figures are in docs/operations.md.

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stormResult is what `storm run -json` prints last.
type stormResult struct {
	Mode                                            string
	Clients, Requests, Sent, Throttled, Retries, OK int
	Failed, Accepted, Rejected                      int
	Seconds                                         float64
}

// TestStormSmall runs the storm with 3 clients of 4 requests each against an
// API of 4 requests a second in bursts of 2 (Retry-After: 1), through a
// meter concurrency=0,20/1s, without the pause and with it: every request is
// accepted in the end, the counts add up (sent = accepted + 429s, a retry per
// 429), the API's rate was passed, and only the run with the pause paused
// the meter (at least once, at most once per 429).
func TestStormSmall(t *testing.T) {
	t.Parallel()
	storm := filepath.Join(t.TempDir(), "storm")
	out, err := exec.Command(goTool(), "build", "-o", storm, "github.com/rlfs/rlfs/examples/http/storm").CombinedOutput()
	require.NoError(t, err, "go build storm: %s", out)
	d := startDaemon(t, "nopause=concurrency=0,20/1s", "pause=concurrency=0,20/1s")
	for _, mode := range []string{"nopause", "pause"} {
		p := startProc(t, storm, "run", "-meter", d.path(mode), "-pause="+strconv.FormatBool(mode == "pause"),
			"-clients", "3", "-requests", "4", "-rate", "4", "-burst", "2", "-retry-after", "1", "-json")
		p.requireSuccess(t, loaded(30*time.Second))
		var r stormResult
		lines := p.completeLines()
		require.NotEmpty(t, lines, "storm's output")
		require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &r), "storm's JSON: %q", p.stdout.String())
		t.Logf("FIGURE storm %s: %s", mode, lines[0])
		require.Equal(t, 12, r.Accepted, "requests the API accepted")
		require.Equal(t, 12, r.OK)
		require.Equal(t, 0, r.Failed)
		require.Equal(t, r.Accepted+r.Throttled, r.Sent, "sent = accepted + 429s")
		require.Equal(t, r.Throttled, r.Rejected, "the clients' 429s are the API's")
		require.Equal(t, r.Throttled, r.Retries, "one retry per 429")
		require.GreaterOrEqual(t, r.Throttled, 1, "12 requests at once passed the API's 2 + 4/s")
		require.Equal(t, strconv.Itoa(r.Sent), d.status(t, mode)["grants_total"], "one call of the meter per request sent")
		paused := len(d.loggedPauses(t, mode))
		if mode == "nopause" {
			require.Zero(t, paused, "no pause without -pause")
			continue
		}
		require.GreaterOrEqual(t, paused, 1, "the 429s paused the meter")
		require.LessOrEqual(t, paused, r.Throttled, "at most one pause set or extended per 429")
	}
}
