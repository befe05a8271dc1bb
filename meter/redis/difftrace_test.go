package redis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// TestDifferentialTrace drives two registries with the same random trace:
// one on metertest.MemStore, where meter's Go rule decides, and one on this
// store, where rlfs.lua decides. Each has its own fake clock, set to the
// same instants; the store's lease is long, so that the clock's jumps never
// lapse it. Operations: nonblocking and blocking acquires, releases,
// revocations, interrupted waits, time moving by random microseconds, busy
// spells of short calls, and limits writes that widen, narrow or replace
// the spec. Every sixth trace is long with a long history: calls retire
// into it, a later widening counts them (TestDifferentialTraceScripts'
// CompactedHistoryWidened compacts it for sure). After every step,
// once the Redis side has settled (its grants arrive as messages), both
// must agree on every waiter's outcome (granted which call at which
// instant, or still waiting), on the instant the engine wakes at next, and
// on the status: holders, expired holds, waiters, window usage, next grant,
// and the retired history (how many calls, since when).
func TestDifferentialTrace(t *testing.T) {
	srv := redistest.Start(t)
	traces, steps, compacted, groups := 0, 0, 0, 0
	var goBugs []string
	for _, i := range diffRange(8, 3) {
		tr := newRandomTrace(t, srv, i)
		tr.run()
		tr.close()
		if tr.goBug != "" {
			goBugs = append(goBugs, tr.goBug)
		}
		traces++
		steps += tr.length
		groups = max(groups, tr.groups)
		if tr.compacted {
			compacted++
		}
	}
	t.Logf("seed %d: %d traces, %d steps agree; %d compacted their history (at most %d groups)", *diffSeed, traces, steps, compacted, groups)
	for _, b := range goBugs {
		t.Logf("stopped early: %s", b)
	}
}

// trace is one trace applied to both registries.
type trace struct {
	t     *testing.T
	name  string // how to replay it, for failures
	r     *rand.Rand
	scale int64 // typical duration, µs
	hold  bool  // specs may have max_hold
	units bool  // specs have units items; calls are weighted and settled
	// churnW is how often busy spells come (percent of the operations).
	churnW int
	length int
	spec   meter.Spec

	goClk, rdClk *metertest.Clock
	mem          *metertest.MemStore
	goReg, rdReg *meter.Registry
	rd           *Store
	goM, rdM     *meter.Meter

	waiters []*traceWaiter // blocking acquires not decided alike yet
	held    []uint64       // calls granted and not released nor revoked
	log     []string
	step    int
	// The Go side's history, from its MemStore: the most groups it had,
	// and whether it was compacted.
	groups    int
	compacted bool
	// goBug, when set, says the Go side broke an invariant of its own (a
	// known bug of meter, named there): the trace stops.
	goBug string
	// jump: advance moves the Go side's clock in one jump (see advance).
	jump bool
}

// traceWaiter is one blocking acquire, on both sides: a ticket of the Go
// engine, and an Acquire running in its own goroutine on the Redis side.
type traceWaiter struct {
	name   string
	goT    *meter.Ticket
	cancel context.CancelFunc
	done   chan struct{}
	call   meter.Call
	err    error
	left   bool // interrupted by the trace
}

