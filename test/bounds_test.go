package test

// What one caller can do to a meter is bounded (issue 15, items 1 and 2;
// docs/semantics.md, "Bounds"): no sum of costs or settlements wraps, and
// no settlement pushes a bucket more than one full period into the future.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// onBothStores runs a test on a single host (SQLite) and on a one-host fleet
// (Redis), each daemon serving meters.
func onBothStores(t *testing.T, test func(t *testing.T, d *daemon), meters ...string) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		test(t, startDaemon(t, meters...))
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		_, ds := fleet(t, 1, nil, meters...)
		test(t, ds[0])
	})
}

// TestUnitsWindowOverflow pins issue 15's item 1: on
// units:1125899906842624/1h,concurrency=0, 8,200 calls of acquire@0 held at
// once that each settle 2^50 made the window's sum wrap (status read
// "-9214364837600034816 used") and the next 2^50-unit calls were granted at
// once. Usage saturates at 2^53, the window stays closed, to acquire@0 too,
// and status shows a sane count.
func TestUnitsWindowOverflow(t *testing.T) {
	t.Parallel()
	const item = "units:1125899906842624/1h"
	onBothStores(t, func(t *testing.T, d *daemon) {
		n := "8200"
		if d.host() != "" {
			n = "10" // 10·(2^50+1) > 2^53 saturates too; 8,200 on Redis waits for O(1) settlements (issue 17)
		}
		p := startPy(t, filepath.Join(clientsDir, "flood.py"), d.path("m"), n, "0", "1125899906842624")
		waitWithin(t, 3*time.Minute, "flood.py settles its calls", func() bool {
			return strings.Count(p.stdout.String(), "try ") == 3 || p.exited()
		}, func() string { return p.state() + "\n" + p.stderr.String() })
		require.Equal(t, []string{"try EAGAIN", "try EAGAIN", "try EAGAIN"}, linesWith(p.stdout.String(), "try "),
			"O_NONBLOCK acquire@2^50 on a window holding 8,200·2^50 units")
		st := d.status(t, "m")
		require.Equal(t, "9007199254740992 used, 0 free", st["window "+item], "usage saturates at 2^53")
		require.NoError(t, p.stdin.Close())
		p.waitOutput(t, "closed")
		d.waitStatus(t, "m", "in_progress", "0 of unlimited")
		c := startProc(t, python3.need(t), "-c", nonblockOpen, d.path("m", "acquire@0"))
		c.waitOutput(t, "EAGAIN")
		require.Equal(t, "9007199254740992 used, 0 free", d.status(t, "m")["window "+item], "completed calls count for an hour")
	}, "m="+item+",concurrency=0")
}

// nonblockOpen opens argv[1] with O_NONBLOCK and prints OK or the errno name.
const nonblockOpen = `import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)); print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])`

