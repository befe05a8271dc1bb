package redis

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/redis/redistest"
	"github.com/rlfs/rlfs/test/gcra"
)

// The cost of a grant in Redis, against one GCRA decision (design §11;
// issue 17). Run with:
//
//	RLFS_BENCH=1 go test -run 'TestCost' -v ./meter/redis/
//
// TestCostPerGrant measures the Redis CPU (INFO's used_cpu_user +
// used_cpu_sys) of acquire+release cycles through the Store (no engine),
// per cycle, on meters holding more and more calls, and of one GCRA
// decision (test/gcra: GET and SET of a TAT key) in the same
// server through the same client. TestCostSteps measures every kind of
// bounded step (SLOWLOG: each FCALL's time) on meters with 100,000 calls
// remembered (steps.go).

var gcraLibrary = gcra.Library

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

// costOfParallel runs f n times over k goroutines and returns the server
// CPU per run.
func costOfParallel(t testing.TB, addr string, n, k int, f func(g int)) time.Duration {
	before := serverCPU(t, addr)
	var wg sync.WaitGroup
	for g := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n / k {
				f(g)
			}
		}()
	}
	wg.Wait()
	return (serverCPU(t, addr) - before) / time.Duration(n/k*k)
}

// TestCostPerGrantFleet is TestCostPerGrant under the load the issue
// measured: 2 hosts × 4 clients on one meter, against 8 clients of the
// GCRA function. Releases that arrive together are committed in groups
// (releases.go), as a busy fleet's are.
func TestCostPerGrantFleet(t *testing.T) {
	benchOnly(t)
	srv := redistest.Start(t)
	hosts := []*Store{bareStore(t, srv.URL(), "a", Options{Lease: time.Hour}), bareStore(t, srv.URL(), "b", Options{Lease: time.Hour})}
	ctx := context.Background()
	const n, rounds, clients = 4000, 7, 8
	c := hosts[0].c
	require.NoError(t, c.Do(ctx, c.B().FunctionLoad().Replace().FunctionCode(gcraLibrary).Build()).Error())
	gcra := func(g int) {
		key, c := "{bench}:tat"+strconv.Itoa(g%2), hosts[g%2].c
		err := c.Do(ctx, c.B().Fcall().Function("rlfsbench_gcra").Numkeys(1).Key(key).Arg("1", "1000000000").Build()).Error()
		require.NoError(t, err)
	}
	var ticket atomic.Uint64
	for _, tc := range []struct {
		spec string
		done int
	}{{"concurrency=5000", 0}, {"1000000/1h,concurrency=0", 2000}} {
		name := fmt.Sprintf("f%d", ticket.Add(1))
		require.NoError(t, hosts[0].CreateMeter(ctx, name, mustSpecT(t, tc.spec), meter.DefaultAttr()))
		for range tc.done {
			cycle(t, hosts[0], name, ticket.Add(1))
		}
		var ratios []float64
		var grants, decisions []time.Duration
		for range rounds {
			g := costOfParallel(t, srv.Addr(), n, clients, gcra)
			p := costOfParallel(t, srv.Addr(), n, clients, func(g int) { cycle(t, hosts[g%2], name, ticket.Add(1)) })
			ratios, grants, decisions = append(ratios, float64(p)/float64(g)), append(grants, p), append(decisions, g)
		}
		if os.Getenv("RLFS_COST_STATS") != "" {
			redistest.Command(srv.Addr(), "CONFIG", "RESETSTAT")
			costOfParallel(t, srv.Addr(), n, clients, func(g int) { cycle(t, hosts[g%2], name, ticket.Add(1)) })
			t.Logf("%s: INFO commandstats over %d grants:\n%s", tc.spec, n, redistest.Command(srv.Addr(), "INFO", "commandstats"))
		}
		slices.Sort(ratios)
		slices.Sort(grants)
		slices.Sort(decisions)
		t.Logf("%-18s %6d in the window, 2 hosts × 4 clients: %6.1fµs per grant (acquire+release), GCRA (8 clients) %5.1fµs: %.2f× (median of %d rounds of %d)",
			tc.spec, tc.done, float64(grants[rounds/2])/1e3, float64(decisions[rounds/2])/1e3, ratios[rounds/2], rounds, n)
	}
}
