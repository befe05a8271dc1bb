package meter_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

func graceMeter(t *testing.T, spec string) (*meter.Meter, *metertest.Clock) {
	t.Helper()
	clk := metertest.NewClock()
	reg, err := meter.OpenLocal(metertest.NewMemStore(), meter.Options{Clock: clk, RetryGrace: 20 * time.Millisecond})
	require.NoError(t, err)
	sp, err := meter.ParseSpec(spec)
	require.NoError(t, err)
	m, err := reg.Create("m", sp, meter.DefaultAttr())
	require.NoError(t, err)
	return m, clk
}

func done(tk *meter.Ticket) bool {
	select {
	case <-tk.Done():
		return true
	default:
		return false
	}
}

// TestRetryKeepsPlace pins the bug where a Go client lost its place: the Go
// runtime interrupts a blocked open (EINTR) and os.Open retries at once; the
// retry must take back the interrupted open's place, not go to the back.
func TestRetryKeepsPlace(t *testing.T) {
	m, clk := graceMeter(t, "concurrency=1")
	holder, err := m.Enqueue(meter.Holder{PID: 1}, false)
	require.NoError(t, err)
	hc, _ := holder.Result()
	goA, err := m.Enqueue(meter.Holder{PID: 10}, false)
	require.NoError(t, err)
	b, err := m.Enqueue(meter.Holder{PID: 20}, false)
	require.NoError(t, err)

	_, err = m.Cancel(goA) // the runtime's signal
	require.ErrorIs(t, err, meter.ErrInterrupted)
	require.Len(t, m.Snapshot().Waiters, 1, "waiters/ does not list a kept place")
	clk.Advance(time.Millisecond)
	again, err := m.Enqueue(meter.Holder{PID: 10}, false) // os.Open retries
	require.NoError(t, err)
	require.Equal(t, goA.Seq, again.Seq, "the retry takes back the place")
	require.Equal(t, goA.Since, again.Since, "and the arrival time")
	ws := m.Snapshot().Waiters
	require.Equal(t, []uint64{goA.Seq, b.Seq}, []uint64{ws[0].Seq, ws[1].Seq})

	require.NoError(t, m.Release(hc.ID))
	require.True(t, done(again), "the retried open is granted first")
	require.False(t, done(b))
	require.Equal(t, uint64(0), m.Snapshot().Stats.Interrupts, "a resumed wait is no interruption")
}

// TestInterruptedPlaceExpires: nobody comes back within the grace; the place
// is dropped, the interruption counted, and while it was at the head the
// queue waited for it, 20 ms at most.
func TestInterruptedPlaceExpires(t *testing.T) {
	m, clk := graceMeter(t, "concurrency=1")
	holder, _ := m.Enqueue(meter.Holder{PID: 1}, false)
	hc, _ := holder.Result()
	a, _ := m.Enqueue(meter.Holder{PID: 10}, false)
	b, _ := m.Enqueue(meter.Holder{PID: 20}, false)
	_, err := m.Cancel(a)
	require.ErrorIs(t, err, meter.ErrInterrupted)
	require.NoError(t, m.Release(hc.ID))
	require.False(t, done(b), "the kept place at the head holds the queue")
	require.Equal(t, 0, m.Snapshot().HoldersN)

	clk.Advance(19 * time.Millisecond)
	require.False(t, done(b))
	clk.Advance(time.Millisecond)
	require.True(t, done(b), "20 ms later the place is dropped and the next waiter granted")
	s := m.Snapshot()
	require.Equal(t, uint64(1), s.Stats.Interrupts)
	require.Equal(t, uint64(2), s.Grants, "the interrupted open counted nothing")

	// A different thread does not take over someone else's place.
	c, _ := m.Enqueue(meter.Holder{PID: 30}, false)
	_, _ = m.Cancel(c)
	d, _ := m.Enqueue(meter.Holder{PID: 31}, false)
	require.NotEqual(t, c.Seq, d.Seq)
}

// TestKeptPlacesCountAgainstMaxWaitersForTheGrace: a kept place stays in
// the decider's queue until the grace ends (it is the host's notion), so it
// counts against max_waiters for RetryGrace at most; then it is gone.
func TestKeptPlacesCountAgainstMaxWaitersForTheGrace(t *testing.T) {
	m, clk := graceMeter(t, "concurrency=1,max_waiters=1")
	_, _ = m.Enqueue(meter.Holder{PID: 1}, false)
	a, err := m.Enqueue(meter.Holder{PID: 10}, false)
	require.NoError(t, err)
	_, _ = m.Cancel(a)
	require.Equal(t, 0, m.Status().WaitersN, "a kept place is not shown as a waiter")
	_, err = m.Enqueue(meter.Holder{PID: 20}, false)
	require.ErrorIs(t, err, meter.ErrTooManyWaiters, "within the grace")
	clk.Advance(20 * time.Millisecond)
	_, err = m.Enqueue(meter.Holder{PID: 20}, false)
	require.NoError(t, err, "once the kept place is dropped")
	_, err = m.Enqueue(meter.Holder{PID: 30}, false)
	require.ErrorIs(t, err, meter.ErrTooManyWaiters)
}

// TestRetryOfAnotherCostIsANewOpen pins a bug: an interrupted open of
// acquire@50 kept its place for a retry, and an open of acquire@10 by the
// same thread within the grace took that place with the cost 50, so the
// call it was granted counted 50 units instead of the 10 it asked for. Only
// a retry of the same cost takes the place back; another cost is a new
// arrival.
func TestRetryOfAnotherCostIsANewOpen(t *testing.T) {
	m, _ := graceMeter(t, "units:100/1h,concurrency=0")
	holder, err := m.EnqueueCost(meter.Holder{PID: 1}, 60, false)
	require.NoError(t, err)
	require.True(t, done(holder))
	a, err := m.EnqueueCost(meter.Holder{PID: 10}, 50, false)
	require.NoError(t, err)
	_, err = m.Cancel(a)
	require.ErrorIs(t, err, meter.ErrInterrupted)

	b, err := m.EnqueueCost(meter.Holder{PID: 10}, 10, false)
	require.NoError(t, err)
	require.NotEqual(t, a.Seq, b.Seq, "another cost does not take the interrupted open's place")
	require.Equal(t, int64(10), b.Cost)

	same, err := m.EnqueueCost(meter.Holder{PID: 20}, 50, false)
	require.NoError(t, err)
	_, _ = m.Cancel(same)
	again, err := m.EnqueueCost(meter.Holder{PID: 20}, 50, false)
	require.NoError(t, err)
	require.Equal(t, same.Seq, again.Seq, "a retry of the same cost takes its place back")
}