// openTrace creates meter m with spec on both sides; the Redis side's keys
// start with prefix. history is both sides' history horizon.
func openTrace(t *testing.T, srv *redistest.Server, name, prefix string, spec meter.Spec, history time.Duration) *trace {
	tr := &trace{t: t, name: name, spec: spec, goClk: metertest.NewClock(), rdClk: metertest.NewClock(), mem: metertest.NewMemStore()}
	var err error
	tr.goReg, err = meter.OpenLocal(tr.mem, meter.Options{Clock: tr.goClk, History: history})
	require.NoError(t, err, "meter.Open on MemStore")
	tr.rd, err = Open(Options{URL: srv.URL(), Host: "a", Lease: 1000 * time.Hour, Prefix: prefix, History: history, clock: tr.rdClk})
	require.NoError(t, err, "Open")
	tr.rdReg, err = engineOpen(tr.rd, meter.Options{Clock: tr.rdClk, History: history})
	require.NoError(t, err, "meter.Open on the Redis store")
	tr.goM, err = tr.goReg.Create("m", spec, meter.DefaultAttr())
	require.NoError(t, err, "Create on MemStore")
	// The Redis side's registry learns of the meter from the store: from
	// the event of its creation, or from the reconciliation that follows
	// the store's subscription and comes before any event. That
	// reconciliation renews, on its own goroutine, the meters where the
	// host has calls: it must be over before the trace moves the clock, or
	// its reply, read at an older fake instant, may deliver a grant at
	// that instant.
	require.NoError(t, tr.rd.CreateMeter(context.Background(), "m", spec, meter.DefaultAttr()), "CreateMeter on Redis")
	deadline := time.Now().Add(5 * time.Second)
	for tr.rdM = tr.rdReg.Get("m"); tr.rdM == nil; tr.rdM = tr.rdReg.Get("m") {
		require.False(t, time.Now().After(deadline), "the registry on Redis does not see meter m after 5s")
		time.Sleep(time.Millisecond)
	}
	tr.logf("create %s (history %v)", spec, history)
	return tr
}

func (tr *trace) close() {
	tr.goReg.Close()
	tr.rdReg.Close()
	require.NoError(tr.t, tr.rd.Close())
	for _, w := range tr.waiters {
		w.cancel()
		<-w.done
	}
}

func (tr *trace) logf(format string, args ...any) {
	tr.log = append(tr.log, fmt.Sprintf("%3d +%-12v ", tr.step, tr.goClk.Now().Sub(metertest.Epoch))+fmt.Sprintf(format, args...))
}