// linesWith returns the lines of s that start with prefix.
func linesWith(s, prefix string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// TestUnitsBucketDebtBounded pins issue 15's item 2: one settlement of
// 2^50 on units:rate=100/1s put next_grant in the year 2232, a limits
// write kept it, and only a restart cleared it (on Redis not even that).
// Debt stops one full period beyond an empty bucket (2 s here, 10 s at
// 10/1s), a settlement back to a small cost refunds only what was charged,
// and a limits write owes the debt in tokens under the new rate.
func TestUnitsBucketDebtBounded(t *testing.T) {
	t.Parallel()
	onBothStores(t, func(t *testing.T, d *daemon) {
		h := pyWrites(t, d.path("m", "acquire@1"), "rdwr")
		h.waitOutput(t, "held ")
		require.Equal(t, "ok 16", h.write(t, "1125899906842624"))
		requireNextGrantWithin(t, d, "m", 2*time.Second)
		require.Equal(t, "0 of 100 free", d.status(t, "m")["bucket units:rate=100/1s"])

		// Settling back to 1 refunds what was charged only: nothing more
		// than before the first write (the bucket had 99 tokens then, 100 once 10 ms passed).
		require.Equal(t, "ok 1", h.write(t, "1"))
		require.Contains(t, []string{"99 of 100 free", "100 of 100 free"}, d.status(t, "m")["bucket units:rate=100/1s"])
		require.Equal(t, "ok 16", h.write(t, "1125899906842624"))

		// The debt under new limits: 200 tokens owed at 10/1s is 20 s,
		// capped at one period beyond empty (2·10 tokens: 2 s).
		writeLimits(t, d, "m", "units:rate=10/1s,concurrency=0")
		requireNextGrantWithin(t, d, "m", 2*time.Second)
		require.Equal(t, "0 of 10 free", d.status(t, "m")["bucket units:rate=10/1s"])
		require.NoError(t, h.stdin.Close())
		h.waitOutput(t, "closed")
		d.restart(t)
		requireNextGrantWithin(t, d, "m", 2*time.Second)
	}, "m=units:rate=100/1s,concurrency=0")
}

// requireNextGrantWithin reads meter m's next_grant, "TIME (in D)", and
// requires TIME within the next limit, in this year ("now" is within it: a
// loaded machine may take that long to read it).
func requireNextGrantWithin(t *testing.T, d *daemon, m string, limit time.Duration) {
	t.Helper()
	v := d.status(t, m)["next_grant"]
	if v == "now" {
		return
	}
	at, in, ok := strings.Cut(v, " (in ")
	require.True(t, ok, "next_grant: %q, want TIME (in D)", v)
	when, err := time.Parse(time.RFC3339Nano, at)
	require.NoError(t, err, "next_grant: %q", v)
	require.Equal(t, time.Now().Year(), when.Year(), "next_grant: %q", v)
	d2, err := time.ParseDuration(strings.TrimSuffix(in, ")"))
	require.NoError(t, err, "next_grant: %q", v)
	require.LessOrEqual(t, d2, limit, "next_grant: %q: at most one full period beyond an empty bucket", v)
	require.Less(t, time.Until(when), limit+time.Second, "next_grant: %q", v)
}

// writeLimits writes spec to meter m's limits file.
func writeLimits(t *testing.T, d *daemon, m, spec string) {
	t.Helper()
	require.NoError(t, os.WriteFile(d.path(m, "limits"), []byte(spec+"\n"), 0), "echo %s > %s/limits", spec, m)
}

// TestShrunkUnitsRefusesWaiter pins issue 15's item 4: on the fleet, with
// units:10/1s, host a holding acquire@5 and host b waiting on acquire@8,
// limits lowered to units:6/1s left the waiter in the store's queue for
// good (SQLite gave it E2BIG), and every later acquire@1 on both hosts
// waited behind it. The waiter gets E2BIG at the limits write, on both
// stores, and the meter goes on.
func TestShrunkUnitsRefusesWaiter(t *testing.T) {
	t.Parallel()
	const spec = "m=units:10/1s,concurrency=0"
	check := func(t *testing.T, a, b *daemon) {
		h := unitsHold(t, a.path("m", "acquire@5"))
		w := startProc(t, "cat", b.path("m", "acquire@8"))
		a.waitStatus(t, "m", "waiting", "1")
		writeLimits(t, a, "m", "units:6/1s,concurrency=0")
		wrote := time.Now()
		_ = w.wait(t, pollTimeout)
		t.Logf("FIGURE the waiter got E2BIG %s after the limits write", fmtMS(time.Since(wrote)))
		require.Equal(t, 1, w.exitCode(), "cat acquire@8 after the limits became units:6/1s")
		require.Contains(t, w.stderr.String(), "Argument list too long")
		h.release(t)
		for _, d := range []*daemon{a, b} {
			c := startProc(t, "cat", d.path("m", "acquire@1"))
			c.requireSuccess(t, pollTimeout)
			d.waitStatus(t, "m", "waiting", "0")
		}
	}
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		d := startDaemon(t, spec)
		check(t, d, d)
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		_, ds := fleet(t, 2, nil, spec)
		check(t, ds[0], ds[1])
	})
}
