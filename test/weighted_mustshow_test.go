package test

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The "Must show" list of issue 10 (weighted calls), each from real
// processes on a real mount.

// TestWeightedThreeOf40 is the first must-show: on
// units:100/1s,concurrency=0, three shells open acquire@40 at once: two are
// granted at once, the third about 1 s after the first completes. The
// second holds on until the third is granted, so the third waited for the
// first's units only (order); it is granted no earlier than 1 s after the
// first's release (strict), and about then (at most loaded(1s) after the
// first's close).
func TestWeightedThreeOf40(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "w=units:100/1s,concurrency=0")
	acq := d.path("w", "acquire@40")
	hs := []*unitsHolder{startUnitsHold(t, acq), startUnitsHold(t, acq), startUnitsHold(t, acq)}
	waitFor(t, "two of three acquire@40 are granted", func() bool { return countGranted(hs) >= 2 }, nil)
	d.waitStatus(t, "w", "waiting", "1")
	st := d.status(t, "w")
	require.Equal(t, "80 used, 20 free", st["window units:100/1s"], "status with two calls of 40 in progress")
	require.Equal(t, "2 of unlimited", st["in_progress"])
	var granted []*unitsHolder
	var third *unitsHolder
	for _, h := range hs {
		if h.isGranted() {
			granted = append(granted, h.granted(t))
		} else {
			third = h
		}
	}
	require.Len(t, granted, 2, "exactly two granted at once")
	sort.Slice(granted, func(i, j int) bool { return granted[i].grant.Before(granted[j].grant) })
	for _, h := range granted {
		t.Logf("FIGURE acquire@40 granted %s after it was asked for", fmtMS(h.grant.Sub(h.asked)))
		require.Less(t, h.grant.Sub(h.asked), loaded(0), "two calls of 40 fit in 100 units: granted at once")
		require.Contains(t, h.line, " cost 40", "the grant line of acquire@40")
	}

	released, closed := granted[0].release(t)
	third.granted(t)
	after := third.grant.Sub(released)
	t.Logf("FIGURE the third acquire@40 was granted %s after the first released (%s after its close returned)",
		fmtMS(after), fmtMS(third.grant.Sub(closed)))
	require.GreaterOrEqual(t, after, time.Second-tolerance(time.Second), "the third call counts the first's 40 units until 1 s after it completed")
	require.Less(t, third.grant.Sub(closed), loaded(time.Second), "the third call is granted about 1 s after the first completed")
	require.False(t, granted[1].p.exited(), "the second call still holds: the third did not wait for it")

	granted[1].release(t)
	third.release(t)
	d.waitStatus(t, "w", "in_progress", "0 of unlimited")
	st = d.status(t, "w")
	require.Equal(t, "3", st["grants_total"])
	require.Equal(t, "120", st["units_granted_since_start"])
}

func countGranted(hs []*unitsHolder) int {
	n := 0
	for _, h := range hs {
		if h.isGranted() {
			n++
		}
	}
	return n
}

