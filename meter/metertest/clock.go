// Package metertest has test doubles for the engine: a hand-driven Clock, an
// in-memory Store, and the conformance suite every Store must pass.
package metertest

import (
	"sort"
	"sync"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// Clock is a fake meter.Clock whose time moves only by Advance or Set.
// Timers due at or before the new time run, in order of due time, inside
// Advance on the caller's goroutine. Safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
	seq    int
}

type timer struct {
	at      time.Time
	seq     int
	f       func()
	stopped bool
	c       *Clock
}

// Epoch is the default start of a Clock: a fixed, round wall-clock instant.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// NewClock returns a Clock at Epoch.
func NewClock() *Clock { return &Clock{now: Epoch} }

// Now returns the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f at Now()+d.
func (c *Clock) AfterFunc(d time.Duration, f func()) meter.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &timer{at: c.now.Add(d), seq: c.seq, f: f, c: c}
	c.timers = append(c.timers, t)
	return t
}

func (t *timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves time forward by d, running due timers at their own instants.
func (c *Clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves time to at (forward), running due timers at their own instants.
// Setting it backwards moves the clock without running anything.
func (c *Clock) Set(at time.Time) {
	for {
		c.mu.Lock()
		sort.SliceStable(c.timers, func(i, j int) bool {
			if !c.timers[i].at.Equal(c.timers[j].at) {
				return c.timers[i].at.Before(c.timers[j].at)
			}
			return c.timers[i].seq < c.timers[j].seq
		})
		var next *timer
		for len(c.timers) > 0 && c.timers[0].stopped {
			c.timers = c.timers[1:]
		}
		if len(c.timers) > 0 && !c.timers[0].at.After(at) {
			next = c.timers[0]
			c.timers = c.timers[1:]
			next.stopped = true
			if next.at.After(c.now) {
				c.now = next.at
			}
		}
		if next == nil {
			c.now = at
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		next.f()
	}
}

// NextTimer returns the due time of the earliest pending timer, if any.
func (c *Clock) NextTimer() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var best time.Time
	ok := false
	for _, t := range c.timers {
		if !t.stopped && (!ok || t.at.Before(best)) {
			best, ok = t.at, true
		}
	}
	return best, ok
}
