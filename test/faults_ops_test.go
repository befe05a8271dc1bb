package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFaultMaxHold: on max_hold=2s, a holder that never closes stops
// blocking others 2 s after its grant: the waiter behind it is granted no
// sooner than 2 s after the hold began (the daemon's grant time of the
// holder; strict) and while the holder still holds, at most loaded(2s)
// after (2.000-2.005 s on an idle machine); status shows expired_holds: 1,
// and holders/ lists the holder with state: expired until it finally closes.
func TestFaultMaxHold(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=max_hold=2s")
	acq := d.path("m", "acquire")
	holder := pyHold(t, acq)
	holder.waitOutput(t, "held ")
	heldAt := daemonGrantTime(t, holder.stdout.String())

	logs := t.TempDir()
	next := startClient(t, acq, logs, client{kind: "go", id: "next", calls: 1})
	next.requireSuccess(t, loaded(2*time.Second)+pollTimeout)
	calls := readCalls(t, logs)
	require.Len(t, calls, 1)
	wait := calls[0].grant.Sub(heldAt)
	require.GreaterOrEqual(t, wait, 2*time.Second-tolerance(2*time.Second), "the waiter was granted before max_hold ended the hold")
	require.Less(t, wait, loaded(2*time.Second), "the waiter was granted too long after max_hold ended the hold")
	require.False(t, holder.exited(), "the holder still holds: the waiter got the meter through max_hold alone")

	st := d.status(t, "m")
	require.Equal(t, "1", st["expired_holds"])
	require.Equal(t, "1", st["expired_since_start"])
	names := d.entries(t, "m", "holders")
	require.Len(t, names, 1, "holders/ lists the expired hold")
	require.Regexp(t, fmt.Sprintf(`^[0-9]{6}\.%d$`, holder.pid()), names[0])
	b, err := os.ReadFile(d.path("m", "holders", names[0]))
	require.NoError(t, err)
	require.Equal(t, "expired", parseStatus(string(b))["state"], "holders/%s:\n%s", names[0], b)

	holder.release(t)
	d.waitStatus(t, "m", "expired_holds", "0")
	d.waitEntries(t, "m", "holders", 0)
	require.Equal(t, "2", d.status(t, "m")["grants_total"])
	t.Logf("FIGURE max-hold: waiter granted %s after the never-closing hold began (max_hold=2s); expired_holds: 1, holders/ state: expired", fmtMS(wait))
}

// TestFaultMaxWaitersFlood: max_waiters=5 and a holder. Five blocking
// opens (five processes) wait; a flood of 15 more blocking opens from one
// Python process all fail at once with EAGAIN (not queued, not counted):
// all of them while the holder still holds, each open within loaded(0) of
// its call (a few ms on an idle machine); waiters/ lists exactly 5. When
// the holder releases, the five are granted.
func TestFaultMaxWaitersFlood(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=max_waiters=5")
	acq := d.path("m", "acquire")
	holder := pyHold(t, acq)
	holder.waitOutput(t, "held ")
	var ws []*proc
	for range 5 {
		ws = append(ws, startPy(t, faultsPy(), "waiters", acq, "1"))
	}
	d.waitStatus(t, "m", "waiting", "5")

	started := time.Now()
	flood := startPy(t, faultsPy(), "waiters", acq, "15")
	flood.requireSuccess(t, pollTimeout) // queued opens would wait for the holder, who waits for this
	lines := strings.Split(strings.TrimSpace(flood.stdout.String()), "\n")[1:]
	require.Len(t, lines, 15)
	var worst, fromStart time.Duration
	for _, l := range lines {
		f := strings.Fields(l)
		require.Len(t, f, 4, "a waiter's line %q", l)
		require.Equal(t, []string{"err", "11"}, f[:2], "an open past max_waiters gets EAGAIN (11); got %q", l)
		at, asked := unixNS(t, f[2]), unixNS(t, f[3])
		worst = max(worst, at.Sub(asked))
		fromStart = max(fromStart, at.Sub(started))
	}
	require.Less(t, worst, loaded(0), "EAGAIN comes at once")
	require.Len(t, d.entries(t, "m", "waiters"), 5, "waiters/ lists exactly the 5 admitted waiters")
	st := d.status(t, "m")
	require.Equal(t, "5", st["waiting"])
	require.Equal(t, "15", st["rejected_since_start"])
	require.Equal(t, "1", st["grants_total"])

	holder.release(t)
	for _, w := range ws {
		w.requireSuccess(t, pollTimeout)
		require.Regexp(t, `^ready\nok \d+ \d+\n$`, w.stdout.String())
	}
	d.waitStatus(t, "m", "in_progress", "0 of 1")
	require.Equal(t, "6", d.status(t, "m")["grants_total"])
	t.Logf("FIGURE max-waiters: 5 waiters queued, 15 more got EAGAIN within %s of their process's start (%s of their open); waiters/ listed 5",
		fmtMS(fromStart), fmtMS(worst))
}

