package test

// Helpers of the fleet's fault tests (fleet_faults_*_test.go): client
// processes that keep calling through faults, and the checks over their logs.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// loadGroup is a set of faults.py loop clients, on one or several hosts'
// mounts of a meter, that keep calling until stop. Each logs its calls
// (checker_test.go's format) and its failed opens, reads and closes.
type loadGroup struct {
	logs, errs, stopFile string
	procs                []*proc
}

func newLoadGroup(t *testing.T) *loadGroup {
	t.Helper()
	return &loadGroup{logs: t.TempDir(), errs: t.TempDir(), stopFile: filepath.Join(t.TempDir(), "stop")}
}

// add starts n clients calling acq, each holding a random time up to
// maxHold seconds, named id-0 … id-(n-1).
func (g *loadGroup) add(t *testing.T, acq, id string, n int, maxHold string) {
	t.Helper()
	for k := range n {
		name := fmt.Sprintf("%s-%d", id, k)
		g.procs = append(g.procs, startPy(t, faultsPy(), "loop", acq, name, maxHold, g.stopFile,
			filepath.Join(g.logs, name+".log"), filepath.Join(g.errs, name+".errs")))
	}
}

// stop tells the clients to stop after their current call and waits for them.
func (g *loadGroup) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, os.WriteFile(g.stopFile, nil, 0o644))
	for _, p := range g.procs {
		p.requireSuccess(t, pollTimeout)
	}
}

// calls reads every client's calls, sorted by grant time.
func (g *loadGroup) calls(t *testing.T) []call { t.Helper(); return readCalls(t, g.logs) }

// callsOf is calls of the clients whose id starts with prefix.
func (g *loadGroup) callsOf(t *testing.T, prefix string) []call {
	t.Helper()
	var out []call
	for _, c := range g.calls(t) {
		if strings.HasPrefix(c.client, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// failures lists what the clients logged as failed: "CLIENT: op ERRNO ...".
func (g *loadGroup) failures(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(g.errs, "*.errs"))
	require.NoError(t, err)
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if line != "" {
				out = append(out, strings.TrimSuffix(filepath.Base(f), ".errs")+": "+line)
			}
		}
	}
	return out
}

// waitCalls polls until the clients whose id starts with prefix logged at
// least n calls granted after since.
func (g *loadGroup) waitCalls(t *testing.T, prefix string, n int, since time.Time) {
	t.Helper()
	count := func() int {
		k := 0
		for _, c := range g.callsOf(t, prefix) {
			if c.grant.After(since) {
				k++
			}
		}
		return k
	}
	waitFor(t, fmt.Sprintf("%d calls of %s* granted", n, prefix), func() bool { return count() >= n },
		func() string { return fmt.Sprintf("%d so far; failures: %q", count(), g.failures(t)) })
}

// grants is a meter's grants_total as a host's status says it.
func (d *daemon) grants(t *testing.T, meterName string) int {
	t.Helper()
	n, err := strconv.Atoi(d.status(t, meterName)["grants_total"])
	require.NoError(t, err)
	return n
}

// waitersResult is one line of faults.py waiters: an open that succeeded
// (ok) or failed with errno, at when, issued at asked.
type waitersResult struct {
	ok          bool
	errno       int
	when, asked time.Time
}

// waitersResults parses the answers faults.py waiters printed after "ready".
func waitersResults(t *testing.T, p *proc) []waitersResult {
	t.Helper()
	var out []waitersResult
	for _, line := range strings.Split(strings.TrimSpace(p.stdout.String()), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[0] == "ok":
			out = append(out, waitersResult{ok: true, when: unixNS(t, f[1]), asked: unixNS(t, f[2])})
		case len(f) == 4 && f[0] == "err":
			no, err := strconv.Atoi(f[1])
			require.NoError(t, err, "errno in %q", line)
			out = append(out, waitersResult{errno: no, when: unixNS(t, f[2]), asked: unixNS(t, f[3])})
		}
	}
	return out
}

// startWaiters starts faults.py waiters: n blocking opens of acq, and waits
// until it says they are started.
func startWaiters(t *testing.T, acq string, n int) *proc {
	t.Helper()
	p := startPy(t, faultsPy(), "waiters", acq, strconv.Itoa(n))
	p.waitOutput(t, "ready")
	return p
}
