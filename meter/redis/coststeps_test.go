package redis

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
	"github.com/rlfs/rlfs/meter/redis/redistest"
	"github.com/stretchr/testify/require"
)

// TestCostSteps times every kind of bounded step (issue 17: no FCALL longer
// than a few hundred µs, whatever the meter's size) on meters with 100,000
// calls remembered: each FCALL the server ran during a scenario, from
// SLOWLOG (which logs every command with slowlog-log-slower-than 0: the
// wall time of each, so a step the machine's other load descheduled counts
// long; the median tells the step's own cost, the 99th percentile how
// often that happens). Run with:
//
//	RLFS_BENCH=1 go test -run 'TestCostSteps' -v ./meter/redis/
func TestCostSteps(t *testing.T) {
	benchOnly(t)
	const n = 100_000
	srv := redistest.Start(t)
	clk := metertest.NewClock()
	a := bareStore(t, srv.URL(), "a", Options{Lease: 1000 * time.Hour, clock: clk})
	ctx := context.Background()
	var rows []string
	report := func(kind string, f func()) {
		byFn := stepTimes(t, srv.Addr(), a, f)
		fns := make([]string, 0, len(byFn))
		for fn := range byFn {
			fns = append(fns, fn)
		}
		slices.Sort(fns)
		for _, fn := range fns {
			d := byFn[fn]
			slices.Sort(d)
			row := fmt.Sprintf("| %s | %s | %d | %v | %v | %v |", kind, strings.TrimPrefix(fn, "rlfs2_"), len(d), d[len(d)/2], d[len(d)*99/100], d[len(d)-1])
			t.Log(row)
			rows = append(rows, row)
		}
	}
	require.NoError(t, a.CreateMeter(ctx, "w", mustSpecT(t, "1000000/1h,units:1000000000/1h,concurrency=0"), meter.DefaultAttr()))
	fill(t, a, "w", n, 1, true)
	report("grant and release, 100k calls in the windows", func() {
		for i := range 200 {
			cycle(t, a, "w", 1<<39+uint64(i))
		}
	})
	report("rebuild: a limits write on windows of 100k calls", func() {
		require.NoError(t, a.SetSpec(ctx, "w", mustSpecT(t, "1000000/2h,units:1000000000/2h,concurrency=0")))
	})
	clk.Advance(3 * time.Hour)
	report("ageing: 100k calls leave the windows at once", func() { cycle(t, a, "w", 1<<40) })
	report("release: retire into the history, compact it", func() {
		for i := range 300 {
			cycle(t, a, "w", 1<<41+uint64(i))
		}
	})
	report("view of a meter with a full history", func() {
		for range 20 {
			_, err := a.View(ctx, "w", meter.ViewQuery{})
			require.NoError(t, err)
		}
	})
	report("delete: a meter with 100k calls in its ledger and history", func() { require.NoError(t, a.DeleteMeter(ctx, "w")) })

	require.NoError(t, a.CreateMeter(ctx, "x", mustSpecT(t, "1000000/1h,concurrency=0,max_hold=1m"), meter.DefaultAttr()))
	fill(t, a, "x", n, 1<<43, false)
	clk.Advance(2 * time.Minute)
	report("expiry: max_hold ends 100k calls at once", func() { cycle(t, a, "x", 1<<44) })

	require.NoError(t, a.CreateMeter(ctx, "u", mustSpecT(t, "units:100000000/1h,concurrency=0"), meter.DefaultAttr()))
	fill(t, a, "u", 2000, 1<<45, true)
	report("kth: a units window over its limit walks 256 entries", func() {
		for range 500 {
			_, err := a.Enqueue(ctx, "u", meter.Request{Ticket: 1 << 46, Cost: 99_999_000, Nonblock: true})
			require.ErrorIs(t, err, meter.ErrWouldBlock)
		}
	})
	require.NoError(t, a.CreateMeter(ctx, "q", mustSpecT(t, "concurrency=0"), meter.DefaultAttr()))
	_, err := a.Pause(ctx, "q", meter.Pause{Until: clk.Now().Add(time.Hour)})
	require.NoError(t, err)
	queue(t, a, "q", 10_000, 1<<47)
	report("dispatch: a lift grants 10k waiters", func() {
		_, err := a.Pause(ctx, "q", meter.Pause{})
		require.NoError(t, err)
		for {
			adm, err := a.Dispatch(ctx, "q")
			require.NoError(t, err)
			if adm.Wake.IsZero() {
				break
			}
		}
	})
	v, err := a.View(ctx, "q", meter.ViewQuery{})
	require.NoError(t, err)
	require.Equal(t, 10_000, v.HoldersN, "the 10k waiters granted")

	b := bareStore(t, srv.URL(), "b", Options{Lease: time.Minute, clock: clk})
	require.NoError(t, b.CreateMeter(ctx, "h", mustSpecT(t, "concurrency=0"), meter.DefaultAttr()))
	fill(t, b, "h", n, 1, false)
	report("list: a view with lists of 100k holders", func() {
		v, err := a.View(ctx, "h", meter.ViewQuery{Lists: true})
		require.NoError(t, err)
		require.Len(t, v.Holders, n)
	})
	require.Equal(t, "+OK", redistest.Command(srv.Addr(), "FLUSHALL"))
	report("re-assert: a host puts back 100k calls", func() { require.Equal(t, epochPutBack, b.checkEpoch()) })
	clk.Advance(2 * time.Minute)
	report("lapse: a host holding 100k calls lapses", func() { cycle(t, a, "h", 1<<42) })
	t.Logf("load: %s\n| scenario | function | FCALLs | median | p99 | longest |\n|---|---|---|---|---|---|\n%s", loadAvg(), strings.Join(rows, "\n"))
}