// forbiddenOps are operations on a meter's files that change nothing, with
// the errno each gets as root (docs/semantics.md, "errno"). M stands for the
// meter directory.
var forbiddenOps = []struct {
	name, op, path string
	arg            any
	errno          syscall.Errno
}{
	{"acquire O_WRONLY", "open", "M/acquire", []string{"O_WRONLY"}, syscall.EPERM},
	{"acquire O_RDONLY|O_TRUNC", "open", "M/acquire", []string{"O_RDONLY", "O_TRUNC"}, syscall.EPERM},
	{"acquire O_WRONLY|O_CREAT|O_TRUNC (sh >)", "open", "M/acquire", []string{"O_WRONLY", "O_CREAT", "O_TRUNC"}, syscall.EPERM},
	{"acquire O_CREAT|O_EXCL", "open", "M/acquire", []string{"O_RDONLY", "O_CREAT", "O_EXCL"}, syscall.EEXIST},
	{"acquire truncate", "truncate", "M/acquire", 0, syscall.EPERM},
	{"acquire unlink", "unlink", "M/acquire", nil, syscall.EPERM},
	{"acquire rename", "rename", "M/acquire", "M/acquire2", syscall.EPERM},
	{"limits unlink", "unlink", "M/limits", nil, syscall.EPERM},
	{"limits rename", "rename", "M/limits", "M/limits2", syscall.EPERM},
	{"limits truncate to 3", "truncate", "M/limits", 3, syscall.EPERM},
	{"status O_WRONLY", "open", "M/status", []string{"O_WRONLY"}, syscall.EPERM},
	{"status truncate", "truncate", "M/status", 0, syscall.EPERM},
	{"status unlink", "unlink", "M/status", nil, syscall.EPERM},
	{"create a file in the meter", "open", "M/new", []string{"O_WRONLY", "O_CREAT"}, syscall.EPERM},
	{"create a file in holders/", "open", "M/holders/x", []string{"O_WRONLY", "O_CREAT"}, syscall.EPERM},
}

