package test

// Helpers of the weighted-call tests (weighted_*_test.go): acquire@N,
// settlement writes, units windows and the units bucket (design §7,
// issue 10).

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// unitsClient describes one client process making weighted calls: call i
// costs costs[i%len] and settles actuals[i%len] ("-": no settlement).
type unitsClient struct {
	kind    string // sh (exec 3<>, echo N >&3), python (open(p, "r+")), go (os.OpenFile O_RDWR)
	id      string
	calls   int
	threads int // python only
	hold    time.Duration
	costs   []int64
	actuals []string
}

// startUnitsClient starts c against the meter whose acquire file is acq
// (the client opens acq@COST); it logs to logDir/<id>.log as
// parseUnitCall reads it.
func startUnitsClient(t *testing.T, acq, logDir string, c unitsClient) *proc {
	t.Helper()
	log := filepath.Join(logDir, c.id+".log")
	calls := strconv.Itoa(c.calls)
	var cs []string
	for _, n := range c.costs {
		cs = append(cs, strconv.FormatInt(n, 10))
	}
	costs, actuals := strings.Join(cs, ","), strings.Join(c.actuals, ",")
	switch c.kind {
	case "sh":
		hold := strconv.FormatFloat(c.hold.Seconds(), 'f', 3, 64)
		return startProc(t, bash.need(t), filepath.Join(clientsDir, "client.sh"), "units", acq, c.id, calls, hold, log, costs, actuals)
	case "python":
		hold := strconv.FormatFloat(c.hold.Seconds(), 'f', 3, 64)
		return startProc(t, python3.need(t), filepath.Join(clientsDir, "client.py"), "units", acq, c.id,
			strconv.Itoa(max(c.threads, 1)), calls, hold, log, costs, actuals)
	case "go":
		return startProc(t, goClientBin, "-acquire", acq, "-id", c.id, "-calls", calls, "-hold", c.hold.String(), "-log", log,
			"-costs", costs, "-actuals", actuals)
	}
	t.Fatalf("unknown weighted client kind %q", c.kind)
	return nil
}

// unitsHoldScript opens $1 with exec 3<> (read and write, as a user
// settling a weighted call does), prints "held ASKED_NS GRANT_NS LINE", then
// obeys its stdin: "settle N" writes N to the descriptor and prints
// "settled FROM_NS TO_NS" (before the write and after it returned) or
// "settle-failed"; at EOF it closes and prints "released RELEASE_NS
// CLOSED_NS" (right before and right after the close).
const unitsHoldScript = `a=${EPOCHREALTIME/./}
exec 3<>"$1" || exit 1
g=${EPOCHREALTIME/./}
IFS= read -r line <&3
echo "held ${a}000 ${g}000 $line"
while IFS= read -r cmd; do
	case $cmd in
	settle\ *)
		s=${EPOCHREALTIME/./}
		if echo "${cmd#settle }" >&3; then echo "settled ${s}000 ${EPOCHREALTIME/./}000"; else echo settle-failed; fi
		;;
	esac
done
r=${EPOCHREALTIME/./}
exec 3>&-
echo "released ${r}000 ${EPOCHREALTIME/./}000"
`

// unitsHolder is a shell holding a weighted call (unitsHoldScript).
type unitsHolder struct {
	p            *proc
	asked, grant time.Time
	line         string // the grant line read from the descriptor
}

// startUnitsHold starts a unitsHoldScript shell on acq (such as
// MNT/m/acquire@40) and returns at once; granted waits for its grant.
func startUnitsHold(t *testing.T, acq string) *unitsHolder {
	t.Helper()
	return &unitsHolder{p: startProc(t, bash.need(t), "-c", unitsHoldScript, "units-hold", acq)}
}

// unitsHold starts a unitsHoldScript shell and waits for its grant.
func unitsHold(t *testing.T, acq string) *unitsHolder {
	t.Helper()
	h := startUnitsHold(t, acq)
	h.granted(t)
	return h
}

// granted waits until the holder is granted and records its times.
func (h *unitsHolder) granted(t *testing.T) *unitsHolder {
	t.Helper()
	f := h.p.waitLineFields(t, "held", 1)
	h.asked, h.grant = unixNS(t, f[1]), unixNS(t, f[2])
	h.line = strings.Join(f[3:], " ")
	return h
}

// isGranted reports whether the holder has printed its grant.
func (h *unitsHolder) isGranted() bool {
	return strings.HasPrefix(h.p.stdout.String(), "held ")
}

