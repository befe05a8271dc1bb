package redis

import (
	"context"
	"fmt"
	"maps"
	"runtime"
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
)

// TestMemoryPerCall measures what one remembered call costs in Redis, per
// kind of call and over sizes (issue 17), through the Store without an
// engine:
//
//   - held: granted (nonblocking Enqueue) and not released, concurrency=0;
//   - window: released, still counted by 1000000/1h (concurrency=0);
//   - history: released on concurrency=0: no window counts it, so the
//     release retires it at once into the history groups (p), which are
//     capped at MAXPAST (rlfs.lua), so that the cost per call falls as 1/n;
//   - waiter: queued (blocking Enqueue) behind one holder, concurrency=1.
//
// Per call: MEMORY USAGE (SAMPLES 0) summed over every key of the meter's
// hash tag (SCAN MATCH), INFO's used_memory, and the Go heap of the Store
// (this host's books: its calls and tickets; a completed call stays in them
// while it counts against a window, until the renewal loop tidies them,
// every Lease/3, which the test does itself before measuring). Each
// against the same meter with one call (or one holder) already there. Run
// with:
//
//	RLFS_BENCH=1 go test -run 'TestMemoryPerCall' -v ./meter/redis/
func TestMemoryPerCall(t *testing.T) {
	benchOnly(t)
	srv := redistest.Start(t)
	s := bareStore(t, srv.URL(), "a", Options{Lease: time.Hour})
	ctx := context.Background()
	var ticket atomic.Uint64
	kinds := []struct{ name, spec string }{
		{"held", "concurrency=0"},
		{"window", "1000000/1h,concurrency=0"},
		{"history", "concurrency=0"},
		{"waiter", "concurrency=1"},
	}
	var table strings.Builder
	table.WriteString("| kind | calls | keys B/call | used_memory B/call | Store heap B/call | fill |\n|---|---:|---:|---:|---:|---:|\n")
	var detail strings.Builder
	for _, k := range kinds {
		for _, n := range []int{1000, 10000, 100000} {
			name := fmt.Sprintf("%s%d", k.name, n)
			require.NoError(t, s.CreateMeter(ctx, name, mustSpecT(t, k.spec), meter.DefaultAttr()))
			fill := func(i int) {
				id := ticket.Add(1)
				r := meter.Request{Ticket: id, Cost: 1, Nonblock: k.name != "waiter", Holder: meter.Holder{PID: 1000 + i, UID: 1000, GID: 100}}
				adm, err := s.Enqueue(ctx, name, r)
				require.NoError(t, err, "Enqueue %d", id)
				require.Equal(t, k.name != "waiter", adm.Granted, "Enqueue %d granted", id)
				if k.name == "window" || k.name == "history" {
					require.NoError(t, s.Release(ctx, name, adm.Call.ID))
				}
			}
			if k.name == "waiter" {
				adm, err := s.Enqueue(ctx, name, meter.Request{Ticket: ticket.Add(1), Cost: 1, Nonblock: true, Holder: meter.Holder{PID: 999}})
				require.NoError(t, err)
				require.True(t, adm.Granted)
			} else {
				fill(0)
			}
			s.host.tidy(s.host.storeNowEstimate())
			keys0, used0, heap0 := meterMemory(t, s, name), usedMemory(t, srv.Addr()), goHeap()
			start := time.Now()
			parallel(n, 4, fill)
			took := time.Since(start)
			s.host.tidy(s.host.storeNowEstimate())
			keys1, used1, heap1 := meterMemory(t, s, name), usedMemory(t, srv.Addr()), goHeap()
			per := func(a, b int64) float64 { return float64(b-a) / float64(n) }
			fmt.Fprintf(&table, "| %s | %d | %.1f | %.1f | %.1f | %.1fs |\n", k.name, n,
				per(sum(keys0), sum(keys1)), per(used0, used1), per(int64(heap0), int64(heap1)), took.Seconds())
			if n == 100000 {
				fmt.Fprintf(&detail, "%s (%d calls):", k.name, n)
				for _, key := range slices.Sorted(maps.Keys(keys1)) {
					fmt.Fprintf(&detail, " %s=%d", key[strings.IndexByte(key, '}')+2:], keys1[key])
				}
				detail.WriteString("\n")
			}
		}
	}
	t.Logf("bytes per remembered call in Redis %s:\n%s\nthe meters' keys (MEMORY USAGE, bytes) at 100,000:\n%s",
		infoField(srv.Addr(), "server", "redis_version"), table.String(), detail.String())
}

// parallel runs f(0..n-1) over k goroutines.
func parallel(n, k int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range k {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		})
	}
	wg.Wait()
}

// meterMemory returns MEMORY USAGE (every element counted) of each key of
// meter name, found by SCAN MATCH on its hash tag.
func meterMemory(t *testing.T, s *Store, name string) map[string]int64 {
	ctx := context.Background()
	c := s.c
	tag := strings.TrimSuffix(keysOf(s.opt.Prefix, name)[0], "m")
	out := map[string]int64{}
	cursor := uint64(0)
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(tag+"*").Count(1000).Build()).AsScanEntry()
		require.NoError(t, err, "SCAN")
		for _, key := range e.Elements {
			n, err := c.Do(ctx, c.B().MemoryUsage().Key(key).Samples(0).Build()).AsInt64()
			require.NoError(t, err, "MEMORY USAGE %s", key)
			out[key] = n
		}
		if cursor = e.Cursor; cursor == 0 {
			return out
		}
	}
}

func sum(m map[string]int64) (total int64) {
	for _, v := range m {
		total += v
	}
	return total
}

// usedMemory is INFO memory's used_memory.
func usedMemory(t *testing.T, addr string) int64 {
	n, err := strconv.ParseInt(infoField(addr, "memory", "used_memory"), 10, 64)
	require.NoError(t, err, "INFO memory used_memory")
	return n
}

// infoField is one field of a section of INFO ("" if it has none).
func infoField(addr, section, field string) string {
	for _, line := range strings.Split(redistest.Command(addr, "INFO", section), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// goHeap collects the garbage and returns this process's live heap.
func goHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