// TestFaultForbiddenOps: every forbidden operation on a meter's files gets
// its documented errno, from a real process (Python's os calls), and
// changes nothing: status (grants, window usage) read right after each
// operation and limits, the meter's files and the meters read the same as
// before. O_CREAT without O_EXCL on the existing acquire (as flock(1) opens
// it) is a normal call. An unprivileged user without write permission gets
// EACCES from the kernel for the same writes, from sh.
//
// It pins a bug: open(acquire, O_RDONLY|O_TRUNC) gets its EPERM, but only
// after the daemon granted the open: go-fuse does not negotiate atomic
// O_TRUNC, so the kernel strips O_TRUNC from the OPEN request, and
// truncates (SETATTR size=0, refused with EPERM) once the open succeeded,
// then releases it. The refused open is counted as a call (grants_total +1,
// one more used in the window); and on a busy meter it first waits for its
// turn like any other caller ("while held").
func TestFaultForbiddenOps(t *testing.T) {
	t.Parallel()
	d := startDaemonFlags(t, []string{"--allow-other"}, "m=5/1s")
	m := d.path("m")
	var spec [][]any
	for _, o := range forbiddenOps {
		arg := o.arg
		if s, ok := arg.(string); ok {
			arg = strings.Replace(s, "M", m, 1)
		}
		spec = append(spec, []any{o.name, o.op, strings.Replace(o.path, "M", m, 1), arg})
	}
	js, err := json.Marshal(spec)
	require.NoError(t, err)

	snapshot := func() (map[string]string, string, []string, []string) {
		limits, err := os.ReadFile(d.path("m", "limits"))
		require.NoError(t, err)
		return d.status(t, "m"), string(limits), d.entries(t, "m", "."), d.entries(t, ".", ".")
	}
	st0, lim0, ls0, root0 := snapshot()
	p := startPy(t, faultsPy(), "ops", string(js), d.path("m", "status"))
	p.requireSuccess(t, pollTimeout)
	var got map[string]struct {
		Errno  int    `json:"errno"`
		Status string `json:"status"`
	}
	require.NoError(t, json.Unmarshal([]byte(p.stdout.String()), &got), "faults.py ops printed %q", p.stdout.String())
	var table []string
	prev, changed := st0, false
	for _, o := range forbiddenOps {
		r, ok := got[o.name]
		require.True(t, ok, "no result for %s", o.name)
		e := syscall.Errno(r.Errno)
		require.Equal(t, o.errno, e, "%s: got %v, want %v", o.name, e, o.errno)
		table = append(table, fmt.Sprintf("%s: %s", o.name, errnoName(e)))
		st := parseStatus(r.Status)
		for _, k := range []string{"grants_total", "window 5/1s", "waiting"} {
			if st[k] != prev[k] {
				t.Errorf("%s got %s but changed the meter: status %s: %s before, %s right after", o.name, errnoName(e), k, prev[k], st[k])
				changed = true
			}
		}
		prev = st
	}
	d.waitStatus(t, "m", "in_progress", "0 of 1")
	st1, lim1, ls1, root1 := snapshot()
	require.Equal(t, lim0, lim1, "limits after the forbidden operations")
	require.Equal(t, ls0, ls1, "the meter's files after the forbidden operations")
	require.Equal(t, root0, root1, "the meters after the forbidden operations")
	if !changed {
		// The O_RDONLY|O_TRUNC open was granted, then revoked: the
		// counters since start say so (they never go down); nothing else
		// of the meter changed.
		require.Equal(t, st1["grants_since_start"], st1["revoked_since_start"], "every grant of a forbidden operation is revoked")
		for _, k := range []string{"grants_since_start", "revoked_since_start"} {
			delete(st0, k)
			delete(st1, k)
		}
		assert.Equal(t, st0, st1, "status after the forbidden operations")
	}
	st0 = st1 // what follows changes the meter from here

	// As flock(1) does: O_CREAT on the existing acquire is a call.
	out, code := sh(t, "flock "+d.path("m", "acquire")+" true")
	require.Equal(t, 0, code, out)
	d.waitStatus(t, "m", "in_progress", "0 of 1")
	grants0, _ := strconv.Atoi(st0["grants_total"])
	require.Equal(t, strconv.Itoa(grants0+1), d.status(t, "m")["grants_total"], "flock(1)'s O_CREAT open is one call")

	// A user who may read the meter may open acquire for writing too (to
	// write a call's actual cost, O_RDWR): the daemon refuses the rest
	// (EPERM). Without write permission on the meter's directory, the
	// kernel refuses removing and renaming first (EACCES).
	user, _, _ := testUser(t)
	makeReachable(t, filepath.Dir(d.mnt))
	acq := d.path("m", "acquire")
	for _, tc := range []struct{ script, want string }{
		{": > " + acq, "Operation not permitted"},
		{"truncate -s 0 " + acq, "Operation not permitted"},
		{"rm -f " + acq, "Permission denied"},
		{"mv " + acq + " " + acq + "2", "Permission denied"},
	} {
		out, code := asUser(t, user, tc.script)
		require.NotEqual(t, 0, code, "%s as %s", tc.script, user)
		require.Contains(t, out, tc.want, "%s as %s", tc.script, user)
	}
	st2, lim2, ls2, root2 := snapshot()
	require.Equal(t, lim0, lim2)
	require.Equal(t, ls0, ls2)
	require.Equal(t, root0, root2)
	require.Equal(t, strconv.Itoa(grants0+1), st2["grants_total"])
	t.Logf("FIGURE forbidden-ops: %d cases as root (%s), 4 as a user (EPERM, EPERM, EACCES, EACCES)", len(forbiddenOps), strings.Join(table, "; "))

	// The kernel strips O_TRUNC from the OPEN it sends (go-fuse does not
	// negotiate atomic O_TRUNC) and truncates afterwards: rlfs cannot see
	// O_TRUNC before the grant. So on a held meter such an open waits its
	// turn like any other, then fails with EPERM, and its grant is taken
	// back: nothing counts (docs/semantics.md, errno).
	t.Run("while held", func(t *testing.T) {
		holder := pyHold(t, acq)
		holder.waitOutput(t, "held ")
		before := d.status(t, "m")["grants_total"]
		one, err := json.Marshal([][]any{{"O_RDONLY|O_TRUNC", "open", acq, []string{"O_RDONLY", "O_TRUNC"}}})
		require.NoError(t, err)
		p := startPy(t, faultsPy(), "ops", string(one))
		d.waitStatus(t, "m", "waiting", "1")
		holder.release(t)
		require.NoError(t, p.wait(t, pollTimeout))
		require.Contains(t, p.stdout.String(), `"errno": 1`, "O_RDONLY|O_TRUNC on a held meter, once its turn came")
		d.waitStatus(t, "m", "in_progress", "0 of 1")
		require.Equal(t, before, d.status(t, "m")["grants_total"], "the refused O_TRUNC open counted nothing")
	})
}

