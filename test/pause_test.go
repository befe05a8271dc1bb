package test

// The shared pause (issue 18, design §10): a meter's `pause` file and a
// `retry-after` line on an acquire descriptor hold every grant until the
// pause ends; waiters keep their FIFO places; max_pause caps it; a restart
// keeps it.

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pauseCase runs test against one daemon of each store serving meters.
func pauseCase(t *testing.T, test func(t *testing.T, a, b *daemon), meters ...string) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		d := startDaemon(t, meters...)
		test(t, d, d)
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		_, ds := fleet(t, 2, nil, meters...)
		test(t, ds[0], ds[1])
	})
}

// writePause writes text to meter m's pause file on d.
func writePause(t *testing.T, d *daemon, m, text string) {
	t.Helper()
	require.NoError(t, os.WriteFile(d.path(m, "pause"), []byte(text+"\n"), 0), "echo %s > %s/pause", text, m)
}

// readPause reads meter m's pause file on d.
func readPause(t *testing.T, d *daemon, m string) string {
	t.Helper()
	b, err := os.ReadFile(d.path(m, "pause"))
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

// grantAt runs `cat acquire` on d and returns when its grant came.
func grantAt(t *testing.T, d *daemon, m string) (*proc, func() time.Time) {
	t.Helper()
	p := startProc(t, "cat", d.path(m, "acquire"))
	return p, func() time.Time {
		t.Helper()
		require.NoError(t, p.wait(t, pollTimeout), "cat %s/acquire", m)
		ts := grantTimes(t, p.stdout.String())
		require.Len(t, ts, 1, "grant line of cat: %q", p.stdout.String())
		return ts[0]
	}
}

// TestPauseFile: `echo 2 > pause` holds an open about 2 s, on the host that
// wrote it and on another host of a fleet; reading it says until when, by
// whom and how; status, status.json and rlfs status show it; `0` lifts it
// at once.
func TestPauseFile(t *testing.T) {
	t.Parallel()
	pauseCase(t, func(t *testing.T, a, b *daemon) {
		require.Equal(t, "not paused", readPause(t, a, "m"))
		wrote := time.Now()
		writePause(t, a, "m", "2")
		got := readPause(t, b, "m")
		require.Regexp(t, `^paused until \S+ \(in [0-9.]+m?s\) by pid \d+ .* through the pause file$`, got)
		_, when := grantAt(t, b, "m")
		g := when()
		t.Logf("FIGURE granted %s after the pause of 2 s was written", fmtMS(g.Sub(wrote)))
		// (A grant line says the time to the millisecond, truncated.)
		require.False(t, g.Before(wrote.Add(2*time.Second-time.Millisecond)), "granted %v after the write of a 2 s pause", g.Sub(wrote))
		require.Less(t, g.Sub(wrote), 2*time.Second+loaded(time.Second), "granted when the pause ended")

		writePause(t, a, "m", "1h")
		st := b.status(t, "m")
		require.Contains(t, st["pause"], "paused until ")
		var rep struct {
			Pause *struct{ Until, By, From string } `json:"pause"`
		}
		raw, err := os.ReadFile(b.path("m", "status.json"))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(raw, &rep))
		require.NotNil(t, rep.Pause, "status.json has the pause")
		require.Equal(t, "the pause file", rep.Pause.From)
		c := startProc(t, "cat", b.path("m", "acquire"))
		b.waitStatus(t, "m", "waiting", "1")
		lifted := time.Now()
		writePause(t, a, "m", "0")
		require.NoError(t, c.wait(t, pollTimeout))
		t.Logf("FIGURE granted %s after the pause was lifted", fmtMS(time.Since(lifted)))
		require.Less(t, time.Since(lifted), loaded(time.Second), "0 lifts the pause at once")
		require.Equal(t, "not paused", readPause(t, b, "m"))
	}, "m=concurrency=0")
}

