package redis

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// The cost of a grant in Redis, against one GCRA decision (design §11;
// issue 17). Run with:
//
//	RLFS_BENCH=1 go test -run 'TestCost' -v ./meter/redis/
//
// TestCostPerGrant measures the Redis CPU (INFO's used_cpu_user +
// used_cpu_sys) of acquire+release cycles through the Store (no engine),
// per cycle, on meters holding more and more calls, and of one GCRA
// decision (testdata/gcra.lua: GET and SET of a TAT key) in the same
// server through the same client. TestCostLongestStep measures the
// longest single FCALL (SLOWLOG) on meters with 100,000 calls remembered.

//go:embed testdata/gcra.lua
var gcraLibrary string

func benchOnly(t *testing.T) {
	if os.Getenv("RLFS_BENCH") == "" {
		t.Skip("a measurement: set RLFS_BENCH=1 to run it")
	}
}

// bareStore opens a Store on url for host, without an engine.
func bareStore(t testing.TB, url, host string, opt Options) *Store {
	t.Helper()
	opt.URL, opt.Host = url, host
	s, err := Open(opt)
	require.NoError(t, err, "Open(%s)", host)
	t.Cleanup(func() { s.Close() })
	return s
}

// serverCPU is the server's CPU time so far (INFO cpu).
func serverCPU(t testing.TB, addr string) time.Duration {
	t.Helper()
	info := redistest.Command(addr, "INFO", "cpu")
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err, "INFO cpu %s", line)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// costOf runs f n times, rounds times, and returns the median server CPU
// per run.
func costOf(t testing.TB, addr string, n, rounds int, f func(i int)) time.Duration {
	var per []time.Duration
	i := 0
	for range rounds {
		before := serverCPU(t, addr)
		for range n {
			f(i)
			i++
		}
		per = append(per, (serverCPU(t, addr)-before)/time.Duration(n))
	}
	slices.Sort(per)
	return per[len(per)/2]
}

// cycle acquires a call (nonblocking) and releases it.
func cycle(t testing.TB, s *Store, name string, ticket uint64) {
	ctx := context.Background()
	adm, err := s.Enqueue(ctx, name, meter.Request{Ticket: ticket, Cost: 1, Nonblock: true, Holder: meter.Holder{PID: 1}})
	require.NoError(t, err, "Enqueue %d", ticket)
	require.True(t, adm.Granted, "Enqueue %d granted", ticket)
	require.NoError(t, s.Release(ctx, name, adm.Call.ID), "Release %d", ticket)
}

func TestCostPerGrant(t *testing.T) {
	benchOnly(t)
	srv := redistest.Start(t)
	s := bareStore(t, srv.URL(), "a", Options{Lease: time.Hour})
	ctx := context.Background()
	const n, rounds = 3000, 7
	c := s.c
	require.NoError(t, c.Do(ctx, c.B().FunctionLoad().Replace().FunctionCode(gcraLibrary).Build()).Error())
	gcra := func(int) {
		err := c.Do(ctx, c.B().Fcall().Function("rlfsbench_gcra").Numkeys(1).Key("{bench}:tat").Arg("1", "1000000000").Build()).Error()
		require.NoError(t, err)
	}
	ticket := uint64(0)
	next := func() uint64 { ticket++; return ticket }
	for _, tc := range []struct {
		spec       string
		held, done int
	}{
		{"concurrency=5000", 0, 0}, {"concurrency=5000", 1000, 0},
		{"1000000/1h", 0, 0}, {"1000000/1h", 0, 2000}, {"1000000/1h", 0, 100000},
	} {
		name := fmt.Sprintf("m%d", next())
		require.NoError(t, s.CreateMeter(ctx, name, mustSpecT(t, tc.spec), meter.DefaultAttr()))
		for range tc.held {
			adm, err := s.Enqueue(ctx, name, meter.Request{Ticket: next(), Cost: 1, Nonblock: true})
			require.NoError(t, err)
			require.True(t, adm.Granted)
		}
		for range tc.done {
			cycle(t, s, name, next())
		}
		// Rounds alternate the two, so that the machine's other load
		// weighs on both alike; the ratio is the median of the rounds'.
		var ratios []float64
		var grants, decisions []time.Duration
		for range rounds {
			g := costOf(t, srv.Addr(), n, 1, gcra)
			p := costOf(t, srv.Addr(), n, 1, func(int) { cycle(t, s, name, next()) })
			ratios, grants, decisions = append(ratios, float64(p)/float64(g)), append(grants, p), append(decisions, g)
		}
		slices.Sort(ratios)
		slices.Sort(grants)
		slices.Sort(decisions)
		t.Logf("%-18s %5d held %7d in the window: %6.1fµs per grant (acquire+release), GCRA %5.1fµs: %.2f× (median of %d rounds of %d)",
			tc.spec, tc.held, tc.done, float64(grants[rounds/2])/1e3, float64(decisions[rounds/2])/1e3, ratios[rounds/2], rounds, n)
	}
}