// settle writes n to the descriptor and returns when the write began and
// when it returned; it requires the write to succeed.
func (h *unitsHolder) settle(t *testing.T, n int64) (from, to time.Time) {
	t.Helper()
	before := len(h.p.linesStarting("settled"))
	_, err := fmt.Fprintf(h.p.stdin, "settle %d\n", n)
	require.NoError(t, err)
	f := h.p.waitLineFields(t, "settled", before+1)
	return unixNS(t, f[1]), unixNS(t, f[2])
}

// release closes the holder's descriptor (it closes its stdin, and the
// shell closes fd 3) and returns the times right before and after the close.
func (h *unitsHolder) release(t *testing.T) (released, closed time.Time) {
	t.Helper()
	require.NoError(t, h.p.stdin.Close())
	h.p.requireSuccess(t, pollTimeout)
	f := h.p.waitLineFields(t, "released", 1)
	return unixNS(t, f[1]), unixNS(t, f[2])
}

// waitLineFields polls until stdout holds n lines whose first field is
// word and returns the fields of the n-th.
func (p *proc) waitLineFields(t *testing.T, word string, n int) []string {
	t.Helper()
	waitWithin(t, startTimeout, fmt.Sprintf("%s prints line %d starting %q", p.name, n, word), func() bool {
		return len(p.linesStarting(word)) >= n || p.exited()
	}, nil)
	found := p.linesStarting(word)
	require.GreaterOrEqual(t, len(found), n, "%s %s\nstdout:\n%s\nstderr:\n%s", p.name, p.state(), p.stdout.String(), p.stderr.String())
	return found[n-1]
}

// linesStarting returns the fields of each complete line of stdout (one
// that ends in a newline: a process's line may arrive in pieces) whose
// first field is word.
func (p *proc) linesStarting(word string) [][]string {
	var found [][]string
	for _, line := range p.completeLines() {
		if f := strings.Fields(line); len(f) > 0 && f[0] == word {
			found = append(found, f)
		}
	}
	return found
}

// completeLines are the lines of stdout that end in a newline.
func (p *proc) completeLines() []string {
	out := p.stdout.String()
	lines := strings.Split(out, "\n")
	return lines[:len(lines)-1] // the text after the last newline, if any, is incomplete
}

// pyWrites starts client.py writes: it opens acq with mode (rdwr, rdonly,
// wronly) and prints "held LINE" or "open-err ERRNO NAME"; write sends it
// one write.
func pyWrites(t *testing.T, acq, mode string) *proc {
	t.Helper()
	return startPy(t, filepath.Join(clientsDir, "client.py"), "writes", acq, mode)
}

// write makes a pyWrites process write data with one os.write and returns
// what it printed: "ok N" or "err ERRNO NAME".
func (p *proc) write(t *testing.T, data string) string {
	t.Helper()
	answers := func() int { return len(p.linesStarting("ok")) + len(p.linesStarting("err")) }
	before := answers()
	js, err := json.Marshal(data)
	require.NoError(t, err)
	_, err = fmt.Fprintf(p.stdin, "%s\n", js)
	require.NoError(t, err)
	var last string
	waitWithin(t, startTimeout, fmt.Sprintf("%s answers the write of %q", p.name, data), func() bool {
		if answers() > before {
			lines := p.completeLines()
			last = lines[len(lines)-1]
			return true
		}
		return p.exited()
	}, nil)
	require.NotEmpty(t, last, "%s %s\nstderr:\n%s", p.name, p.state(), p.stderr.String())
	return last
}

// unitsUsed is "U" of a status line "window units:…: U used, F free".
func unitsUsed(t *testing.T, st map[string]string, item string) int64 {
	t.Helper()
	v, ok := st["window "+item]
	require.True(t, ok, "status has no line for window %s: %v", item, st)
	used, _, ok := strings.Cut(v, " used, ")
	require.True(t, ok, "window %s: %q", item, v)
	n, err := strconv.ParseInt(used, 10, 64)
	require.NoError(t, err, "window %s: %q", item, v)
	return n
}

// waitUnitsUsed polls meter m's status until its units window item shows
// used units.
func (d *daemon) waitUnitsUsed(t *testing.T, m, item string, used int64) {
	t.Helper()
	want := fmt.Sprintf("%d used, ", used)
	var got string
	waitFor(t, fmt.Sprintf("status of %s shows %d units used in %s", m, used, item), func() bool {
		got = d.status(t, m)["window "+item]
		return strings.HasPrefix(got, want)
	}, func() string { return "last: " + got })
}
