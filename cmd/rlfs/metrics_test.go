package main

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

// histogramOf returns the histogram family name's series for meter m.
func histogramOf(t *testing.T, met *metrics, name, m string) *dto.Histogram {
	t.Helper()
	fams, err := met.pr.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "meter" && l.GetValue() == m {
					return s.GetHistogram()
				}
			}
		}
	}
	t.Fatalf("no %s{meter=%q} in the registry", name, m)
	return nil
}

// bucketCounts maps each upper bound of h to its cumulative count.
func bucketCounts(h *dto.Histogram) map[float64]uint64 {
	out := map[float64]uint64{}
	for _, b := range h.GetBucket() {
		out[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	return out
}

// TestHoldAndWaitBuckets: each call's hold lands in the bucket of its
// duration at every scale the issue names, from milliseconds to hours,
// and each wait in the wait histogram likewise: a hold of 200 ms is
// counted at le=0.25 and not at le=0.1; one of 3 hours at le=14400 and not
// at le=7200, not only in +Inf (as it was with a 3600 s top bound).
func TestHoldAndWaitBuckets(t *testing.T) {
	clk := metertest.NewClock()
	met := newMetrics()
	reg, err := meter.OpenLocal(metertest.NewMemStore(), meter.Options{Clock: clk, OnGrant: met.observe, OnRelease: met.observeHold})
	require.NoError(t, err)
	met.reg = reg
	spec, err := meter.ParseSpec("concurrency=1")
	require.NoError(t, err)
	m, err := reg.Create("job", spec, meter.DefaultAttr())
	require.NoError(t, err)

	holds := []time.Duration{3 * time.Millisecond, 200 * time.Millisecond, 40 * time.Second, 7 * time.Minute, 3 * time.Hour}
	for _, held := range holds {
		first, err := m.Enqueue(meter.Holder{}, false)
		require.NoError(t, err)
		second, err := m.Enqueue(meter.Holder{}, false) // waits exactly as long as first is held
		require.NoError(t, err)
		c, err := first.Result()
		require.NoError(t, err)
		clk.Advance(held)
		require.NoError(t, m.Release(c.ID))
		<-second.Done()
		c2, err := second.Result()
		require.NoError(t, err)
		require.NoError(t, m.Release(c2.ID)) // held for no time
	}

	want := map[float64]uint64{ // cumulative: the zero holds, then each of holds in its bucket
		0.0001: 5, 0.001: 5, 0.005: 6, 0.1: 6, 0.25: 7, 30: 7, 60: 8, 300: 8, 600: 9, 7200: 9, 14400: 10,
	}
	got := bucketCounts(histogramOf(t, met, "rlfs_hold_seconds", "job"))
	for le, n := range want {
		require.Equal(t, n, got[le], "rlfs_hold_seconds_bucket{meter=\"job\",le=\"%g\"}", le)
	}
	require.Len(t, got, len(durationBuckets))
	h := histogramOf(t, met, "rlfs_hold_seconds", "job")
	require.Equal(t, uint64(10), h.GetSampleCount())
	require.InDelta(t, (3*time.Hour + 7*time.Minute + 40*time.Second + 203*time.Millisecond).Seconds(), h.GetSampleSum(), 1e-6)

	// The waits: five instant grants, then one behind each hold.
	want = map[float64]uint64{0.0001: 5, 0.001: 5, 0.005: 6, 0.1: 6, 0.25: 7, 30: 7, 60: 8, 300: 8, 600: 9, 7200: 9, 14400: 10}
	got = bucketCounts(histogramOf(t, met, "rlfs_wait_seconds", "job"))
	for le, n := range want {
		require.Equal(t, n, got[le], "rlfs_wait_seconds_bucket{meter=\"job\",le=\"%g\"}", le)
	}
}
