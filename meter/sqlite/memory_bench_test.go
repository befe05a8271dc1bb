package sqlite_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
	"github.com/rlfs/rlfs/meter/sqlite"
)

// BenchmarkMemoryCalls reports what one remembered call costs a daemon on
// SQLite, per kind of call and over sizes (issue 17; the engine's share is
// meter's BenchmarkMemoryCalls):
//
//   - disk-B/call: the database file after the store's Close (its queue
//     flushed, the WAL checkpointed and truncated), against the same meter
//     with one call, per call;
//   - heap-B/call: the Go heap the daemon (engine and store) keeps per
//     call, measured once the store has flushed its queue (SQLite's own
//     page cache is allocated outside the Go heap and bounded by
//     cache_size, 2 MB by default).
//
// The kinds are meter's: held (granted, not released, concurrency=0),
// window (released, still counted by 1000000/1h), history (released on
// concurrency=0, retired at once into the history groups, which are capped
// at rule.MaxPast), waiter (queued on concurrency=1 behind one holder;
// waiters are never written to SQLite). Run with:
//
//	go test -run '^$' -bench 'MemoryCalls' -benchtime 1x -count 3 ./meter/sqlite/
func BenchmarkMemoryCalls(b *testing.B) {
	kinds := []struct{ name, spec string }{
		{"held", "concurrency=0"},
		{"window", "1000000/1h,concurrency=0"},
		{"history", "concurrency=0"},
		{"waiter", "concurrency=1"},
	}
	for _, k := range kinds {
		for _, n := range []int{1000, 10000, 100000} {
			b.Run(fmt.Sprintf("%s/n=%d", k.name, n), func(b *testing.B) {
				var disk, heap float64
				for b.Loop() {
					base, _ := fillSQLite(b, k.name, k.spec, 0)
					full, h := fillSQLite(b, k.name, k.spec, n)
					disk += float64(full-base) / float64(n)
					heap += h
				}
				b.ReportMetric(disk/float64(b.N), "disk-B/call")
				b.ReportMetric(heap/float64(b.N), "heap-B/call")
			})
		}
	}
}

// fillSQLite opens a fresh database with one meter of spec, gives it one
// call of kind and then n more, and returns the database's size once the
// store is closed and the heap each of the n calls added.
func fillSQLite(b *testing.B, kind, spec string, n int) (size int64, heap float64) {
	path := filepath.Join(b.TempDir(), "meters.db")
	s, err := sqlite.Open(path, sqlite.Options{})
	require.NoError(b, err)
	clk := metertest.NewClock()
	reg, err := meter.OpenLocal(s, meter.Options{Clock: clk})
	require.NoError(b, err)
	sp, err := meter.ParseSpec(spec)
	require.NoError(b, err)
	m, err := reg.Create("m", sp, meter.DefaultAttr())
	require.NoError(b, err)
	ctx := context.Background()
	acquire := func(pid int) meter.Call {
		clk.Advance(time.Millisecond)
		c, err := m.Acquire(ctx, meter.Holder{PID: pid, UID: 1000, GID: 100}, true)
		require.NoError(b, err)
		return c
	}
	fill := func(n int) {
		for i := range n {
			switch kind {
			case "held":
				acquire(1000 + i)
			case "window", "history":
				require.NoError(b, m.Release(acquire(1000+i).ID))
			case "waiter":
				clk.Advance(time.Millisecond)
				_, err := m.Enqueue(meter.Holder{PID: 1000 + i, UID: 1000, GID: 100}, false)
				require.NoError(b, err)
			}
		}
	}
	if kind == "waiter" {
		acquire(999)
	} else {
		fill(1)
	}
	settle(b, s)
	before := heapNow()
	fill(n)
	settle(b, s)
	after := heapNow()
	runtime.KeepAlive(reg)
	reg.Close()
	require.NoError(b, s.Close())
	st, err := os.Stat(path)
	require.NoError(b, err)
	if n > 0 {
		heap = (float64(after) - float64(before)) / float64(n)
	}
	return st.Size(), heap
}

// settle waits for the store's background flush to move its queue into
// SQLite (every 50ms, sooner when it is long).
func settle(b *testing.B, s *sqlite.Store) {
	time.Sleep(200 * time.Millisecond)
	require.Zero(b, s.FlushErrors())
}

// heapNow collects the garbage and returns the live heap.
func heapNow() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
