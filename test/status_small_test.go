package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// rlfsStatus runs rlfs status with args and returns its stdout, stderr and
// exit code.
func rlfsStatus(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(rlfsBin, append([]string{"status"}, args...)...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errOut.String(), ee.ExitCode()
	}
	require.NoError(t, err, "rlfs status %s", strings.Join(args, " "))
	return out.String(), errOut.String(), 0
}

// statusJSON is what rlfs status --json prints.
type statusJSON struct {
	Meters []struct {
		Meter      string         `json:"meter"`
		Limits     string         `json:"limits"`
		InProgress int            `json:"in_progress"`
		Waiting    *int           `json:"waiting"`
		Counters   map[string]int `json:"counters"`
	} `json:"meters"`
}

// TestStatusReadsStatusJSON pins a design flaw: rlfs status parsed the
// human text of each status file back with Sscanf. The daemon now serves
// each meter's status as JSON too (status.json, looked up but not listed,
// so ls shows what it did), and rlfs status --json is made of those.
func TestStatusReadsStatusJSON(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "api=2/1s,10/1h,concurrency=2")
	holder := pyHold(t, d.path("api", "acquire"))
	d.waitEntries(t, "api", "holders", 1)

	require.Equal(t, []string{"acquire", "holders", "limits", "status", "waiters"}, d.entries(t, "api", "."))
	b, err := os.ReadFile(d.path("api", "status.json"))
	require.NoError(t, err)
	var r struct {
		Meter       string `json:"meter"`
		Limits      string `json:"limits"`
		InProgress  int    `json:"in_progress"`
		Concurrency int    `json:"concurrency"`
		Waiting     *int   `json:"waiting"`
		Windows     []struct {
			Limit string `json:"limit"`
			Used  int    `json:"used"`
			Free  int    `json:"free"`
		} `json:"windows"`
		NextGrant string         `json:"next_grant"`
		Counters  map[string]int `json:"counters"`
	}
	require.NoError(t, json.Unmarshal(b, &r), "status.json: %s", b)
	text := d.status(t, "api")
	require.Equal(t, "api", r.Meter)
	require.Equal(t, text["limits"], r.Limits)
	require.Equal(t, 1, r.InProgress)
	require.Equal(t, 2, r.Concurrency)
	require.NotNil(t, r.Waiting)
	require.Equal(t, 0, *r.Waiting)
	require.Len(t, r.Windows, 2)
	require.Equal(t, "2/1s", r.Windows[0].Limit)
	require.Equal(t, 1, r.Windows[0].Used)
	require.Equal(t, 1, r.Windows[0].Free)
	require.Equal(t, "now", r.NextGrant)
	require.Equal(t, 1, r.Counters["grants_total"])
	require.Equal(t, text["grants_total"], "1")

	out, errOut, code := rlfsStatus(t, "--json", d.mnt)
	require.Equal(t, 0, code, errOut)
	var st statusJSON
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	require.Len(t, st.Meters, 1)
	require.Equal(t, 1, st.Meters[0].InProgress)
	holder.release(t)
}
