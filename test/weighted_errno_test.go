package test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWeightedBadWrites: a write to an acquire@N descriptor that is not one
// decimal (abc, -5, 1.5, 0x10, two numbers, beyond 2^50) fails with EINVAL
// and changes nothing: the window still counts the estimate, nothing is
// settled, the holders/ entry has no actual: line. From a shell, `echo abc
// >&3` says "Invalid argument". A good write settles, and a later one
// replaces it. A write to a descriptor opened O_RDONLY is EBADF (the
// kernel's), and an O_WRONLY open is EPERM, without waiting or counting.
func TestWeightedBadWrites(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=units:100/1h,concurrency=0")
	acq := d.path("m", "acquire@30")

	shell := startProc(t, bash.need(t), "-c", `exec 3<>"$1" || exit 1
IFS= read -r line <&3
echo "held $line"
echo abc 2>&1 >&3
echo "abc: $?"
read -r x
echo 7 >&3 && echo "7: ok"`, "bad-write", acq)
	shell.waitOutput(t, "abc: 1")
	// bash's message goes to stdout, before "abc: 1" (stderr is another pipe, read at its own pace)
	require.Contains(t, shell.stdout.String(), "write error: Invalid argument", "bash: echo abc >&3")
	requireUnsettled := func(used int64) {
		t.Helper()
		st := d.status(t, "m")
		require.Equal(t, used, unitsUsed(t, st, "units:100/1h"))
		require.Equal(t, "0", st["settled_since_start"])
	}
	requireUnsettled(30)

	py := pyWrites(t, acq, "rdwr")
	py.waitOutput(t, "held ")
	for _, bad := range []string{"abc", "-5", "1.5", "0x10", "10 20", "+5", "1125899906842625", "5\n6\n", "\n"} {
		require.Equal(t, "err 22 EINVAL", py.write(t, bad), "os.write(fd, %q)", bad)
	}
	requireUnsettled(60)
	for _, name := range d.entries(t, "m", "holders") {
		b, err := os.ReadFile(d.path("m", "holders", name))
		require.NoError(t, err)
		require.Contains(t, string(b), "\ncost: 30\n", "holders/%s", name)
		require.NotContains(t, string(b), "actual:", "holders/%s after bad writes", name)
	}

	require.Equal(t, "ok 3", py.write(t, "12\n"))
	d.waitUnitsUsed(t, "m", "units:100/1h", 42)
	holderHas(t, d, "m", py.pid(), "cost: 30", "actual: 12")
	require.Equal(t, "ok 2", py.write(t, " 4"), "a second settlement replaces the first")
	d.waitUnitsUsed(t, "m", "units:100/1h", 34)
	holderHas(t, d, "m", py.pid(), "actual: 4")
	require.NoError(t, shell.stdin.Close())
	shell.waitOutput(t, "7: ok")
	shell.requireSuccess(t, pollTimeout)
	d.waitUnitsUsed(t, "m", "units:100/1h", 11)

	ro := requireWriteRefused(t, acq)
	require.NoError(t, py.stdin.Close())
	require.NoError(t, ro.stdin.Close())
	py.waitOutput(t, "closed")
	ro.waitOutput(t, "closed")
	d.waitStatus(t, "m", "in_progress", "0 of unlimited")
	st := d.status(t, "m")
	require.Equal(t, "3", st["grants_total"], "the shell, the O_RDWR and the O_RDONLY opens; not the O_WRONLY ones")
	require.Equal(t, int64(7+4+30), unitsUsed(t, st, "units:100/1h"))
	require.Equal(t, "3", st["settled_since_start"])
}

// requireWriteRefused: a write to acq opened O_RDONLY is EBADF, an
// O_WRONLY open (Python, and the shell's >) is EPERM. It returns the
// O_RDONLY holder, still holding.
func requireWriteRefused(t *testing.T, acq string) *proc {
	t.Helper()
	ro := pyWrites(t, acq, "rdonly")
	ro.waitOutput(t, "held ")
	require.Equal(t, "err 9 EBADF", ro.write(t, "5"), "a write to an O_RDONLY %s", acq)
	wo := pyWrites(t, acq, "wronly")
	wo.requireSuccess(t, pollTimeout)
	require.Equal(t, "open-err 1 EPERM\n", wo.stdout.String(), "O_WRONLY open of %s", acq)
	out, code := sh(t, "echo 5 > "+acq)
	require.NotEqual(t, 0, code)
	require.Contains(t, out, "Operation not permitted", "echo 5 > %s", acq)
	return ro
}

