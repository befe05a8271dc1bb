package test

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// rlfsTop runs rlfs top with args and returns its stdout, stderr and exit
// code.
func rlfsTop(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(rlfsBin, append([]string{"top"}, args...)...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errOut.String(), ee.ExitCode()
	}
	require.NoError(t, err, "rlfs top %s", strings.Join(args, " "))
	return out.String(), errOut.String(), 0
}

// topTable is the table of a frame: its lines from the METER header on.
func topTable(t *testing.T, frame string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(frame, "\n"), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "METER ") {
			return lines[i:]
		}
	}
	t.Fatalf("no table in the frame:\n%s", frame)
	return nil
}

// waitWaiting polls until the meter's status says it has n waiters.
func (d *daemon) waitWaiting(t *testing.T, meterName string, n int) {
	t.Helper()
	d.waitStatus(t, meterName, "waiting", strconv.Itoa(n))
}

// startWaiter starts a shell that blocks opening acq (its grant is never
// awaited: cleanup kills it).
func startWaiter(t *testing.T, acq string) *proc {
	t.Helper()
	return startProc(t, "sh", "-c", `exec 3<"$1" && echo granted && { read x || :; }`, "sh", acq)
}

// TestTopOnceSQLite pins issue 18's item 3 on one host: rlfs top --once
// prints one frame: a title, how many meters, and the table of every
// meter sorted by how close to a limit it is (a held serial meter with a
// waiter at 100 %, a units window at 70 %, a window at 30 %, an idle meter
// last), each limit a bar with its numbers and units, in progress and
// waiting on the meter's first line; no grant was made between its two
// readings, so every rate is 0.0.
func TestTopOnceSQLite(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "serial=concurrency=1", "llm=units:1000/1h,concurrency=0", "email=10/1h,concurrency=0", "idle=5/1h")
	shHold(t, d.path("serial", "acquire"))
	startWaiter(t, d.path("serial", "acquire"))
	d.waitWaiting(t, "serial", 1)
	shHold(t, d.path("llm", "acquire@700"))
	for range 3 {
		require.NoError(t, openNonblock(d.path("email", "acquire")))
	}
	d.waitStatus(t, "email", "in_progress", "0 of unlimited") // the last RELEASE arrives after close returns

	out, errOut, code := rlfsTop(t, "--once", d.mnt)
	require.Equal(t, 0, code, "rlfs top --once:\n%s%s", out, errOut)
	require.Empty(t, errOut)
	lines := strings.Split(out, "\n")
	require.Regexp(t, `^rlfs top `+regexp.QuoteMeta(d.mnt)+` at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z, every 1s; sorted by use \(closest to a limit first\); filter: none$`, lines[0])
	require.Equal(t, "4 meters shown", lines[1])
	require.Equal(t, "", lines[2])
	require.Equal(t, []string{
		"METER   LIMIT          USE                          USED               IN PROGRESS  WAITING  GRANTS/S  NEXT GRANT       PAUSE",
		"serial  concurrency=1  [####################] 100%  1 of 1 calls       1            1        0.0       after a release  -",
		"llm     units:1000/1h  [##############......]  70%  700 of 1000 units  1            0        0.0       now              -",
		"email   10/1h          [######..............]  30%  3 of 10 calls      0            0        0.0       now              -",
		"idle    5/1h           [....................]   0%  0 of 5 calls       0            0        0.0       now              -",
		"        concurrency=1  [....................]   0%  0 of 1 calls",
	}, topTable(t, out), "frame:\n%s", out)

	out, errOut, code = rlfsTop(t, "--once", "--sort", "name", "--filter", "E", "--interval", "200ms", d.mnt)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, ", every 200ms; sorted by name; filter: \"E\"\n3 meters shown, 1 meter left out by the filter\n")
	table := topTable(t, out)
	require.Len(t, table, 5, "frame:\n%s", out)
	require.Regexp(t, `^email\s`, table[1])
	require.Regexp(t, `^idle\s`, table[2])
	require.Regexp(t, `^serial\s`, table[4])
}

