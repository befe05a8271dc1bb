package test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestTimeoutLeavesNoWaiter: `timeout 1 cat acquire` while another process
// holds the meter exits 124; the interrupted waiter leaves the queue, nothing
// is counted for it, and the next caller is granted as soon as the holder
// releases. On 2/10s a counted interrupt would fill the window and make the
// next caller wait 10 s; the test requires less than half of that (a few
// ms on an idle machine).
func TestTimeoutLeavesNoWaiter(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=2/10s")
	acq := d.path("m", "acquire")
	holder := pyHold(t, acq)
	holder.waitOutput(t, "held ")

	to := startProc(t, "timeout", "1", "cat", acq)
	d.waitStatus(t, "m", "waiting", "1") // it did reach the queue
	to.wait(t, pollTimeout)
	require.Equal(t, 124, to.exitCode(), "exit status of timeout 1 cat acquire; stderr: %s", to.stderr.String())
	d.waitEntries(t, "m", "waiters", 0)
	st := d.status(t, "m")
	require.Equal(t, "0", st["waiting"])
	require.Equal(t, "1", st["grants_total"], "only the holder was granted")

	logs := t.TempDir()
	next := startClient(t, acq, logs, client{kind: "go", id: "next", calls: 1})
	d.waitStatus(t, "m", "waiting", "1")
	released := holder.release(t)
	next.requireSuccess(t, pollTimeout)
	calls := readCalls(t, logs)
	require.Len(t, calls, 1)
	wait := calls[0].grant.Sub(released)
	t.Logf("next caller granted %v after the holder's release", wait)
	require.Less(t, wait, 5*time.Second, "the next caller waits for nothing but the holder: a counted interrupt would make it wait 10 s")
	require.Equal(t, "2", d.status(t, "m")["grants_total"])
}