// TestWeightedTooBigAndNotADecimal is the second must-show:
// acquire@101 on units:100/1s fails with E2BIG (cat: "Argument list too
// long"; Python: OSError errno E2BIG) and acquire@x with ENOENT, at once:
// the meter is full and its holder never leaves, so a call that waited
// would never return. Neither counts; acquire@N is not listed; a meter
// without units items admits any cost.
func TestWeightedTooBigAndNotADecimal(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "w=units:100/1s,concurrency=0", "bucket=units:rate=100/1s,concurrency=0", "plain=concurrency=0")
	holder := unitsHold(t, d.path("w", "acquire@100"))

	for _, tc := range []struct{ meter, name, stderr, py string }{
		{"w", "acquire@101", "Argument list too long", "err 7 E2BIG OSError "},
		{"bucket", "acquire@101", "Argument list too long", "err 7 E2BIG OSError "},
		{"w", "acquire@x", "No such file or directory", "err 2 ENOENT FileNotFoundError "},
	} {
		p := d.path(tc.meter, tc.name)
		start := time.Now()
		c := startProc(t, "cat", p)
		c.wait(t, pollTimeout)
		t.Logf("FIGURE cat %s/%s failed after %s: %s", tc.meter, tc.name, fmtMS(c.endAt.Sub(start)), strings.TrimSpace(c.stderr.String()))
		require.Equal(t, 1, c.exitCode(), "cat %s", p)
		require.Contains(t, c.stderr.String(), tc.stderr, "cat %s", p)
		require.Less(t, c.endAt.Sub(start), loaded(0), "cat %s fails at once", p)
		py := pyOpen(t, p, 1, false)
		py.requireSuccess(t, pollTimeout)
		require.True(t, strings.HasPrefix(py.stdout.String(), tc.py), "python os.open(%s): %q", p, py.stdout.String())
	}
	for _, name := range []string{"acquire@", "acquire@-1", "acquire@1.5", "acquire@+5", "acquire@0x10", "acquire@ 5", "acquire@5 "} {
		_, err := syscall.Open(d.path("w", name), syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		require.ErrorIs(t, err, syscall.ENOENT, "open %q", name)
	}

	out, err := exec.Command("ls", d.path("w")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, "acquire\ndata\nholders\nlimits\npause\nstatus\nwaiters\n", string(out), "ls MNT/w: acquire@N is looked up, not listed")
	st := d.status(t, "w")
	require.Equal(t, "1", st["grants_total"], "only the holder was granted")
	require.Equal(t, "0", st["waiting"])
	require.Equal(t, "100 used, 0 free", st["window units:100/1s"])
	require.Equal(t, "0", d.status(t, "bucket")["grants_total"])

	c := startProc(t, "cat", d.path("plain", "acquire@5000"))
	c.requireSuccess(t, pollTimeout)
	require.Regexp(t, ` meter plain call 1 pid \d+ cost 5000\n$`, c.stdout.String(), "a meter without units items admits any cost")
	require.False(t, holder.p.exited())
}

// TestWeightedRefund is the third must-show, on
// units:100/1s,concurrency=0: acquire@90, then acquire@80 waits until 1 s
// after the first completes (strict), and about then (loaded(1s)); but if
// the first writes 10 to its descriptor before closing, the 80 is granted
// at once (loaded(0) after the write returned), while the first still
// holds (order).
func TestWeightedRefund(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "wait=units:100/1s,concurrency=0", "refund=units:100/1s,concurrency=0")

	t.Run("no settlement", func(t *testing.T) {
		t.Parallel()
		first := unitsHold(t, d.path("wait", "acquire@90"))
		second := startUnitsHold(t, d.path("wait", "acquire@80"))
		d.waitStatus(t, "wait", "waiting", "1")
		released, closed := first.release(t)
		second.granted(t)
		t.Logf("FIGURE acquire@80 granted %s after acquire@90 released (%s after its close returned)", fmtMS(second.grant.Sub(released)), fmtMS(second.grant.Sub(closed)))
		require.GreaterOrEqual(t, second.grant.Sub(released), time.Second-tolerance(time.Second), "90 units count until 1 s after their call completed")
		require.Less(t, second.grant.Sub(closed), loaded(time.Second))
		second.release(t)
	})

	t.Run("settled at 10", func(t *testing.T) {
		t.Parallel()
		first := unitsHold(t, d.path("refund", "acquire@90"))
		second := startUnitsHold(t, d.path("refund", "acquire@80"))
		d.waitStatus(t, "refund", "waiting", "1")
		require.False(t, second.isGranted())
		from, to := first.settle(t, 10)
		second.granted(t)
		t.Logf("FIGURE acquire@80 granted %s after acquire@90 wrote 10 (the write took %s)", fmtMS(second.grant.Sub(to)), fmtMS(to.Sub(from)))
		require.False(t, second.grant.Before(from), "granted before the settlement was written")
		require.Less(t, second.grant.Sub(to), loaded(0), "the refund admits the waiter at once")
		require.False(t, first.p.exited(), "granted while the first call still holds")
		require.Equal(t, "90 used, 10 free", d.status(t, "refund")["window units:100/1s"])
		holderHas(t, d, "refund", first.p.pid(), "cost: 90", "actual: 10")
		first.release(t)
		second.release(t)
		d.waitStatus(t, "refund", "in_progress", "0 of unlimited")
		st := d.status(t, "refund")
		require.Equal(t, "1", st["settled_since_start"])
		require.Equal(t, "10", st["units_settled_since_start"])
	})
}