// TestTopOnceFleet: on a 2-host fleet, rlfs top --once on h1 says which
// host it is and that the store answers, counts calls in progress and
// waiters of both hosts, shows the hosts of each meter, and its grants/s
// counts the grants made through h2 (a meter only h2 has used lists h2
// alone).
func TestTopOnceFleet(t *testing.T) {
	t.Parallel()
	_, ds := fleet(t, 2, nil, "serial=concurrency=1", "shared=10/1h,concurrency=0", "busy=1000000/1h,concurrency=0")
	h1, h2 := ds[0], ds[1]
	shHold(t, h2.path("serial", "acquire"))
	startWaiter(t, h1.path("serial", "acquire"))
	h1.waitWaiting(t, "serial", 1)
	shHold(t, h1.path("shared", "acquire"))
	shHold(t, h2.path("shared", "acquire"))
	// Grants through h2 all along, a few dozen a second at most.
	startProc(t, "sh", "-c", `while :; do cat "$1" >/dev/null; sleep 0.05; done`, "sh", h2.path("busy", "acquire"))
	waitFor(t, "h2 grants calls of busy", func() bool { return h1.status(t, "busy")["grants_total"] != "0" }, nil)

	out, errOut, code := rlfsTop(t, "--once", "--interval", "2s", h1.mnt)
	require.Equal(t, 0, code, "rlfs top --once:\n%s%s", out, errOut)
	require.Empty(t, errOut)
	lines := strings.Split(out, "\n")
	require.Regexp(t, `^rlfs top `+regexp.QuoteMeta(h1.mnt)+` at \S+, every 2s; sorted by use \(closest to a limit first\); filter: none$`, lines[0])
	require.Equal(t, "host h1, in a fleet with h1, h2; the shared store answers", lines[1])
	require.Equal(t, "3 meters shown", lines[2])
	table := topTable(t, out)
	require.Len(t, table, 4, "frame:\n%s", out)
	require.Regexp(t, `^METER\s+LIMIT\s+USE\s+USED\s+IN PROGRESS\s+WAITING\s+GRANTS/S\s+NEXT GRANT\s+PAUSE\s+HOSTS$`, table[0])
	require.Regexp(t, `^serial\s+concurrency=1\s+\[#{20}\] 100%\s+1 of 1 calls\s+1\s+1\s+0\.0\s+after a release\s+-\s+h1,h2$`, table[1], "frame:\n%s", out)
	require.Regexp(t, `^shared\s+10/1h\s+\[#{4}\.{16}\]  20%\s+2 of 10 calls\s+2\s+0\s+0\.0\s+now\s+-\s+h1,h2$`, table[2], "frame:\n%s", out)
	m := regexp.MustCompile(`^busy\s+1000000/1h\s+\[#\.{19}\]   0%\s+(\d+) of 1000000 calls\s+[01]\s+0\s+(\d+\.\d)\s+now\s+-\s+h2$`).FindStringSubmatch(table[3])
	require.NotNil(t, m, "busy's row: %q\nframe:\n%s", table[3], out)
	rate, err := strconv.ParseFloat(m[2], 64)
	require.NoError(t, err)
	require.Greater(t, rate, 0.0, "h2's grants are not in h1's grants/s")
	require.LessOrEqual(t, rate, 25.0, "more grants/s than the loop can make")
}

// TestTopOtherUser: another user's rlfs top shows the meters they may
// read and marks the others, as rlfs status does; asking for an
// unreadable meter alone fails with who may read it.
func TestTopOtherUser(t *testing.T) {
	t.Parallel()
	user, uid, _ := testUser(t)
	d := startPermsDaemon(t, "priv=1/1s", "pub=5/1h")
	require.NoError(t, os.Chmod(d.path("priv"), 0o700))
	require.NoError(t, openNonblock(d.path("pub", "acquire")))
	d.waitStatus(t, "pub", "in_progress", "0 of 1")
	bin := reachableCopy(t, rlfsBin)
	top := func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		argv := append([]string{"--reuid=" + user, "--regid=" + user, "--init-groups", "--", bin, "top", "--once", "--interval", "200ms"}, args...)
		p := startProc(t, "setpriv", argv...)
		_ = p.wait(t, pollTimeout)
		return p.stdout.String(), p.stderr.String(), p.exitCode()
	}
	out, errOut, code := top(d.mnt)
	require.Equal(t, 0, code, "rlfs top as %s:\n%s%s", user, out, errOut)
	require.Empty(t, errOut)
	require.Contains(t, out, "\n1 meter shown, 1 meter not readable by this user\n")
	require.Equal(t, []string{
		"METER  LIMIT          USE                          USED          IN PROGRESS  WAITING  GRANTS/S  NEXT GRANT  PAUSE",
		"pub    5/1h           [####................]  20%  1 of 5 calls  0            0        0.0       now         -",
		"       concurrency=1  [....................]   0%  0 of 1 calls",
		fmt.Sprintf("priv   not readable by this user (uid %d): permission denied", uid),
	}, topTable(t, out), "frame:\n%s", out)

	out, errOut, code = top(d.path("priv"))
	require.Equal(t, 1, code, "rlfs top of the unreadable meter alone:\n%s%s", out, errOut)
	require.Empty(t, out)
	require.Regexp(t, `^rlfs: meter "priv" of the rlfs mount at `+regexp.QuoteMeta(d.mnt)+` is not readable by this user \(uid \d+\) \(.*permission denied\); run rlfs top as its owner, a member of its group or root \(see ls -ld `+regexp.QuoteMeta(d.path("priv"))+`\), or chmod the meter\n$`, errOut)
}