// slowest is the longest FCALL the server logged since the last reset
// (SLOWLOG, every command logged), with its function, the median FCALL
// and how many. SLOWLOG times the wall clock: on a busy machine a step
// may be descheduled in the middle, the median tells the step's own cost.
func slowest(t testing.TB, c rueidis.Client) (time.Duration, string, time.Duration, int) {
	t.Helper()
	ctx := context.Background()
	entries, err := c.Do(ctx, c.B().SlowlogGet().Count(-1).Build()).ToArray()
	require.NoError(t, err)
	var all []time.Duration
	var worst time.Duration
	var what string
	for _, e := range entries {
		f, err := e.ToArray()
		require.NoError(t, err)
		us, _ := f[2].AsInt64()
		args, _ := f[3].AsStrSlice()
		if len(args) > 1 && strings.EqualFold(args[0], "fcall") {
			d := time.Duration(us) * time.Microsecond
			all = append(all, d)
			if d > worst {
				worst, what = d, args[1]
			}
		}
	}
	require.NoError(t, c.Do(ctx, c.B().SlowlogReset().Build()).Error())
	slices.Sort(all)
	var median time.Duration
	if len(all) > 0 {
		median = all[len(all)/2]
	}
	return worst, what, median, len(all)
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

// longest runs f with every command logged and returns the longest FCALL
// it sent, the median and how many FCALLs.
func longest(t *testing.T, addr string, c rueidis.Client, f func()) (time.Duration, string, time.Duration, int) {
	t.Helper()
	require.Equal(t, "+OK", redistest.Command(addr, "CONFIG", "SET", "slowlog-log-slower-than", "0", "slowlog-max-len", "1000000"))
	require.Equal(t, "+OK", redistest.Command(addr, "SLOWLOG", "RESET"))
	f()
	require.Equal(t, "+OK", redistest.Command(addr, "CONFIG", "SET", "slowlog-log-slower-than", "-1"))
	return slowest(t, c)
}

func TestCostLongestStep(t *testing.T) {
	benchOnly(t)
	const n = 100_000
	srv := redistest.Start(t)
	clk := metertest.NewClock()
	a := bareStore(t, srv.URL(), "a", Options{Lease: 1000 * time.Hour, clock: clk})
	ctx := context.Background()
	report := func(what string, f func()) {
		worst, fn, median, calls := longest(t, srv.Addr(), a.c, f)
		t.Logf("%-62s %4d FCALLs, median %8v, longest %8v (%s)", what, calls, median, worst, fn)
	}
	require.NoError(t, a.CreateMeter(ctx, "w", mustSpecT(t, "1000000/1h,concurrency=0"), meter.DefaultAttr()))
	fill(t, a, "w", n, 1, true)
	report("a limits write on a window of 100k calls (rebuild)", func() {
		require.NoError(t, a.SetSpec(ctx, "w", mustSpecT(t, "1000000/2h,concurrency=0")))
	})
	report("a view with lists of that meter", func() {
		_, err := a.View(ctx, "w", meter.ViewQuery{Lists: true})
		require.NoError(t, err)
	})
	clk.Advance(3 * time.Hour)
	report("an acquire when the 100k calls leave the window at once", func() { cycle(t, a, "w", 1<<40) })
	report("the release after them (retires 100k into the history)", func() {
		for range 3 {
			cycle(t, a, "w", 1<<41+uint64(clk.Now().UnixNano()))
		}
	})

	report("a meter removed with 100k calls in its ledger and history", func() { require.NoError(t, a.DeleteMeter(ctx, "w")) })

	b := bareStore(t, srv.URL(), "b", Options{Lease: time.Minute, clock: clk})
	require.NoError(t, b.CreateMeter(ctx, "h", mustSpecT(t, "concurrency=0"), meter.DefaultAttr()))
	fill(t, b, "h", n, 1, false)
	report("a view with lists of 100k holders", func() {
		v, err := a.View(ctx, "h", meter.ViewQuery{Lists: true})
		require.NoError(t, err)
		require.Len(t, v.Holders, n)
	})
	require.Equal(t, "+OK", redistest.Command(srv.Addr(), "FLUSHALL"))
	report("a host putting back 100k calls after the store lost its data", func() {
		require.Equal(t, epochPutBack, b.checkEpoch())
	})
	clk.Advance(2 * time.Minute)
	report("an acquire after the lapse of a host holding 100k calls", func() { cycle(t, a, "h", 1<<42) })
}