// TestWeightedNonblockAndMaxWait: O_NONBLOCK with acquire@N is granted when
// the units fit right now and EAGAIN otherwise (Go and Python), counting
// nothing; on max_wait=300ms an acquire@N that does not fit fails with
// ETIMEDOUT no earlier than 300 ms, leaves the queue and counts nothing.
func TestWeightedNonblockAndMaxWait(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "nb=units:100/1h,concurrency=0", "mw=units:100/1h,concurrency=0,max_wait=300ms")
	nb := func(n string) string { return d.path("nb", "acquire@"+n) }
	require.NoError(t, openNonblock(nb("60")))
	require.ErrorIs(t, openNonblock(nb("41")), syscall.EAGAIN, "O_NONBLOCK acquire@41 with 40 units free")
	py := pyOpen(t, nb("41"), 1, true)
	py.requireSuccess(t, pollTimeout)
	require.True(t, strings.HasPrefix(py.stdout.String(), "err 11 EAGAIN BlockingIOError "), "python: %q", py.stdout.String())
	require.NoError(t, openNonblock(nb("40")), "O_NONBLOCK acquire@40 with 40 units free")
	st := d.status(t, "nb")
	require.Equal(t, "100 used, 0 free", st["window units:100/1h"])
	require.Equal(t, "2", st["grants_total"])
	require.Equal(t, "0", st["waiting"])

	holder := unitsHold(t, d.path("mw", "acquire@95"))
	to := pyOpen(t, d.path("mw", "acquire@10"), 1, false)
	to.requireSuccess(t, pollTimeout)
	f := strings.Fields(to.stdout.String())
	require.Len(t, f, 5, "client.py open printed %q", to.stdout.String())
	require.Equal(t, []string{"err", "110", "ETIMEDOUT", "TimeoutError"}, f[:4])
	waited, err := time.ParseDuration(f[4] + "s")
	require.NoError(t, err)
	require.GreaterOrEqual(t, waited, 300*time.Millisecond-tolerance(0))
	require.Less(t, waited, loaded(300*time.Millisecond))
	d.waitStatus(t, "mw", "waiting", "0")
	st = d.status(t, "mw")
	require.Equal(t, "95 used, 5 free", st["window units:100/1h"])
	require.Equal(t, "1", st["grants_total"])
	require.Equal(t, "1", st["timeouts_since_start"])
	require.False(t, holder.p.exited())
}

// TestWeightedHeadOfLine: FIFO stays strict with weighted calls. Behind a
// call of 60 in progress on units:100/1h, a waiting acquire@50 keeps an
// acquire@10 behind it waiting, though 10 units are free enough, and an
// O_NONBLOCK acquire@10 gets EAGAIN; waiters/ lists both in order with
// their costs. Once the 60 settles at 0, both go, in order.
func TestWeightedHeadOfLine(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=units:100/1h,concurrency=0")
	head := unitsHold(t, d.path("m", "acquire@60"))
	big := startUnitsHold(t, d.path("m", "acquire@50"))
	d.waitStatus(t, "m", "waiting", "1")
	small := startUnitsHold(t, d.path("m", "acquire@10"))
	d.waitStatus(t, "m", "waiting", "2")
	require.ErrorIs(t, openNonblock(d.path("m", "acquire@10")), syscall.EAGAIN, "O_NONBLOCK acquire@10 behind a waiting acquire@50")
	names := d.entries(t, "m", "waiters")
	require.Len(t, names, 2)
	for i, want := range []string{"cost: 50", "cost: 10"} {
		b, err := os.ReadFile(d.path("m", "waiters", names[i]))
		require.NoError(t, err)
		require.Contains(t, strings.Split(string(b), "\n"), want, "waiters/%s", names[i])
	}
	require.Equal(t, "60 used, 40 free", d.status(t, "m")["window units:100/1h"])
	require.False(t, big.isGranted() || small.isGranted(), "nobody overtakes the head of the queue")

	head.settle(t, 0)
	big.granted(t)
	small.granted(t)
	bigCall, smallCall := callOf(t, big.line), callOf(t, small.line)
	require.Less(t, bigCall, smallCall, "granted in queue order: the daemon's call numbers")
	require.Equal(t, "60 used, 40 free", d.status(t, "m")["window units:100/1h"], "0 + 50 + 10")
}

