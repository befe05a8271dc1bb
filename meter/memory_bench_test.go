package meter_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

// BenchmarkMemory reports what a waiter and a meter cost in memory, over
// sizes: the heap each adds, and for a waiter the stack of the goroutine
// it blocks (an open of acquire blocks one; see Meter.enqueueAside).
// Bytes per item are the metrics (B/waiter, stack-B/waiter, B/meter); ns/op
// is the time to set up and tear down one sample, not a cost users meet.
func BenchmarkMemory(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("waiters=%d", n), func(b *testing.B) {
			var heap, stack float64
			for b.Loop() {
				h, s := waiterMemory(b, n)
				heap, stack = heap+h, stack+s
			}
			b.ReportMetric(heap/float64(b.N), "B/waiter")
			b.ReportMetric(stack/float64(b.N), "stack-B/waiter")
		})
	}
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("meters=%d", n), func(b *testing.B) {
			var heap float64
			for b.Loop() {
				heap += meterMemory(b, n)
			}
			b.ReportMetric(heap/float64(b.N), "B/meter")
		})
	}
}

// waiterMemory blocks n goroutines in Acquire behind one holder and
// returns the heap and the stack that each added.
func waiterMemory(b *testing.B, n int) (heap, stack float64) {
	r := newRig(b, "concurrency=1")
	_, err := r.m.Acquire(context.Background(), meter.Holder{PID: 1}, true)
	require.NoError(b, err)
	before := memNow()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, _ = r.m.Acquire(ctx, meter.Holder{PID: 2 + i}, false) })
	}
	for r.m.Status().WaitersN < n {
		time.Sleep(time.Millisecond)
	}
	after := memNow()
	cancel()
	wg.Wait()
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n), float64(after.StackInuse-before.StackInuse) / float64(n)
}

// meterMemory creates n meters of two windows and returns the heap each
// added (the in-memory store's copy of it included).
func meterMemory(b *testing.B, n int) float64 {
	reg, err := meter.OpenLocal(metertest.NewMemStore(), meter.Options{Clock: metertest.NewClock()})
	require.NoError(b, err)
	defer reg.Close()
	spec, err := meter.ParseSpec("1/s,75/h")
	require.NoError(b, err)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("m%06d", i)
	}
	before := memNow()
	for _, name := range names {
		_, err := reg.Create(name, spec, meter.DefaultAttr())
		require.NoError(b, err)
	}
	after := memNow()
	runtime.KeepAlive(reg)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// memNow collects the garbage and reads the memory statistics.
func memNow() runtime.MemStats {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m
}