// fail reports a disagreement with the trace so far and how to replay it.
func (tr *trace) fail(format string, args ...any) {
	tr.t.Helper()
	from := max(0, len(tr.log)-40)
	tr.t.Fatalf("%s, step %d at +%v: %s\nthe trace (last %d steps):\n%s",
		tr.name, tr.step, tr.goClk.Now().Sub(metertest.Epoch), fmt.Sprintf(format, args...), len(tr.log)-from, strings.Join(tr.log[from:], "\n"))
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// outcome describes an acquire's result for comparison.
func outcome(c meter.Call, err error) string {
	switch {
	case err == nil:
		return fmt.Sprintf("call %d granted at +%v", c.ID, c.GrantedAt.Sub(metertest.Epoch))
	case errors.Is(err, meter.ErrWouldBlock):
		return "refused"
	case errors.Is(err, meter.ErrInterrupted):
		return "interrupted"
	case errors.Is(err, meter.ErrTooBig):
		return "too big"
	}
	return "error " + err.Error()
}

// picture is what both sides must agree on after a step.
type picture struct {
	Waiters  []string // each blocking acquire not decided before: waiting, or its outcome
	Wake     string   // the next instant the engine wakes at (Go's timer, Redis's wake timer)
	HoldersN int
	ExpiredN int
	WaitersN int
	Usage    []int
	Buckets  []meter.BucketUsage
	Next     string
	Retired  string // how many calls the history holds, since when
	Pause    string // until when, by whom, from where ("none": not paused)
}

func (tr *trace) goPicture() picture {
	p := picture{Wake: clockWake(tr.goClk)}
	for _, w := range tr.waiters {
		if !isDone(w.goT.Done()) {
			p.Waiters = append(p.Waiters, w.name+" waiting")
			continue
		}
		c, err := w.goT.Result()
		p.Waiters = append(p.Waiters, w.name+" "+outcome(c, err))
	}
	tr.status(&p, tr.goM.Status())
	return p
}

// rdPicture is the Redis side's picture; without status, only what this
// host knows (its waiters' outcomes and its wake timer), which the store's
// messages change.
func (tr *trace) rdPicture(status bool) picture {
	p := picture{Wake: clockWake(tr.rdClk)}
	for _, w := range tr.waiters {
		if !isDone(w.done) {
			p.Waiters = append(p.Waiters, w.name+" waiting")
			continue
		}
		p.Waiters = append(p.Waiters, w.name+" "+outcome(w.call, w.err))
	}
	if status {
		tr.status(&p, tr.rdM.Status())
	}
	return p
}

func (tr *trace) status(p *picture, s meter.Snapshot) {
	p.HoldersN, p.ExpiredN, p.WaitersN = s.HoldersN, s.ExpiredN, s.WaitersN
	for _, u := range s.Usage {
		p.Usage = append(p.Usage, u.Used)
	}
	p.Buckets = s.Buckets
	switch {
	case s.Next.OK:
		p.Next = "now"
	case s.Next.At.IsZero():
		p.Next = "after a release"
	default:
		p.Next = fmt.Sprintf("+%v", s.Next.At.Sub(metertest.Epoch))
	}
	p.Pause = "none"
	if s.Pause.Active(s.Now) {
		p.Pause = fmt.Sprintf("until +%v by %s from %s", s.Pause.Until.Sub(metertest.Epoch), s.Pause.By, s.Pause.From)
	}
	p.Retired = "0"
	if s.Retired > 0 {
		p.Retired = fmt.Sprintf("%d since +%v", s.Retired, s.RetiredSince.Sub(metertest.Epoch))
	}
}

// wakeHorizon: a Redis wake further than this is the lease's lapse (the
// store's wake when only a release can admit the head); the Go engine has
// no timer then.
const wakeHorizon = 100 * time.Hour

func clockWake(clk *metertest.Clock) string {
	next, ok := clk.NextTimer()
	if !ok || next.Sub(clk.Now()) > wakeHorizon {
		return "none"
	}
	return fmt.Sprintf("+%v", next.Sub(metertest.Epoch))
}

// settle waits until the Redis side shows what the Go side shows (the
// store's grants and wake instants arrive as messages), letting due timers
// of its fake clock run as metertest's harness does, for at most 5 s. Then
// the waiters decided alike leave the comparisons, their calls held.
func (tr *trace) settle() {
	want := tr.goPicture()
	if tr.goBug != "" {
		return
	}
	if slices.ContainsFunc(want.Usage, func(u int) bool { return u < 0 }) {
		// (see advance)
		tr.goBug = fmt.Sprintf("%s, step %d: the Go side's usage %v is negative (meter.Ledger.Advance expires before it ages)",
			tr.name, tr.step, want.Usage)
		return
	}
	if want.WaitersN == 0 {
		// Nobody waits: when the engine wakes does not matter. (The Redis
		// side may keep the wake of a head that a release then granted: the
		// store tells only hosts that still have waiters. One dispatch for
		// nothing follows.)
		want.Wake = ""
	}
	local := picture{Waiters: want.Waiters, Wake: want.Wake}
	deadline := time.Now().Add(5 * time.Second)
	for polls := 0; ; polls++ {
		// What the store decided is in its reply; what it tells this host
		// comes as messages: wait for those, then compare the status.
		got := tr.rdPicture(false)
		if want.Wake == "" {
			got.Wake = ""
		}
		if reflect.DeepEqual(got, local) {
			if got = tr.rdPicture(true); want.Wake == "" {
				got.Wake = ""
			}
			if reflect.DeepEqual(got, want) {
				break
			}
		}
		if time.Now().After(deadline) {
			if got = tr.rdPicture(true); want.Wake == "" {
				got.Wake = ""
			}
			tr.fail("the Redis side = %+v\nwant the MemStore side's %+v", got, want)
		}
		if polls < 1000 {
			runtime.Gosched() // a message takes tens of microseconds; a sleep, a millisecond
		} else {
			time.Sleep(100 * time.Microsecond)
		}
		tr.rdClk.Set(tr.rdClk.Now())
	}
	if all, err := tr.mem.Load(); err == nil && len(all) == 1 {
		st := all[0].State
		tr.groups = max(tr.groups, len(st.Past))
		tr.compacted = tr.compacted || st.PastCalls() > len(st.Past)
	}
	tr.waiters = slices.DeleteFunc(tr.waiters, func(w *traceWaiter) bool {
		if !isDone(w.goT.Done()) {
			return false
		}
		if c, err := w.goT.Result(); err == nil {
			tr.held = append(tr.held, c.ID)
			tr.logf("%s granted call %d", w.name, c.ID)
		}
		return true
	})
}

func holder(pid int) meter.Holder { return meter.Holder{PID: pid, UID: 1000} }

// nonblocking acquires on both sides, requires the same outcome and
// returns it.
func (tr *trace) nonblocking() string { return tr.nonblockingCost(1) }

// nonblockingCost is nonblocking for a call of cost units.
func (tr *trace) nonblockingCost(cost int64) string {
	pid := 10_000 + tr.step
	gc, gerr := tr.goM.AcquireCost(context.Background(), holder(pid), cost, true)
	rc, rerr := tr.rdM.AcquireCost(context.Background(), holder(pid), cost, true)
	g := outcome(gc, gerr)
	tr.logf("nonblocking acquire@%d: %s", cost, g)
	if d := outcome(rc, rerr); d != g {
		tr.fail("nonblocking Acquire on Redis = %s, want %s (MemStore)", d, g)
	}
	if gerr == nil {
		tr.held = append(tr.held, gc.ID)
	}
	return g
}

// blocking queues an acquire on both sides, as waiter wSTEP.
func (tr *trace) blocking() { tr.blockingCost(1) }

// blockingCost is blocking for a call of cost units.
func (tr *trace) blockingCost(cost int64) {
	pid := 10_000 + tr.step
	w := &traceWaiter{name: fmt.Sprintf("w%d", tr.step), done: make(chan struct{})}
	var err error
	w.goT, err = tr.goM.EnqueueCost(holder(pid), cost, false)
	if errors.Is(err, meter.ErrTooBig) {
		// No units item can ever admit it: refused at once, on both.
		_, rerr := tr.rdM.AcquireCost(context.Background(), holder(pid), cost, false)
		tr.logf("blocking acquire@%d: too big", cost)
		if !errors.Is(rerr, meter.ErrTooBig) {
			tr.fail("blocking Acquire@%d on Redis = %v, want %v (MemStore)", cost, rerr, err)
		}
		return
	}
	require.NoError(tr.t, err, "Enqueue on MemStore")
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() {
		defer close(w.done)
		w.call, w.err = tr.rdM.AcquireCost(ctx, holder(pid), cost, false)
	}()
	tr.waiters = append(tr.waiters, w)
	tr.logf("blocking acquire@%d %s", cost, w.name)
}

// settleCall sets the actual cost of call id on both sides.
func (tr *trace) settleCall(id uint64, actual int64) {
	gerr := tr.goM.Settle(id, actual)
	rerr := tr.rdM.Settle(id, actual)
	if (gerr == nil) != (rerr == nil) {
		tr.fail("Settle(%d, %d) on Redis = %v, want %v (MemStore)", id, actual, rerr, gerr)
	}
	tr.logf("settle %d %d: %v", id, actual, gerr)
}

func (tr *trace) release(id uint64) {
	tr.held = slices.DeleteFunc(tr.held, func(x uint64) bool { return x == id })
	require.NoError(tr.t, tr.goM.Release(id), "Release(%d) on MemStore", id)
	require.NoError(tr.t, tr.rdM.Release(id), "Release(%d) on Redis", id)
	tr.logf("release %d", id)
}

// revoke takes back a call on both sides. Both refuse a call that
// max_hold ended (meter.ErrNotExist: it counts as completed already); it
// then stays, to be released.
func (tr *trace) revoke(id uint64) {
	gerr := tr.goM.Revoke(id)
	rerr := tr.rdM.Revoke(id)
	if gerr == nil {
		tr.held = slices.DeleteFunc(tr.held, func(x uint64) bool { return x == id })
	}
	tr.logf("revoke %d: %v", id, gerr)
	if errors.Is(gerr, meter.ErrNotExist) != errors.Is(rerr, meter.ErrNotExist) || (gerr == nil) != (rerr == nil) {
		tr.fail("Revoke(%d) on Redis = %v, want %v (MemStore)", id, rerr, gerr)
	}
}

// pause pauses the meter on both sides for d from now (0: lifts its
// pause), and requires the same pause in force after it.
func (tr *trace) pause(d time.Duration) {
	p := meter.Pause{}
	if d > 0 {
		p = meter.Pause{Until: tr.goClk.Now().Add(d), By: fmt.Sprintf("pid %d on a", 10_000+tr.step), From: "the trace"}
	}
	gp, _, gerr := tr.goM.Pause(p)
	require.NoError(tr.t, gerr, "Pause on MemStore")
	rp, _, rerr := tr.rdM.Pause(p)
	require.NoError(tr.t, rerr, "Pause on Redis")
	tr.logf("pause %v: until +%v", d, gp.Until.Sub(metertest.Epoch))
	if !gp.Until.Equal(rp.Until) || gp.By != rp.By || gp.From != rp.From {
		tr.fail("Pause(%v) on Redis = %+v, want %+v (MemStore)", d, rp, gp)
	}
}

// interrupt ends waiter w's wait on both sides, as a signal does.
func (tr *trace) interrupt(w *traceWaiter) {
	w.left = true
	_, err := tr.goM.Cancel(w.goT)
	require.ErrorIs(tr.t, err, meter.ErrInterrupted, "Cancel(%s) on MemStore", w.name)
	w.cancel()
	tr.logf("interrupt %s", w.name)
}

func (tr *trace) setSpec(s meter.Spec) {
	tr.spec = s
	require.NoError(tr.t, tr.goM.SetSpec(s), "SetSpec(%s) on MemStore", s)
	require.NoError(tr.t, tr.rdM.SetSpec(s), "SetSpec(%s) on Redis", s)
	tr.logf("limits %s", s)
}

// advance moves both clocks by d, running the timers due meanwhile at
// their own instants. The Go side is brought to each instant max_hold ends
// a hold on the way (unless jump): meter.Ledger.Advance ends the holds
// before it ages the windows, so that a jump over a hold's end and a
// window's leaves an entry behind the window's start in the place of one
// that still counts, and a units window subtracts the wrong weight (usage
// -4: reported to the lead, with the fix: age first). Looking at the meter
// at each hold's end is what a busier meter does anyway; rlfs.lua ages
// first and needs none of it.
func (tr *trace) advance(d time.Duration) {
	to := tr.goClk.Now().Add(d)
	for !tr.jump && tr.spec.MaxHold > 0 {
		// the next hold's end, or timer (it may grant a call whose hold
		// ends before to)
		next, ok := tr.goClk.NextTimer()
		if !ok || next.After(to) {
			next = to
		}
		for _, c := range tr.goM.Snapshot().Holders {
			if end := c.GrantedAt.Add(tr.spec.MaxHold); end.After(tr.goClk.Now()) && end.Before(next) {
				next = end
			}
		}
		if !next.After(tr.goClk.Now()) || next.Equal(to) {
			break
		}
		tr.goClk.Set(next)
		tr.goM.Status()
	}
	tr.goClk.Set(to)
	tr.rdClk.Set(to)
	tr.logf("advance %v", d)
}