// TestPauseRetryAfterDescriptor: a holder writes `retry-after 2` through
// its acquire descriptor (alone, then beside a settlement): the meter
// pauses as for the file, on every host.
func TestPauseRetryAfterDescriptor(t *testing.T) {
	t.Parallel()
	pauseCase(t, func(t *testing.T, a, b *daemon) {
		h := pyWrites(t, a.path("m", "acquire@1"), "rdwr")
		h.waitOutput(t, "held ")
		wrote := time.Now()
		require.Equal(t, "ok 14", h.write(t, "retry-after 2\n"))
		require.Contains(t, readPause(t, b, "m"), "through an acquire descriptor")
		_, when := grantAt(t, b, "m")
		g := when()
		require.False(t, g.Before(wrote.Add(2*time.Second-time.Millisecond)), "granted %v after retry-after 2", g.Sub(wrote))
		require.Less(t, g.Sub(wrote), 2*time.Second+loaded(time.Second))
		require.Equal(t, "ok 20", h.write(t, "7\nRetry-After: 1.5s\n"))
		b.waitUnitsUsed(t, "m", "units:100/1h", 8) // the settlement of 7 took, beside the grant of 1 above
		require.Contains(t, readPause(t, a, "m"), "paused until")
		require.Equal(t, "err 22 EINVAL", h.write(t, "retry-after soon\n"), "a bad retry-after changes nothing")
		require.NoError(t, h.stdin.Close())
		h.waitOutput(t, "closed")
	}, "m=units:100/1h,concurrency=0")
}

// TestPauseHTTPDateFIFOAndCap: an HTTP-date pauses until then; waiters
// that queued during the pause go in their order when it ends; an earlier
// pause does not shorten a later one; max_pause caps a longer pause (and
// the daemon logs it).
func TestPauseHTTPDateFIFOAndCap(t *testing.T) {
	t.Parallel()
	pauseCase(t, func(t *testing.T, a, b *daemon) {
		until := time.Now().Add(3 * time.Second).UTC().Truncate(time.Second)
		writePause(t, a, "m", until.Format("Mon, 02 Jan 2006 15:04:05 GMT"))
		writePause(t, b, "m", "1s") // earlier: changes nothing
		require.Contains(t, readPause(t, b, "m"), "paused until "+until.Format("2006-01-02T15:04:05"))
		var ps []*proc
		for i, d := range []*daemon{a, b, a, b} {
			ps = append(ps, startProc(t, "cat", d.path("m", "acquire")))
			a.waitStatus(t, "m", "waiting", strconv.Itoa(i+1))
		}
		// FIFO is the order of the call ids the store gave: on a fleet the
		// four are granted at one instant, and two hosts' clocks stamp
		// their grant lines a millisecond apart either way.
		last := 0
		for i, p := range ps {
			require.NoError(t, p.wait(t, pollTimeout))
			out := p.stdout.String()
			g := grantTimes(t, out)[0]
			require.False(t, g.Before(until), "waiter %d granted before the HTTP-date", i)
			m := regexp.MustCompile(` meter m call (\d+) `).FindStringSubmatch(out)
			require.NotNil(t, m, "a call id in the grant line %q", out)
			id, _ := strconv.Atoi(m[1])
			require.Greater(t, id, last, "waiter %d granted before waiter %d: FIFO across the pause", i, i-1)
			last = id
		}
		// max_pause=2s caps a pause of an hour.
		writePause(t, a, "capped", "1h")
		got := readPause(t, b, "capped")
		in := got[strings.Index(got, "(in ")+4 : strings.Index(got, ")")]
		d, err := time.ParseDuration(in)
		require.NoError(t, err, "pause: %q", got)
		require.LessOrEqual(t, d, 2*time.Second, "a pause of 1h on max_pause=2s: %q", got)
		a.waitLog(t, "pause capped at the meter's max_pause")
	}, "m=concurrency=0", "capped=concurrency=0,max_pause=2s")
}

// requireSameUntil checks that two reads of d's pause file (before and
// after a restart) show the same end. On one host it prints the same. On a
// fleet the instant is the store's, converted to the host's clock from a
// reply (at most a round trip off) and printed to the second: the same end
// may print one second apart across a restart's new connections when it
// lies near a second's end.
func requireSameUntil(t *testing.T, d *daemon, before, after, what string) {
	t.Helper()
	n := len("paused until 2026-01-01T00:00:00")
	require.GreaterOrEqual(t, len(before), n, "%s: before %q", what, before)
	require.GreaterOrEqual(t, len(after), n, "%s: after %q", what, after)
	if !slices.Contains(d.extra, "--store") {
		require.Equal(t, before[:n], after[:n], what)
		return
	}
	const layout = "2006-01-02T15:04:05"
	u0, err := time.Parse(layout, strings.TrimPrefix(before[:n], "paused until "))
	require.NoError(t, err, "%s: before %q", what, before)
	u1, err := time.Parse(layout, strings.TrimPrefix(after[:n], "paused until "))
	require.NoError(t, err, "%s: after %q", what, after)
	require.WithinDuration(t, u0, u1, time.Second, "%s: %q, before %q", what, after, before)
}

