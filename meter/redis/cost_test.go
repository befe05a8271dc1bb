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
// per cycle, on meters holding more and more calls (each client's
// releases run as the kernel's RELEASE does, while it opens again: see
// client), and of one GCRA
// decision in the same server through the same client: the bare rule
// (test/gcra: TIME, GET and SET of a TAT key), by which the ratio is
// judged, and the rule as redis_rate serves it (its arguments, a key that
// expires, four values back), which says what a real peer costs. TestCostSteps measures every kind of
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

// client plays one process's open+close cycles as the kernel serves them:
// close(2) returns before the daemon has handled the RELEASE, so the
// process opens again while its release may still wait for an open to
// carry it (releases.go). A cycle's release runs in the background; a
// cycle waits, after its acquire, for the release of the cycle two before
// it (a process whose releases keep up: the next open may have reached the
// daemon before the last RELEASE), and wait ends those still under way.
type client struct{ pending []chan error }

func (c *client) cycle(t testing.TB, s *Store, name string, ticket uint64) {
	ctx := context.Background()
	adm, err := s.Enqueue(ctx, name, meter.Request{Ticket: ticket, Cost: 1, Nonblock: true, Holder: meter.Holder{PID: 1}})
	require.NoError(t, err, "Enqueue %d", ticket)
	require.True(t, adm.Granted, "Enqueue %d granted", ticket)
	if len(c.pending) == 2 {
		require.NoError(t, <-c.pending[0], "Release")
		c.pending = c.pending[1:]
	}
	ch := make(chan error, 1)
	go func() { ch <- s.Release(ctx, name, adm.Call.ID) }()
	c.pending = append(c.pending, ch)
}

func (c *client) wait(t testing.TB) {
	for _, ch := range c.pending {
		require.NoError(t, <-ch, "Release")
	}
	c.pending = nil
}

func TestCostPerGrant(t *testing.T) {
	benchOnly(t)
	srv := redistest.Start(t)
	s := bareStore(t, srv.URL(), "a", Options{Lease: time.Hour})
	ctx := context.Background()
	const n, rounds = 3000, 7
	c := s.c
	require.NoError(t, c.Do(ctx, c.B().FunctionLoad().Replace().FunctionCode(gcraLibrary).Build()).Error())
	decide := func(fn string, args []string) func(int) {
		return func(int) {
			err := c.Do(ctx, c.B().Fcall().Function(fn).Numkeys(1).Key("{bench}:tat:"+fn).Arg(args...).Build()).Error()
			require.NoError(t, err)
		}
	}
	bare, rate := decide(gcra.Function, gcra.Args), decide(gcra.RateFunction, gcra.RateArgs)
	ticket := uint64(0)
	next := func() uint64 { ticket++; return ticket }
	for _, tc := range []struct {
		spec       string
		held, done int
	}{
		{"concurrency=5000", 0, 0}, {"concurrency=5000", 1000, 0},
		{"1000000/1h,concurrency=0", 0, 0}, {"1000000/1h,concurrency=0", 0, 2000}, {"1000000/1h,concurrency=0", 0, 100000},
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
		var y yardsticks
		for range rounds {
			g := costOf(t, srv.Addr(), n, 1, bare)
			r := costOf(t, srv.Addr(), n, 1, rate)
			var cl client
			p := costOf(t, srv.Addr(), n, 1, func(i int) {
				cl.cycle(t, s, name, next())
				if i%n == n-1 {
					cl.wait(t) // within the round
				}
			})
			y.add(p, g, r)
		}
		t.Logf("%-26s %5d held %7d in the window: %s (median of %d rounds of %d)", tc.spec, tc.held, tc.done, y, rounds, n)
	}
}

// yardsticks gathers rounds of a grant's cost against the two GCRA
// decisions (test/gcra), each round's ratios taken within the round.
type yardsticks struct {
	grant, bare, rate, byBare, byRate []float64 // µs; ratios
}

func (y *yardsticks) add(grant, bare, rate time.Duration) {
	y.grant, y.bare, y.rate = append(y.grant, inUs(grant)), append(y.bare, inUs(bare)), append(y.rate, inUs(rate))
	y.byBare, y.byRate = append(y.byBare, inUs(grant)/inUs(bare)), append(y.byRate, inUs(grant)/inUs(rate))
}

func inUs(d time.Duration) float64 { return float64(d) / 1e3 }

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	return s[len(s)/2]
}

// String is the medians: the grant's cost, then each decision's and the
// grant's ratio to it.
func (y yardsticks) String() string {
	return fmt.Sprintf("%6.1fµs per grant (acquire+release); GCRA %5.1fµs: %.2f×; GCRA as redis_rate serves it %5.1fµs: %.2f×",
		median(y.grant), median(y.bare), median(y.byBare), median(y.rate), median(y.byRate))
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

// cycles is the body of costOfParallel's goroutine g: client g cycles on
// host g%2, and its per-th cycle waits for its last release (the round's
// end).
func cycles(t testing.TB, hosts []*Store, name string, ticket *atomic.Uint64, k, per int) func(g int) {
	cls := make([]client, k)
	done := make([]int, k)
	return func(g int) {
		cls[g].cycle(t, hosts[g%2], name, ticket.Add(1))
		if done[g]++; done[g]%per == 0 {
			cls[g].wait(t)
		}
	}
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
	decide := func(fn string, args []string) func(int) {
		return func(g int) {
			key, c := "{bench}:tat:"+fn+strconv.Itoa(g%2), hosts[g%2].c
			err := c.Do(ctx, c.B().Fcall().Function(fn).Numkeys(1).Key(key).Arg(args...).Build()).Error()
			require.NoError(t, err)
		}
	}
	bare, rate := decide(gcra.Function, gcra.Args), decide(gcra.RateFunction, gcra.RateArgs)
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
		var y yardsticks
		for range rounds {
			g := costOfParallel(t, srv.Addr(), n, clients, bare)
			r := costOfParallel(t, srv.Addr(), n, clients, rate)
			p := costOfParallel(t, srv.Addr(), n, clients, cycles(t, hosts, name, &ticket, clients, n/clients))
			y.add(p, g, r)
		}
		if os.Getenv("RLFS_COST_STATS") != "" {
			redistest.Command(srv.Addr(), "CONFIG", "RESETSTAT")
			costOfParallel(t, srv.Addr(), n, clients, cycles(t, hosts, name, &ticket, clients, n/clients))
			t.Logf("%s: INFO commandstats over %d grants:\n%s", tc.spec, n, redistest.Command(srv.Addr(), "INFO", "commandstats"))
		}
		t.Logf("%-18s %6d in the window, 2 hosts × 4 clients (GCRA: 8 clients): %s (median of %d rounds of %d)", tc.spec, tc.done, y, rounds, n)
	}
}