func errnoName(e syscall.Errno) string {
	switch e {
	case 0:
		return "ok"
	case syscall.EPERM:
		return "EPERM"
	case syscall.EEXIST:
		return "EEXIST"
	case syscall.EACCES:
		return "EACCES"
	}
	return fmt.Sprintf("errno %d", int(e))
}

// TestFaultOpenCloseCycles: 100,000 open+close cycles on a concurrency=0
// meter from 16 Python processes leak nothing in the daemon. After a warm-up
// of 4,000 cycles the idle daemon's goroutines, open fds and memory (from
// its /metrics) are the baseline; after the 100,000 cycles:
//
//   - goroutines return to at most the baseline and 4 (go-fuse keeps a
//     few idle readers), fds to at most the baseline (polled, within
//     pollTimeout; in practice within a second);
//   - the live Go heap grows by less than 8 MiB (a leak of 80 bytes a cycle
//     would show; the journal's last batches may still be counted). Live heap is the lowest go_memstats_heap_alloc_bytes
//     seen while the test's own scrapes make the idle daemon collect
//     garbage twice;
//   - RSS is stable: its growth, less what the Go runtime still holds from
//     the peak of 16 busy clients (go_memstats_sys_bytes grows only with
//     peaks; measured +8 MiB, +44 MiB with GOMAXPROCS=1, then flat), is
//     under 16 MiB. The daemon is built without -race even when the
//     tests are: the race detector's shadow memory and bookkeeping grow
//     with every request served and would be measured instead.
//
// Every cycle is one grant.
//
// Heavy: not parallel (see faults_helpers_test.go).
func TestFaultOpenCloseCycles(t *testing.T) {
	const procs, cycles, warmup = 16, 100_000, 4_000
	addr := freePort(t)
	// The daemon without -race: the race detector's own memory grows with
	// every request served (about 900 bytes a cycle with GOMAXPROCS=1),
	// which would hide what rlfs itself does.
	requireFUSE(t)
	dir := t.TempDir()
	d := &daemon{db: filepath.Join(dir, "meters.db"), mnt: filepath.Join(dir, "mnt"), meters: []string{"m=concurrency=0"},
		extra: []string{"--metrics", addr}, bin: rlfsPlain}
	t.Cleanup(func() { d.cleanup(t) })
	d.start(t)
	acq := d.path("m", "acquire")
	run := func(n int) time.Duration {
		start := time.Now()
		var ps []*proc
		for range procs {
			ps = append(ps, startPy(t, faultsPy(), "cycles", acq, strconv.Itoa(n/procs)))
		}
		for _, p := range ps {
			p.requireSuccess(t, 5*time.Minute)
		}
		return time.Since(start)
	}
	const mib = 1 << 20
	type usage struct{ goroutines, fds, rss, sys, heap float64 }
	// idle measures the idle daemon: the lowest goroutine and fd counts
	// seen (go-fuse's spare readers exit when idle; a scrape may catch one
	// on its way out), and the lowest heap seen, scraping until the
	// scrapes' own garbage has made the daemon collect twice.
	idle := func(what string) usage {
		d.waitStatus(t, "m", "in_progress", "0 of unlimited")
		m := scrape(t, addr)
		gcs := m["go_gc_duration_seconds_count"]
		u := usage{m["go_goroutines"], m["process_open_fds"], 0, 0, m["go_memstats_heap_alloc_bytes"]}
		deadline := time.Now().Add(pollTimeout)
		for n := 0; n < 20 || m["go_gc_duration_seconds_count"] < gcs+2; n++ {
			require.False(t, time.Now().After(deadline), "the idle daemon did not collect garbage twice within %v of scraping", pollTimeout)
			time.Sleep(10 * time.Millisecond) // sampling, not synchronization
			m = scrape(t, addr)
			u.goroutines = min(u.goroutines, m["go_goroutines"])
			u.fds = min(u.fds, m["process_open_fds"])
			u.heap = min(u.heap, m["go_memstats_heap_alloc_bytes"])
		}
		u.rss, u.sys = m["process_resident_memory_bytes"], m["go_memstats_sys_bytes"]
		t.Logf("%s: %.0f goroutines, %.0f fds, live heap %.1f MiB, Go sys %.1f MiB, RSS %.1f MiB",
			what, u.goroutines, u.fds, u.heap/mib, u.sys/mib, u.rss/mib)
		return u
	}
	run(warmup)
	base := idle("baseline after the warm-up")
	took := run(cycles)

	var after map[string]float64
	settled := time.Now()
	waitFor(t, "goroutines and fds return to the baseline", func() bool {
		after = scrape(t, addr)
		// go-fuse keeps from one to a few idle reader goroutines: a margin of
		// 4, where a leak of one per cycle would show 100,000
		return after["go_goroutines"] <= base.goroutines+4 && after["process_open_fds"] <= base.fds
	}, func() string {
		return fmt.Sprintf("baseline %.0f goroutines, %.0f fds; now %.0f, %.0f", base.goroutines, base.fds, after["go_goroutines"], after["process_open_fds"])
	})
	back := time.Since(settled)
	end := idle("after 100,000 cycles")
	// heap_alloc counts garbage until the next GC: at 40,000 grants/s the
	// journal's last batches (up to 8,192 queued operations of ~300 bytes
	// each, two arrays) may still be in it. 8 MiB catches a leak of 80
	// bytes a cycle.
	require.Less(t, end.heap-base.heap, 8.0*mib, "live heap growth over 100,000 cycles")
	sysGrowth := max(end.sys-base.sys, 0)
	rssAllowed := 16*mib + sysGrowth
	require.Less(t, end.rss-base.rss, rssAllowed, "RSS growth over 100,000 cycles (Go sys grew %.1f MiB)", sysGrowth/mib)
	require.Equal(t, strconv.Itoa(warmup+cycles), d.status(t, "m")["grants_total"])
	require.Empty(t, d.entries(t, "m", "holders"))
	t.Logf("FIGURE cycles: %d cycles from %d processes in %.1f s (%.0f/s); goroutines %.0f→%.0f and fds %.0f→%.0f within %s; "+
		"live heap %.1f→%.1f MiB, Go sys %.1f→%.1f MiB, RSS %.1f→%.1f MiB (the daemon built without -race)",
		cycles, procs, took.Seconds(), cycles/took.Seconds(), base.goroutines, after["go_goroutines"], base.fds, after["process_open_fds"], fmtMS(back),
		base.heap/mib, end.heap/mib, base.sys/mib, end.sys/mib, base.rss/mib, end.rss/mib)
}
