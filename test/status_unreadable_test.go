package test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestStatusSkipsUnreadableMeters pins issue 15's item 6: rlfs status
// MOUNT run by a user who may not read one meter (mode 0700, root's)
// failed whole ("open …/priv/status.json: permission denied", exit 1, no
// table, with --json too). It now shows the meters the user may read and
// marks the other: a row saying so in the table, an entry of "unreadable"
// in the JSON; exit status 0, since the listing worked. Asking for that
// one meter alone fails with a line saying who may read it.
func TestStatusSkipsUnreadableMeters(t *testing.T) {
	t.Parallel()
	user, uid, _ := testUser(t)
	d := startPermsDaemon(t, "priv=1/1s", "pub=1/1s")
	require.NoError(t, os.Chmod(d.path("priv"), 0o700))
	bin := reachableCopy(t, rlfsBin)
	status := func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		argv := append([]string{"--reuid=" + user, "--regid=" + user, "--init-groups", "--", bin, "status"}, args...)
		p := startProc(t, "setpriv", argv...)
		_ = p.wait(t, pollTimeout)
		return p.stdout.String(), p.stderr.String(), p.exitCode()
	}
	why := fmt.Sprintf("not readable by this user (uid %d): permission denied", uid)

	out, errOut, code := status(d.mnt)
	require.Equal(t, 0, code, "rlfs status %s as %s:\n%s%s", d.mnt, user, out, errOut)
	require.Empty(t, errOut)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 3, "table:\n%s", out)
	require.Regexp(t, `^METER\s+LIMITS\s+USAGE\s+IN PROGRESS\s+WAITING\s+NEXT GRANT$`, lines[0])
	require.Regexp(t, `^priv\s+-\s+-\s+-\s+-\s+`+regexp.QuoteMeta(why)+`$`, lines[1])
	require.Regexp(t, `^pub\s+1/1s,concurrency=1\s+0 of 1/1s\s+0 of 1\s+0\s+now\s*$`, lines[2])

	out, errOut, code = status("--json", d.mnt)
	require.Equal(t, 0, code, "rlfs status --json %s as %s:\n%s%s", d.mnt, user, out, errOut)
	require.Empty(t, errOut)
	var got struct {
		Meters []struct {
			Meter  string `json:"meter"`
			Limits string `json:"limits"`
		} `json:"meters"`
		Unreadable []map[string]string `json:"unreadable"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got), "JSON:\n%s", out)
	require.Len(t, got.Meters, 1, "JSON:\n%s", out)
	require.Equal(t, "pub", got.Meters[0].Meter)
	require.Equal(t, "1/1s,concurrency=1", got.Meters[0].Limits)
	require.Equal(t, []map[string]string{{"meter": "priv", "error": why}}, got.Unreadable, "JSON:\n%s", out)

	out, errOut, code = status(d.path("priv"))
	require.Equal(t, 1, code, "rlfs status of the unreadable meter alone:\n%s%s", out, errOut)
	require.Empty(t, out)
	require.Regexp(t, `^rlfs: meter "priv" of the rlfs mount at `+regexp.QuoteMeta(d.mnt)+` is not readable by this user \(uid \d+\) \(.*permission denied\); run rlfs status as its owner, a member of its group or root \(see ls -ld `+regexp.QuoteMeta(d.path("priv"))+`\), or chmod the meter\n$`, errOut)

	out, errOut, code = rlfsStatus(t, d.mnt) // root reads both
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `(?m)^priv\s+1/1s,concurrency=1\s+0 of 1/1s\s+0 of 1\s+0\s+now\s*$`, out)
}