// TestPauseSurvivesRestart: a pause is stored like the limits: after a
// restart (and, on a fleet, in Redis), opens still wait for its end.
func TestPauseSurvivesRestart(t *testing.T) {
	t.Parallel()
	pauseCase(t, func(t *testing.T, a, b *daemon) {
		writePause(t, a, "m", "30s")
		before := readPause(t, a, "m")
		a.restart(t)
		after := readPause(t, a, "m")
		requireSameUntil(t, a, before, after, "the pause after a restart")
		c := startProc(t, python3.need(t), "-c", nonblockOpen, a.path("m", "acquire"))
		c.waitOutput(t, "EAGAIN")
		writePause(t, a, "m", "none")
		c = startProc(t, python3.need(t), "-c", nonblockOpen, a.path("m", "acquire"))
		c.waitOutput(t, "OK")
	}, "m=concurrency=0")
}

// TestPauseDescriptorCannotLift: `retry-after 0` on an acquire descriptor
// (the right to acquire only) sets nothing: the pause an operator wrote to
// the pause file stays.
func TestPauseDescriptorCannotLift(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=0")
	h := pyWrites(t, d.path("m", "acquire@1"), "rdwr") // granted before the pause
	h.waitOutput(t, "held ")
	writePause(t, d, "m", "1h")
	require.Equal(t, "ok 14", h.write(t, "retry-after 0\n"))
	require.Contains(t, readPause(t, d, "m"), "paused until ", "retry-after 0 through a descriptor lifted the pause")
	require.Equal(t, "ok 17", h.write(t, "Retry-After: none"))
	require.Contains(t, readPause(t, d, "m"), "paused until ")
	writePause(t, d, "m", "0")
	require.Equal(t, "not paused", readPause(t, d, "m"))
	require.NoError(t, h.stdin.Close())
	h.waitOutput(t, "closed")
}

// TestPauseFleetSurvivesRedisRestart: the pause is kept in Redis with the
// meter: after redis-server restarts from its AOF, it holds on every host
// (an O_NONBLOCK open gets EAGAIN), the waiter queued before it keeps its
// place, and a lift written on the other host grants it at once.
func TestPauseFleetSurvivesRedisRestart(t *testing.T) {
	t.Parallel()
	// appendfsync always: a kill loses nothing, so that this test is about
	// the pause (what a kill with everysec loses is the failover tests').
	srv := startRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	ds := fleetOn(t, srv, 2, nil, "m=concurrency=0")
	a, b := ds[0], ds[1]
	writePause(t, a, "m", "1h")
	before := readPause(t, b, "m")
	// The time left is the store's (until − its now, in one reply): under
	// the hour written, never over.
	require.Regexp(t, `^paused until \S+ \(in 59m59(\.\d+)?s\) by pid \d+ .* on h1 through the pause file$`, before)
	w := startProc(t, "cat", b.path("m", "acquire"))
	a.waitStatus(t, "m", "waiting", "1")
	srv.Restart()
	for _, d := range ds {
		var after string
		waitFor(t, "the pause read on "+d.host()+" after Redis restarted", func() bool {
			after = readPause(t, d, "m")
			return strings.HasPrefix(after, "paused until ")
		}, func() string { return after })
		requireSameUntil(t, d, before, after, "the pause on "+d.host()+" after Redis restarted from its AOF")
		c := startProc(t, python3.need(t), "-c", nonblockOpen, d.path("m", "acquire"))
		c.waitOutput(t, "EAGAIN")
	}
	require.Equal(t, "1", a.status(t, "m")["waiting"], "the waiter queued before the restart")
	// A client may find one more of its connections closed by the restart
	// now: that write fails with EIO (fail-closed, as any step in an
	// outage) and the next one goes through.
	var err error
	waitFor(t, "the lift written on h1 after Redis restarted", func() bool {
		err = os.WriteFile(a.path("m", "pause"), []byte("0\n"), 0)
		return err == nil
	}, func() string { return fmt.Sprint(err) })
	lifted := time.Now()
	require.NoError(t, w.wait(t, pollTimeout), "cat acquire on h2, queued through the pause")
	require.Less(t, time.Since(lifted), loaded(time.Second), "a lift grants at once")
	require.Equal(t, "not paused", readPause(t, b, "m"))
}
