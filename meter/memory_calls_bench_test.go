package meter_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

// BenchmarkMemoryCalls reports what one remembered call costs the engine
// in the heap, per kind of call and over sizes (issue 17). store=none is
// the engine alone (the Ledger's calls and history, the Meter's held calls
// and tickets) on a store that keeps nothing per call; store=mem adds the
// in-memory store's copy, as a store that cached its calls would (see
// meter/sqlite's memory_bench_test.go for the SQLite store). The kinds:
//
//   - held: granted and not released, on concurrency=0;
//   - window: released and still counted by a window of an hour;
//   - history: released on concurrency=0 (no window: retired at once) and
//     kept as history groups, which are capped (rule.MaxPast), so that the
//     cost per call falls as 1/n;
//   - waiter: queued behind one holder on concurrency=1, as Enqueue leaves
//     it (the ticket; a blocked open's goroutine adds its stack, which
//     BenchmarkMemory reports as stack-B/waiter).
//
// Holders are as an open of acquire records them (PID, UID, GID; the
// command line is read only when holders/ is listed). The clock moves 1ms
// per call. Run with:
//
//	go test -run '^$' -bench 'MemoryCalls' -benchtime 1x -count 3 ./meter/
func BenchmarkMemoryCalls(b *testing.B) {
	kinds := []struct {
		name, spec string
		fill       func(b *testing.B, clk *metertest.Clock, m *meter.Meter, n int)
	}{
		{"held", "concurrency=0", fillHeld},
		{"window", "1000000/1h,concurrency=0", fillDone},
		{"history", "concurrency=0", fillDone},
		{"waiter", "concurrency=1", fillWaiters},
	}
	stores := []struct {
		name string
		open func() meter.LocalStore
	}{
		{"none", func() meter.LocalStore { return forgetful{metertest.NewMemStore()} }},
		{"mem", func() meter.LocalStore { return metertest.NewMemStore() }},
	}
	for _, st := range stores {
		for _, k := range kinds {
			for _, n := range []int{1000, 10000, 100000} {
				b.Run(fmt.Sprintf("store=%s/%s/n=%d", st.name, k.name, n), func(b *testing.B) {
					var heap float64
					for b.Loop() {
						heap += callMemory(b, st.open(), k.spec, n, k.fill)
					}
					b.ReportMetric(heap/float64(b.N), "B/call")
				})
			}
		}
	}
}

// forgetful is a store that keeps meters but no calls: what the engine
// alone costs. (MemStore.Complete also searches the calls from the start,
// so that store=mem/window takes seconds at n=100000; the engine does not.)
type forgetful struct{ *metertest.MemStore }

func (forgetful) Grant(string, meter.Call, time.Time, time.Time) error { return nil }
func (forgetful) Complete(string, meter.Call) error                    { return nil }
func (forgetful) Retire(string, time.Time, bool, []meter.Past) error   { return nil }
func (forgetful) Settle(string, uint64, int64, time.Time) error        { return nil }
func (forgetful) Revoke(string, uint64) error                          { return nil }

// callMemory opens a registry with one meter of spec, fills it with n
// calls on store and returns the heap each added.
func callMemory(b *testing.B, store meter.LocalStore, spec string, n int, fill func(*testing.B, *metertest.Clock, *meter.Meter, int)) float64 {
	clk := metertest.NewClock()
	reg, err := meter.OpenLocal(store, meter.Options{Clock: clk})
	require.NoError(b, err)
	defer reg.Close()
	sp, err := meter.ParseSpec(spec)
	require.NoError(b, err)
	m, err := reg.Create("m", sp, meter.DefaultAttr())
	require.NoError(b, err)
	// One call first, so that what a meter allocates on its first call
	// (maps, the first slices) is not counted per call.
	fill(b, clk, m, 1)
	before := memNow()
	fill(b, clk, m, n)
	after := memNow()
	runtime.KeepAlive(reg)
	return (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(n)
}

// holderOf is the holder an open of acquire records for thread pid.
func holderOf(pid int) meter.Holder { return meter.Holder{PID: pid, UID: 1000, GID: 100} }

// fillHeld acquires n calls and keeps them.
func fillHeld(b *testing.B, clk *metertest.Clock, m *meter.Meter, n int) {
	for i := range n {
		clk.Advance(time.Millisecond)
		_, err := m.Acquire(context.Background(), holderOf(1000+i), true)
		require.NoError(b, err)
	}
}

// fillDone acquires and releases n calls, one at a time.
func fillDone(b *testing.B, clk *metertest.Clock, m *meter.Meter, n int) {
	for i := range n {
		clk.Advance(time.Millisecond)
		c, err := m.Acquire(context.Background(), holderOf(1000+i), true)
		require.NoError(b, err)
		require.NoError(b, m.Release(c.ID))
	}
}

// fillWaiters makes sure one call is held (the first fill's) and queues n
// tickets behind it; the tickets stay referenced by the meter.
func fillWaiters(b *testing.B, clk *metertest.Clock, m *meter.Meter, n int) {
	if m.Status().HoldersN == 0 {
		_, err := m.Acquire(context.Background(), holderOf(999), true)
		require.NoError(b, err)
		n--
	}
	for i := range n {
		clk.Advance(time.Millisecond)
		t, err := m.Enqueue(holderOf(1000+i), false)
		require.NoError(b, err)
		select {
		case <-t.Done():
			b.Fatalf("waiter %d: not queued", i)
		default:
		}
	}
}
