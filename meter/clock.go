package meter

import (
	"sync/atomic"
	"syscall"
	"time"
)

// Clock tells the time and runs functions later. The engine reads time only
// through a Clock, so tests can drive it by hand (see metertest.Clock).
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call; it reports whether it did.
	Stop() bool
}

// SystemClock is the real clock: time.Now, which carries a monotonic reading,
// and timers precise to tens of microseconds.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// preciseWindow is how early a SystemClock timer wakes through the Go
// runtime, whose timers fire up to a millisecond late while the process is
// idle; it sleeps the rest with nanosleep(2), which is precise.
const preciseWindow = 2 * time.Millisecond

// AfterFunc calls f in its own goroutine after d.
func (SystemClock) AfterFunc(d time.Duration, f func()) Timer {
	t := &sysTimer{}
	at := time.Now().Add(d)
	t.t = time.AfterFunc(d-preciseWindow, func() {
		if rest := time.Until(at); rest > 0 {
			ts := syscall.NsecToTimespec(int64(rest))
			for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
			}
		}
		if t.state.CompareAndSwap(timerPending, timerFired) {
			f()
		}
	})
	return t
}

const (
	timerPending int32 = iota
	timerStopped
	timerFired
)

type sysTimer struct {
	t     *time.Timer
	state atomic.Int32
}

func (t *sysTimer) Stop() bool {
	t.t.Stop()
	return t.state.CompareAndSwap(timerPending, timerStopped)
}
