package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/rlfs/rlfs/test/gcra"
)

// The GCRA baseline of the fleet step (issue 17): what a limiter that
// polls, has no FIFO and counts from the grant costs the same Redis. One
// GCRA decision is a function that reads the clock and GETs and SETs a TAT
// key (the rule redis-cell and redis_rate run in Lua: test/gcra), bare
// (the verdict's yardstick) or shaped as redis_rate serves it (its
// arguments, a key that expires, four values back); it is loaded as its
// own library. fleetProcs goroutines per host, on one client
// per host (rueidis, as the daemons', without its client-side cache), loop
// it for the duration of a throughput round, each host on its own key, as
// each daemon's processes share their host's connection.

// gcraRound runs the GCRA baseline (function fn of test/gcra, with args)
// on addr for d and returns the decisions per second, Redis's CPU per
// decision (µs) and its socket reads per decision.
func gcraRound(addr string, hosts, procs int, d time.Duration, fn string, args []string) (rate, cpuUs, reads float64, err error) {
	clients := make([]rueidis.Client, hosts)
	for i := range clients {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, DisableRetry: true})
		if err != nil {
			return 0, 0, 0, fmt.Errorf("gcra: connect to %s: %w", addr, err)
		}
		defer c.Close()
		clients[i] = c
	}
	ctx := context.Background()
	c0 := clients[0]
	if err := c0.Do(ctx, c0.B().FunctionLoad().Replace().FunctionCode(gcra.Library).Build()).Error(); err != nil {
		return 0, 0, 0, fmt.Errorf("gcra: load the function: %w", err)
	}
	before, err := redisCounters(addr)
	if err != nil {
		return 0, 0, 0, err
	}
	var n atomic.Int64
	var first atomic.Value
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for h, c := range clients {
		key := "{bench}:tat:" + fn + strconv.Itoa(h)
		for range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					cmd := c.B().Fcall().Function(fn).Numkeys(1).Key(key).Arg(args...).Build()
					if err := c.Do(ctx, cmd).Error(); err != nil {
						first.CompareAndSwap(nil, err)
						return
					}
					n.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return 0, 0, 0, fmt.Errorf("gcra: %v", e)
	}
	after, err := redisCounters(addr)
	if err != nil {
		return 0, 0, 0, err
	}
	total := max(float64(n.Load()), 1)
	return total / d.Seconds(), (after.cpu - before.cpu) * 1e6 / total, (after.reads - before.reads) / total, nil
}

// counters are the server's CPU time so far, in seconds (INFO cpu:
// used_cpu_sys + used_cpu_user), and its socket reads (INFO stats:
// total_reads_processed; a read takes whatever the clients' pipelines
// hold, so reads per command say how deep they were).
type counters struct{ cpu, reads float64 }

func redisCounters(addr string) (counters, error) {
	var out counters
	c, err := dialRedis(addr)
	if err != nil {
		return out, err
	}
	defer c.close()
	text, err := c.do("INFO", "cpu", "stats")
	if err != nil {
		return out, err
	}
	for line := range strings.SplitSeq(text, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (k != "used_cpu_sys" && k != "used_cpu_user" && k != "total_reads_processed") {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return out, fmt.Errorf("INFO: %q: %w", line, err)
		}
		if k == "total_reads_processed" {
			out.reads = f
		} else {
			out.cpu += f
		}
	}
	return out, nil
}
