package test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Regression (issue 8): 6 calls on 2/1s, then `echo 10/1m > limits`:
// status said "2 used" and 8 more calls were granted at once, because the
// calls older than the old window had been pruned. The daemon now keeps
// them (the history), across a restart too: exactly 4 more calls are
// granted in that minute.
func TestWideningKeepsJudgingPastCalls(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "w=2/1s,concurrency=0")
	acq := d.path("w", "acquire")
	six := startProc(t, "sh", "-c", `for i in 1 2 3 4 5 6; do cat "$1" || exit 1; done`, "sh", acq)
	six.requireSuccess(t, pollTimeout)
	first := daemonGrantTime(t, six.stdout.String())
	d.restart(t)

	require.NoError(t, os.WriteFile(d.path("w", "limits"), []byte("10/1m,concurrency=0\n"), 0o644))
	st := d.status(t, "w")
	require.Equal(t, "6 used, 4 free", st["window 10/1m"], "status after widening to 10/1m; status:\n%v", st)
	require.Regexp(t, `^[0-6] calls`, st["history"], "the calls that had left the 2/1s window are kept, in the history")

	var cats []*proc
	for range 6 {
		cats = append(cats, startProc(t, "cat", acq))
	}
	waitFor(t, "4 of 6 cats are granted and 2 wait", func() bool {
		n := 0
		for _, c := range cats {
			if c.exited() {
				n++
			}
		}
		return n == 4 && len(d.entries(t, "w", "waiters")) == 2
	}, func() string { return "waiters: " + strings.Join(d.entries(t, "w", "waiters"), " ") })
	for _, c := range cats {
		if c.exited() {
			require.NoError(t, c.err, "a granted cat")
		}
	}
	st = d.status(t, "w")
	require.Equal(t, "10", st["grants_total"])
	require.Equal(t, "10 used, 0 free", st["window 10/1m"])
	// The next grant is when the first call stops counting: a minute after
	// it completed (the grant line has millisecond precision).
	next, _, _ := strings.Cut(st["next_grant"], " ")
	at, err := time.Parse(time.RFC3339Nano, next)
	require.NoError(t, err, "next_grant %q", st["next_grant"])
	require.False(t, at.Before(first.Add(time.Minute)), "next_grant %v is earlier than the first call (%v) + 1m", at, first)
	require.Less(t, at.Sub(first), time.Minute+5*time.Second, "next_grant %v is not when the first call (%v) stops counting", at, first)
	require.Len(t, d.entries(t, "w", "waiters"), 2, "the last two still wait")
}

// The history is bounded: many calls leave status and memory sane, and the
// status line says how many calls are kept.
func TestHistoryCountsRetiredCalls(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "h=rate=1000/1s,burst=1000,concurrency=0")
	acq := d.path("h", "acquire")
	calls := startProc(t, "sh", "-c", `i=0; while [ $i -lt 50 ]; do cat "$1" >/dev/null || exit 1; i=$((i+1)); done`, "sh", acq)
	calls.requireSuccess(t, pollTimeout)
	// No window: every completed call is retired at once into the history.
	d.waitStatus(t, "h", "grants_total", "50")
	st := d.status(t, "h")
	n, _, _ := strings.Cut(st["history"], " calls")
	require.Contains(t, []string{"49", "50"}, n, "history %q: the completed calls (the last release may lag)", st["history"])
	require.NoError(t, os.WriteFile(d.path("h", "limits"), []byte("60/1h,concurrency=0\n"), 0o644))
	st = d.status(t, "h")
	require.Equal(t, "50 used, 10 free", st["window 60/1h"], "a window set after the calls judges them; status:\n%v", st)
}