// stepTimes runs f with every command logged and returns the time of each
// FCALL it sent (SLOWLOG), by function.
func stepTimes(t *testing.T, addr string, s *Store, f func()) map[string][]time.Duration {
	t.Helper()
	require.Equal(t, "+OK", redistest.Command(addr, "CONFIG", "SET", "slowlog-log-slower-than", "0", "slowlog-max-len", "1000000"))
	require.Equal(t, "+OK", redistest.Command(addr, "SLOWLOG", "RESET"))
	f()
	require.Equal(t, "+OK", redistest.Command(addr, "CONFIG", "SET", "slowlog-log-slower-than", "-1"))
	ctx := context.Background()
	entries, err := s.c.Do(ctx, s.c.B().SlowlogGet().Count(-1).Build()).ToArray()
	require.NoError(t, err)
	out := map[string][]time.Duration{}
	for _, e := range entries {
		f, err := e.ToArray()
		require.NoError(t, err)
		us, _ := f[2].AsInt64()
		args, _ := f[3].AsStrSlice()
		if len(args) > 1 && strings.EqualFold(args[0], "fcall") {
			out[args[1]] = append(out[args[1]], time.Duration(us)*time.Microsecond)
		}
	}
	require.NotEmpty(t, out, "no FCALL")
	return out
}

// loadAvg is the machine's load average (1, 5, 15 minutes).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

// fill makes n calls on meter name from host s, w goroutines at a time
// (the client pipelines them), releasing them if release.
func fill(t *testing.T, s *Store, name string, n int, first uint64, release bool) {
	t.Helper()
	ctx := context.Background()
	const w = 16
	errs := make(chan error, w)
	for g := range w {
		go func() {
			var err error
			for i := g; i < n && err == nil; i += w {
				var adm meter.Admission
				adm, err = s.Enqueue(ctx, name, meter.Request{Ticket: first + uint64(i), Cost: 1, Nonblock: true})
				if err == nil && !adm.Granted {
					err = fmt.Errorf("ticket %d not granted", first+uint64(i))
				}
				if err == nil && release {
					err = s.Release(ctx, name, adm.Call.ID)
				}
			}
			errs <- err
		}()
	}
	for range w {
		require.NoError(t, <-errs)
	}
}

// queue queues n blocking acquires on meter name from host s.
func queue(t *testing.T, s *Store, name string, n int, first uint64) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		adm, err := s.Enqueue(ctx, name, meter.Request{Ticket: first + uint64(i), Cost: 1})
		require.NoError(t, err)
		require.False(t, adm.Granted, "ticket %d queued", first+uint64(i))
	}
}