// TestNonblock: an O_NONBLOCK open gets a grant when one is possible right
// now and EAGAIN otherwise, from Python (BlockingIOError) and Go
// (syscall.Open); a refused open is neither queued nor counted.
func TestNonblock(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=5/1s")
	acq := d.path("m", "acquire")

	// Free: granted at once. (This process does not serve the mount, so it
	// may open it; O_NONBLOCK cannot block.)
	fd, err := syscall.Open(acq, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	require.NoError(t, err, "O_NONBLOCK open of a free meter")
	require.NoError(t, syscall.Close(fd))
	d.waitStatus(t, "m", "in_progress", "0 of 1")

	holder := pyHold(t, acq)
	holder.waitOutput(t, "held ")

	py := pyOpen(t, acq, 1, true)
	py.requireSuccess(t, pollTimeout)
	require.Regexp(t, `^err 11 EAGAIN BlockingIOError `, py.stdout.String(), "python os.open(acquire, O_RDONLY|O_NONBLOCK) while held")

	_, err = syscall.Open(acq, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	require.ErrorIs(t, err, syscall.EAGAIN, "Go syscall.Open(acquire, O_RDONLY|O_NONBLOCK) while held")

	st := d.status(t, "m")
	require.Equal(t, "0", st["waiting"])
	require.Equal(t, "2", st["grants_total"], "the refused opens are not counted")
	require.Empty(t, d.entries(t, "m", "waiters"))
}

// TestMaxWait: on max_wait=300ms an open that waited 300 ms fails with
// ETIMEDOUT (Python: TimeoutError) and leaves the queue: never before
// 300 ms, and about then (at most loaded(300ms); the holder never leaves,
// so without max_wait the open would wait forever).
func TestMaxWait(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=1/1s,max_wait=300ms")
	acq := d.path("m", "acquire")
	holder := pyHold(t, acq)
	holder.waitOutput(t, "held ")

	py := pyOpen(t, acq, 1, false)
	py.requireSuccess(t, pollTimeout)
	out := strings.Fields(py.stdout.String())
	require.Len(t, out, 5, "client.py open printed %q", py.stdout.String())
	require.Equal(t, []string{"err", "110", "ETIMEDOUT", "TimeoutError"}, out[:4])
	waited, err := strconv.ParseFloat(out[4], 64)
	require.NoError(t, err)
	require.GreaterOrEqual(t, waited, 0.300-tolerance(0).Seconds(), "waited %.3fs before ETIMEDOUT", waited)
	require.Less(t, waited, loaded(300*time.Millisecond).Seconds(), "waited %.3fs before ETIMEDOUT", waited)

	d.waitEntries(t, "m", "waiters", 0)
	st := d.status(t, "m")
	require.Equal(t, "0", st["waiting"])
	require.Equal(t, "1", st["grants_total"])
}

// TestKilledHolderReleases: a holder killed with SIGKILL releases through
// the kernel; the next waiter is granted promptly (the holder would hold
// for 1000 s; at most loaded(0) allowed) and holders/ empties.
func TestKilledHolderReleases(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=10/1s")
	acq := d.path("m", "acquire")
	h := startProc(t, bash.need(t), "-c", `exec sleep 1000 3<"$0"`, acq)
	names := d.waitEntries(t, "m", "holders", 1)
	require.Regexp(t, fmt.Sprintf(`^[0-9]{6}\.%d$`, h.pid()), names[0])
	b, err := os.ReadFile(d.path("m", "holders", names[0]))
	require.NoError(t, err)
	kv := parseStatus(string(b))
	require.Equal(t, strconv.Itoa(h.pid()), kv["pid"], "holder entry:\n%s", b)
	require.Contains(t, kv["cmd"], "sleep 1000", "holder entry:\n%s", b)

	logs := t.TempDir()
	next := startClient(t, acq, logs, client{kind: "go", id: "next", calls: 1})
	d.waitStatus(t, "m", "waiting", "1")
	names = d.entries(t, "m", "waiters")
	require.Len(t, names, 1)
	require.Regexp(t, fmt.Sprintf(`^[0-9]{6}\.%d$`, next.pid()), names[0])

	killed := time.Now()
	require.NoError(t, syscall.Kill(h.pid(), syscall.SIGKILL))
	h.wait(t, pollTimeout)
	next.requireSuccess(t, pollTimeout)
	calls := readCalls(t, logs)
	require.Len(t, calls, 1)
	wait := calls[0].grant.Sub(killed)
	t.Logf("next caller granted %v after kill -9 of the holder", wait)
	require.Less(t, wait, loaded(0), "the next caller is granted as soon as the killed holder's descriptor is released")
	d.waitEntries(t, "m", "holders", 0)
	require.Equal(t, "2", d.status(t, "m")["grants_total"])
}

// TestShutdownFailsWaiters: SIGTERM with 50 blocked waiters (Python threads
// and sh cat) while a holder holds: each waiter gets EIO promptly (on 1/1h
// they would otherwise wait an hour; at most loaded(0) allowed), the daemon
// exits 0 and the mount is gone, even though the holder still has acquire
// open.
func TestShutdownFailsWaiters(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=1/1h")
	acq := d.path("m", "acquire")
	holder := pyHold(t, acq)
	holder.waitOutput(t, "held ")

	var pys, cats []*proc
	for range 5 {
		pys = append(pys, pyOpen(t, acq, 6, false))
	}
	for range 20 {
		cats = append(cats, startProc(t, "cat", acq))
	}
	d.waitStatus(t, "m", "waiting", "50")

	stopped := time.Now()
	d.stop(t) // SIGTERM; requires exit status 0 and no mount left
	for _, p := range pys {
		p.requireSuccess(t, loaded(0))
		lines := strings.Split(strings.TrimSpace(p.stdout.String()), "\n")
		require.Len(t, lines, 6, "client.py open printed %q", p.stdout.String())
		for _, l := range lines {
			require.Regexp(t, `^err 5 EIO OSError `, l, "a python waiter at shutdown")
		}
	}
	for _, p := range cats {
		p.wait(t, loaded(0))
		require.Less(t, p.endAt.Sub(stopped), loaded(0), "cat acquire got its EIO promptly")
		require.Equal(t, 1, p.exitCode(), "cat acquire at shutdown: %s", p.stderr.String())
		require.Contains(t, p.stderr.String(), "Input/output error")
	}
	t.Logf("50 waiters answered and the daemon gone %v after SIGTERM", time.Since(stopped).Round(time.Millisecond))
	_, mounted := mountDev(d.mnt)
	require.False(t, mounted)
	require.False(t, holder.exited(), "the holder is not disturbed")
}