// TestWeightedMaxHoldAndInterrupt: max_hold and interrupts behave as for
// plain calls and keep the cost. On units:100/1s,max_hold=300ms a call of 60
// held on counts completed 300 ms after its grant, with its 60 units, so a
// second acquire@60 is granted 1.3 s after the first's grant (strict: no
// earlier than 1.3 s after the first was asked for), while the first still
// holds (its holders/ entry says expired, cost 60). On units:100/1h,
// `timeout 600 cat acquire@50` behind a full meter, timed out (SIGALRM),
// exits 124, leaves the queue and counts nothing.
func TestWeightedMaxHoldAndInterrupt(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "mh=units:100/1s,concurrency=0,max_hold=300ms", "int=units:100/1h,concurrency=0")
	first := unitsHold(t, d.path("mh", "acquire@60"))
	second := startUnitsHold(t, d.path("mh", "acquire@60")).granted(t)
	after := second.grant.Sub(first.asked)
	t.Logf("FIGURE acquire@60 granted %s after the first acquire@60 held past max_hold=300ms was asked for", fmtMS(after))
	require.GreaterOrEqual(t, after, 1300*time.Millisecond-tolerance(time.Second), "60 units count until 1 s after max_hold ended the call")
	require.Less(t, second.grant.Sub(first.grant), loaded(1300*time.Millisecond))
	require.False(t, first.p.exited(), "the first still holds")
	holderHas(t, d, "mh", first.p.pid(), "state: expired", "cost: 60")

	// timeout(1) acts on SIGALRM as when its time is up: the test makes it
	// time out once the cat waits, however long a loaded machine takes to
	// start them.
	holder := unitsHold(t, d.path("int", "acquire@100"))
	to := startProc(t, "timeout", "600", "cat", d.path("int", "acquire@50"))
	d.waitStatus(t, "int", "waiting", "1")
	require.NoError(t, syscall.Kill(to.pid(), syscall.SIGALRM))
	to.wait(t, pollTimeout)
	require.Equal(t, 124, to.exitCode(), "timeout cat acquire@50, timed out; stderr: %s", to.stderr.String())
	// The daemon keeps an interrupted open's place a moment for a retry
	// (see docs/semantics.md), then counts the interrupt.
	d.waitStatus(t, "int", "interrupts_since_start", "1")
	st := d.status(t, "int")
	require.Equal(t, "0", st["waiting"])
	require.Equal(t, "1", st["grants_total"])
	require.Equal(t, "100", st["units_granted_since_start"])
	holder.settle(t, 50)
	require.NoError(t, openNonblock(d.path("int", "acquire@50")), "50 units free: the interrupted call counted nothing")
}

// TestWeightedPermissions: acquire@N is writable where it is readable, so
// that a user who may acquire may also open it O_RDWR to settle (exec 3<>),
// and one who may not acquire may not do that either (EACCES).
func TestWeightedPermissions(t *testing.T) {
	t.Parallel()
	user, _, _ := testUser(t)
	d := startDaemonFlags(t, []string{"--allow-other"}, "m=units:100/1h,concurrency=0")
	makeReachable(t, filepath.Dir(d.mnt))
	acq := d.path("m", "acquire@5")
	script := "exec 3<>" + acq + " && echo 2 >&3 && echo settled"

	require.NoError(t, os.Chmod(d.path("m"), 0o750))
	fi, err := os.Stat(acq)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o660), fi.Mode().Perm(), "acquire@5 of a 0750 meter")
	out, code := asUser(t, user, script)
	require.NotEqual(t, 0, code, "exec 3<>acquire@5 of a 0750 meter of root's as %s: %s", user, out)
	require.Contains(t, out, "Permission denied")

	require.NoError(t, os.Chmod(d.path("m"), 0o755))
	fi, err = os.Stat(acq)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o666), fi.Mode().Perm(), "acquire@5 of a 0755 meter")
	out, code = asUser(t, user, script)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "settled")
	d.waitStatus(t, "m", "in_progress", "0 of unlimited")
	st := d.status(t, "m")
	require.Equal(t, "1", st["grants_total"])
	require.Equal(t, "2 used, 98 free", st["window units:100/1h"])
}

// TestWeightedShrinkFailsWaiter: a limits write that makes a units window
// smaller than a waiting call's cost fails that open with E2BIG at once
// (cat: "Argument list too long"), rather than leaving it waiting forever;
// the call in progress keeps its units.
func TestWeightedShrinkFailsWaiter(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=units:100/1h,concurrency=0")
	holder := unitsHold(t, d.path("m", "acquire@100"))
	waiter := startProc(t, "cat", d.path("m", "acquire@80"))
	d.waitStatus(t, "m", "waiting", "1")
	require.NoError(t, os.WriteFile(d.path("m", "limits"), []byte("units:50/1h,concurrency=0\n"), 0o644))
	waiter.wait(t, pollTimeout)
	require.Equal(t, 1, waiter.exitCode())
	require.Contains(t, waiter.stderr.String(), "Argument list too long")
	st := d.status(t, "m")
	require.Equal(t, "0", st["waiting"])
	require.Equal(t, "100 used, 0 free", st["window units:50/1h"])
	require.False(t, holder.p.exited())
}
