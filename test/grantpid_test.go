package test

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// threadOpenScript opens argv[1] (acquire) from a thread that is not the
// main one, prints "line GRANT-LINE" and "ids PID TID", and holds the call,
// its thread alive, until stdin closes.
const threadOpenScript = `import os, sys, threading
def run():
    fd = os.open(sys.argv[1], os.O_RDONLY)
    print("line " + os.read(fd, 512).decode().strip(), flush=True)
    print("ids %d %d" % (os.getpid(), threading.get_native_id()), flush=True)
    sys.stdin.read()
    os.close(fd)
t = threading.Thread(target=run)
t.start()
t.join()
`

var grantPIDRE = regexp.MustCompile(` pid (\d+)`)

// threadHold starts threadOpenScript on acq and returns it once it holds,
// with its process id and the pid its grant line names.
func threadHold(t *testing.T, acq string) (p *proc, pid, linePID int) {
	t.Helper()
	p = startProc(t, python3.need(t), "-c", threadOpenScript, acq)
	p.waitOutput(t, "ids ")
	var ids []string
	for _, l := range strings.Split(p.stdout.String(), "\n") {
		if rest, ok := strings.CutPrefix(l, "ids "); ok {
			ids = strings.Fields(rest)
		}
	}
	require.Len(t, ids, 2, "python printed %q", p.stdout.String())
	require.NotEqual(t, ids[0], ids[1], "the open must come from a thread other than the main one")
	pid, err := strconv.Atoi(ids[0])
	require.NoError(t, err)
	m := grantPIDRE.FindStringSubmatch(p.stdout.String())
	require.NotNil(t, m, "no pid in the grant line: %q", p.stdout.String())
	linePID, err = strconv.Atoi(m[1])
	require.NoError(t, err)
	return p, pid, linePID
}

// TestGrantLineNamesTheProcess: the line read from acquire names the
// process (os.getpid()), not the thread that opened it; so does the
// holders/ entry.
func TestGrantLineNamesTheProcess(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	p, pid, linePID := threadHold(t, d.path("m", "acquire"))
	require.Equal(t, pid, linePID, "the grant line's pid: %q", p.stdout.String())
	names := d.waitEntries(t, "m", "holders", 1)
	require.Regexp(t, `^[0-9]{6}\.`+strconv.Itoa(pid)+`$`, names[0])
	require.NoError(t, p.stdin.Close())
	p.requireSuccess(t, pollTimeout)
}

// TestFleetGrantLineNamesTheProcess pins issue 15's item 5: on a fleet,
// a Python thread (not the main one) that opened acquire read "pid
// <thread id>" in its grant line, where the SQLite store gives the process
// id. Both now give the process id; and the holders/ entry on the other
// host names the process too (the store carries the process id), with
// cmd "-" there and the command line on the holder's own host.
func TestFleetGrantLineNamesTheProcess(t *testing.T) {
	t.Parallel()
	_, ds := fleet(t, 2, nil, "m=concurrency=1")
	p, pid, linePID := threadHold(t, ds[0].path("m", "acquire"))
	require.Equal(t, pid, linePID, "the grant line's pid: %q", p.stdout.String())
	for _, d := range ds {
		names := d.waitEntries(t, "m", "holders", 1)
		require.Regexp(t, `^[0-9]{6}\.`+strconv.Itoa(pid)+`@h1$`, names[0], "holders/ on %s", d.host())
		b, err := os.ReadFile(d.path("m", "holders", names[0]))
		require.NoError(t, err)
		kv := parseStatus(string(b))
		require.Equal(t, strconv.Itoa(pid), kv["pid"], "holders/%s on %s:\n%s", names[0], d.host(), b)
		if d == ds[0] {
			require.True(t, strings.HasPrefix(kv["cmd"], python3.need(t)+" -c "), "cmd on the holder's host:\n%s", b)
		} else {
			require.Equal(t, "-", kv["cmd"], "cmd on another host:\n%s", b)
		}
	}
	require.NoError(t, p.stdin.Close())
	p.requireSuccess(t, pollTimeout)
}