// holderHas requires that meter m's holders/ entry of pid has the lines
// want.
func holderHas(t *testing.T, d *daemon, m string, pid int, want ...string) {
	t.Helper()
	b := holderEntry(t, d, m, pid)
	for _, w := range want {
		require.Contains(t, strings.Split(b, "\n"), w, "the holders/ entry of pid %d:\n%s", pid, b)
	}
}

// holderEntry is the content of meter m's holders/ entry of pid (named
// SEQ.PID, or SEQ.PID@HOST in a fleet).
func holderEntry(t *testing.T, d *daemon, m string, pid int) string {
	t.Helper()
	for _, name := range d.entries(t, m, "holders") {
		if id := fmt.Sprintf(".%d", pid); strings.HasSuffix(name, id) || strings.Contains(name, id+"@") {
			b, err := os.ReadFile(d.path(m, "holders", name))
			require.NoError(t, err)
			return string(b)
		}
	}
	t.Fatalf("%s/holders lists no entry of pid %d: %v", m, pid, d.entries(t, m, "holders"))
	return ""
}

// TestWeightedCallLimit is the fourth must-show: on
// 3/1s,units:100/1s four cat acquire@10 take 40 units of 100, but the
// fourth waits for the call limit: any four grants span at least 1 s
// (strict), and about that (loaded(1s)). On 3/1h,units:100/1h (and
// concurrency=0, so that the test's back-to-back O_NONBLOCK opens do not
// meet the RELEASE lag) the status of a fourth waiter says why: 3 of 3
// calls, 30 of 100 units.
func TestWeightedCallLimit(t *testing.T) {
	t.Parallel()
	const spec = "3/1s,units:100/1s"
	d := startDaemon(t, "m="+spec, "h=3/1h,units:100/1h,concurrency=0")
	acq := d.path("m", "acquire@10")
	asked := time.Now()
	var cats []*proc
	for range 4 {
		cats = append(cats, startProc(t, "cat", acq))
	}
	var grants []time.Time
	for _, c := range cats {
		c.requireSuccess(t, pollTimeout)
		require.Contains(t, c.stdout.String(), " cost 10\n")
		grants = append(grants, daemonGrantTime(t, c.stdout.String()))
	}
	gs := sorted(grants)
	t.Logf("FIGURE four acquire@10 on %s granted at %v", spec, relTimes(gs))
	checkSpacing(t, gs, parseLimits(t, spec), "four acquire@10 on "+spec)
	require.GreaterOrEqual(t, gs[3].Sub(gs[0]), time.Second-tolerance(time.Second), "the fourth call waits for 3/1s")
	require.Less(t, gs[3].Sub(asked), loaded(time.Second), "the fourth call is granted about 1 s after the first")
	d.waitStatus(t, "m", "in_progress", "0 of 1")
	require.Equal(t, "4", d.status(t, "m")["grants_total"])

	h := d.path("h", "acquire@10")
	for range 3 {
		require.NoError(t, openNonblock(h))
	}
	require.ErrorIs(t, openNonblock(h), syscall.EAGAIN, "a fourth O_NONBLOCK acquire@10 on 3/1h")
	fourth := startProc(t, "cat", h)
	d.waitStatus(t, "h", "waiting", "1")
	st := d.status(t, "h")
	require.Equal(t, "3 used, 0 free", st["window 3/1h"])
	require.Equal(t, "30 used, 70 free", st["window units:100/1h"])
	require.NotEqual(t, "now", st["next_grant"])
	require.False(t, fourth.exited())
}
