package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"unicode/utf8"

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

// TestStatusOfPathsThatAreNotAMount pins a bug: rlfs status /tmp failed with
// "read status of "x": not a directory", and rlfs status MOUNT/METER with
// a similar riddle. A meter's directory shows that meter; a path that is no
// rlfs mount says so and what to pass instead.
func TestStatusOfPathsThatAreNotAMount(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "api=2/1s", "email=1/s")
	_, code := sh(t, "cat "+d.path("api", "acquire"))
	require.Equal(t, 0, code)

	out, errOut, code := rlfsStatus(t, d.path("api"))
	require.Equal(t, 0, code, "rlfs status MOUNT/api: %s", errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, "a header and the one meter:\n%s", out)
	require.Regexp(t, `^api\s+2/1s,concurrency=1\s+\d of 2/1s\s`, lines[1])

	out, errOut, code = rlfsStatus(t, "--json", d.path("api")+"/")
	require.Equal(t, 0, code, errOut)
	var st statusJSON
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	require.Len(t, st.Meters, 1)
	require.Equal(t, "api", st.Meters[0].Meter)
	require.Equal(t, 1, st.Meters[0].Counters["grants_total"])

	plain := t.TempDir()
	require.NoError(t, os.WriteFile(plain+"/file", nil, 0o644))
	for _, tc := range []struct{ path, want string }{
		{plain, plain + " is not an rlfs mount"},
		{plain + "/missing", "does not exist"},
		{plain + "/file", "not a directory"},
		{d.path("api", "holders"), "is inside the rlfs mount at " + d.mnt + " but is not a meter"},
		{d.path("nosuch"), `no meter "nosuch"`},
	} {
		out, errOut, code := rlfsStatus(t, tc.path)
		require.Equal(t, 1, code, "rlfs status %s: %s%s", tc.path, out, errOut)
		require.Empty(t, out)
		require.Equal(t, 1, strings.Count(errOut, "\n"), "one line: %q", errOut)
		require.Contains(t, errOut, tc.want, "rlfs status %s", tc.path)
		require.NotContains(t, errOut, "read status of", "rlfs status %s", tc.path)
	}
	_, errOut, _ = rlfsStatus(t, plain)
	require.Contains(t, errOut, "pass the mountpoint of rlfs mount")
	require.Contains(t, errOut, "--db PATH")
	_, errOut, _ = rlfsStatus(t, d.path("api", "holders"))
	require.Contains(t, errOut, "rlfs status "+d.mnt)
}

// TestStatusTableCapsLongNames pins a bug: a meter with a 255-byte name
// padded every row of rlfs status's table to 255 columns. The table
// shortens it; --json keeps it whole.
func TestStatusTableCapsLongNames(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("n", 250) + "-last"
	d := startDaemon(t, "a=1/s", long+"=1/s")
	out, errOut, code := rlfsStatus(t, d.mnt)
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	for _, l := range lines {
		require.Less(t, utf8.RuneCountInString(l), 120, "a row is padded by the long name:\n%s", out)
	}
	require.Regexp(t, `^a {2,42}1/1s,`, lines[1])
	require.Contains(t, lines[2], "…"+strings.Repeat("n", 15)+"-last", "the shortened name keeps its end")

	out, errOut, code = rlfsStatus(t, "--json", d.mnt)
	require.Equal(t, 0, code, errOut)
	var st statusJSON
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	require.Len(t, st.Meters, 2)
	require.Equal(t, long, st.Meters[1].Meter, "--json gives the whole name")
}

// TestStatusReadsStatusJSON pins a design flaw: rlfs status parsed the
// human text of each status file back with Sscanf. The daemon now serves
// each meter's status as JSON too (status.json, looked up but not listed,
// so ls shows what it did), and rlfs status --json is made of those.
func TestStatusReadsStatusJSON(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "api=2/1s,10/1h,concurrency=2")
	holder := shHold(t, d.path("api", "acquire"))
	d.waitEntries(t, "api", "holders", 1)

	require.Equal(t, []string{"acquire", "data", "holders", "limits", "pause", "status", "waiters"}, d.entries(t, "api", "."))
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
	_, err = holder.stdin.Write([]byte("\n"))
	require.NoError(t, err)
	holder.requireSuccess(t, pollTimeout)
}
