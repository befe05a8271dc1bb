package redis

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// fcalls is how many FCALLs the server has run (INFO commandstats).
func fcalls(t *testing.T, addr string) int {
	t.Helper()
	for _, line := range strings.Split(redistest.Command(addr, "INFO", "commandstats"), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_fcall:calls="); ok {
			n, err := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			require.NoError(t, err, line)
			return n
		}
	}
	return 0
}

// heldSerial starts a server with hosts a and b and a serial meter m, of
// which a holds a call (adm).
func heldSerial(t *testing.T) (*redistest.Server, *Store, *Store, meter.Admission) {
	t.Helper()
	srv := redistest.Start(t)
	a := bareStore(t, srv.URL(), "a", Options{Lease: time.Minute})
	b := bareStore(t, srv.URL(), "b", Options{Lease: time.Minute})
	ctx := context.Background()
	require.NoError(t, a.CreateMeter(ctx, "m", mustSpecT(t, "concurrency=1"), meter.DefaultAttr()))
	adm, err := a.Enqueue(ctx, "m", meter.Request{Ticket: 1, Cost: 1, Nonblock: true})
	require.NoError(t, err)
	require.True(t, adm.Granted)
	return srv, a, b, adm
}

// A close and the next open of a host cost one FCALL: the release waits
// in the outbox (nobody waits on the meter) and the next acquire of the
// meter carries it; the store ends the call first, so that a serial
// meter grants the next open, and the release returns once it is taken.
// Alone, a release waits releaseLinger at most, then goes by itself.
func TestReleaseRidesTheNextAcquire(t *testing.T) {
	srv, a, b, adm := heldSerial(t)
	ctx := context.Background()

	a.linger = time.Minute // on a busy machine, longer than any scheduling delay; set back below
	before := fcalls(t, srv.Addr())
	released := make(chan struct{})
	go func() {
		_ = a.Release(ctx, "m", adm.Call.ID)
		close(released)
	}()
	for !a.host.pending() {
		select {
		case <-released:
			t.Fatal("the release went alone: it should have waited for an acquire")
		default:
			time.Sleep(10 * time.Microsecond)
		}
	}
	next, err := a.Enqueue(ctx, "m", meter.Request{Ticket: 2, Cost: 1, Nonblock: true})
	require.NoError(t, err)
	require.True(t, next.Granted, "the carried release freed the serial meter")
	<-released
	require.Equal(t, 1, fcalls(t, srv.Addr())-before, "one FCALL for the release and the next acquire")

	// alone, it goes by itself: host b sees the meter free soon after
	a.linger = releaseLinger
	start := time.Now()
	require.NoError(t, a.Release(ctx, "m", next.Call.ID))
	require.Less(t, time.Since(start), 5*time.Second, "a release alone is not kept")
	other, err := b.Enqueue(ctx, "m", meter.Request{Ticket: 1, Cost: 1, Nonblock: true})
	require.NoError(t, err)
	require.True(t, other.Granted, "the release reached the store")
	require.False(t, a.host.pending(), "nothing left in the outbox")
}

// A release does not wait for an acquire while anyone is known to wait
// on its meter: a waiter of this host, or the store's queue as the last
// acquire's reply showed it.
func TestReleaseDoesNotLingerWhenSomeoneWaits(t *testing.T) {
	srv := redistest.Start(t)
	a := bareStore(t, srv.URL(), "a", Options{Lease: time.Minute})
	b := bareStore(t, srv.URL(), "b", Options{Lease: time.Minute})
	ctx := context.Background()
	a.Subscribe(&recEvents{granted: map[uint64]meter.Call{}}) // host a hears the store's messages
	waitSubscribed(t, a)
	require.NoError(t, a.CreateMeter(ctx, "m", mustSpecT(t, "concurrency=1"), meter.DefaultAttr()))
	adm, err := a.Enqueue(ctx, "m", meter.Request{Ticket: 1, Cost: 1, Nonblock: true})
	require.NoError(t, err)
	require.True(t, adm.Granted)
	require.True(t, lingers(a, "m"), "nobody waits")
	q, err := b.Enqueue(ctx, "m", meter.Request{Ticket: 1, Cost: 1})
	require.NoError(t, err)
	require.False(t, q.Granted, "b queues")
	// the store tells host a that b's waiter came to an empty queue
	require.Eventually(t, func() bool { return !lingers(a, "m") }, 10*time.Second, time.Millisecond,
		"host a learns that b's waiter queued")
	// a's next acquire's reply says so too
	a.host.queueSeen("m", 0)
	_, err = a.Enqueue(ctx, "m", meter.Request{Ticket: 2, Cost: 1, Nonblock: true})
	require.ErrorIs(t, err, meter.ErrWouldBlock)
	require.False(t, lingers(a, "m"), "the store's queue holds b's waiter")
	// the holder's release goes at once: b is granted
	releaseAtOnce(t, a, "m", adm.Call.ID, "while b's waiter waits")
	a.host.queueSeen("m", 0)
	a.host.asking("m", 3, true)
	require.True(t, lingers(a, "m"), "a ticket of this host asked for, its reply not come yet")
	a.host.queued("m", 3, 1)
	require.False(t, lingers(a, "m"), "a ticket of this host waits in the store's queue")
	a.host.asking("m", 4, true)
	a.host.queued("m", 4, 2)
	a.host.unqueued("m", 3)
	require.False(t, lingers(a, "m"), "another ticket of this host still waits in the store's queue")
	a.host.own("m", 4, meter.Call{ID: 99}, 3, 1)
	require.True(t, lingers(a, "m"), "this host's queued tickets left the queue (one cancelled, one granted)")
}

// A release does not wait for an acquire while the store is unreachable:
// acquires carry nothing then (the recovery loop delivers the outbox), so
// every such wait would end in vain. The completion is kept.
func TestReleaseDoesNotLingerWhileUnreachable(t *testing.T) {
	srv, a, _, adm := heldSerial(t)
	ctx := context.Background()
	ok, _ := a.lingers("m")
	require.True(t, ok, "nobody waits and the store answers: a release may wait for the next acquire")
	srv.Kill()
	_, err := a.Enqueue(ctx, "m", meter.Request{Ticket: 2, Cost: 1, Nonblock: true})
	require.ErrorIs(t, err, meter.ErrUnavailable, "an open while Redis is down")
	require.False(t, a.UnreachableSince().IsZero(), "the store counts as unreachable")
	ok, _ = a.lingers("m")
	require.False(t, ok, "a release while the store is unreachable goes to the outbox at once")
	releaseAtOnce(t, a, "m", adm.Call.ID, "while the store was unreachable")
	require.True(t, a.host.pending(), "the completion is kept in the outbox for the store's return")
}

// While the store is unreachable, a close keeps its completion in the
// outbox and returns without a round trip: the recovery loop delivers the
// outbox when the store answers. (Each close used to try the whole outbox
// again: O(outbox) a close, and a round trip that fails, counted as a
// failure.) When Redis is back, every call is completed.
func TestReleasesWhileUnreachableWaitForRecovery(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes")
	a := bareStore(t, srv.URL(), "a", Options{Lease: time.Minute})
	ctx := context.Background()
	require.NoError(t, a.CreateMeter(ctx, "m", mustSpecT(t, "concurrency=10"), meter.DefaultAttr()))
	var ids []uint64
	for i := range 10 {
		adm, err := a.Enqueue(ctx, "m", meter.Request{Ticket: uint64(i + 1), Cost: 1, Nonblock: true})
		require.NoError(t, err)
		require.True(t, adm.Granted, "call %d", i+1)
		ids = append(ids, adm.Call.ID)
	}
	srv.Kill()
	_, err := a.Enqueue(ctx, "m", meter.Request{Ticket: 11, Cost: 1, Nonblock: true})
	require.ErrorIs(t, err, meter.ErrUnavailable, "an open while Redis is down")
	failures := a.Health().Failures
	for _, id := range ids {
		releaseAtOnce(t, a, "m", id, "while the store was unreachable")
	}
	require.Equal(t, failures, a.Health().Failures, "the closes during the outage sent nothing")
	a.host.mu.Lock()
	kept := len(a.host.outbox)
	a.host.mu.Unlock()
	require.Equal(t, len(ids), kept, "every completion is kept in the outbox")

	srv.Restart()
	require.Eventually(t, func() bool { return a.UnreachableSince().IsZero() && !a.host.pending() }, 30*time.Second, 10*time.Millisecond,
		"the recovery loop delivers the kept completions")
	require.Equal(t, 0, holders(t, a, "m"), "every call kept during the outage is completed")
}

// A close that finds the store unreachable just after the recovery loop
// delivered the outbox (and before it says the store is back) is not left
// in the outbox: the sender takes it once the store counts as reachable.
func TestReleaseKeptAfterRecoveryDeliveryIsSent(t *testing.T) {
	_, a, _, adm := heldSerial(t)
	a.mu.Lock()
	a.down = a.clock.Now() // the recovery loop's delivery is done; it has not cleared down yet
	a.mu.Unlock()
	releaseAtOnce(t, a, "m", adm.Call.ID, "while the store counted as unreachable")
	require.True(t, a.host.pending(), "the completion is kept")
	a.reachableAgain(0)
	require.Eventually(t, func() bool { return holders(t, a, "m") == 0 }, 10*time.Second, time.Millisecond,
		"the sender delivers the completion (the outbox is empty from when the delivery takes it: wait for the store)")
	require.False(t, a.host.pending(), "nothing is left in the outbox")
}

// holders is how many calls of name are in progress in the store, seen
// from s.
func holders(t *testing.T, s *Store, name string) int {
	t.Helper()
	v, err := s.View(context.Background(), name, meter.ViewQuery{})
	require.NoError(t, err)
	return v.HoldersN
}

// waitSubscribed waits until host s listens on its channel: Subscribe
// subscribes in the background, and a message published before that is
// lost (on a busy machine, b's waiter once queued before a listened).
func waitSubscribed(t *testing.T, s *Store) {
	t.Helper()
	ch := hostChannel(s.opt.Prefix, s.opt.Host)
	require.Eventually(t, func() bool {
		n, err := s.c.Do(context.Background(), s.c.B().PubsubNumsub().Channel(ch).Build()).AsIntMap()
		return err == nil && n[ch] > 0
	}, 10*time.Second, time.Millisecond, "host %s listens on its channel", s.opt.Host)
}

// releaseAtOnce releases call id of name on s with a wait for an acquire
// of a minute, and fails if the release waited (when, the case).
func releaseAtOnce(t *testing.T, s *Store, name string, id uint64, when string) {
	t.Helper()
	s.linger = time.Minute // a release that waited for an acquire would show
	done := make(chan struct{})
	go func() {
		_ = s.Release(context.Background(), name, id)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the release waited for an acquire " + when)
	}
}

// lingers reports whether a release of name on s would wait for an
// acquire to carry it.
func lingers(s *Store, name string) bool {
	ok, _ := s.host.mayLinger(name)
	return ok
}

// A release lingers while this host's own open is on its way to the store
// (the next open of the process that closed: its OPEN can reach the daemon
// before the RELEASE), and goes at once when that open is queued: the
// store then waits for it to admit the waiter.
func TestReleaseLingerEndsWhenOwnOpenQueues(t *testing.T) {
	_, a, b, adm := heldSerial(t)
	ctx := context.Background()

	a.linger = time.Minute
	a.host.asking("m", 2, true) // the next open, sent, its reply not come yet
	released := make(chan struct{})
	go func() {
		_ = a.Release(ctx, "m", adm.Call.ID)
		close(released)
	}()
	require.Eventually(t, a.host.pending, 10*time.Second, 10*time.Microsecond, "the release waits in the outbox")
	select {
	case <-released:
		t.Fatal("the release went alone while this host's own open was on its way")
	case <-time.After(20 * time.Millisecond):
	}
	a.host.queued("m", 2, 1) // the store queued that open
	select {
	case <-released:
	case <-time.After(30 * time.Second):
		t.Fatal("the release kept waiting for an acquire after this host's open queued")
	}
	other, err := b.Enqueue(ctx, "m", meter.Request{Ticket: 1, Cost: 1, Nonblock: true})
	require.NoError(t, err)
	require.True(t, other.Granted, "the release reached the store")
}

// takeRiders takes a meter's releases from the front of the outbox, in
// order, at most n, never past a revocation of that meter, and looks at
// the first riderLook operations only; what it leaves keeps its order.
func TestTakeRidersKeepsOrderAndLooksAtTheFront(t *testing.T) {
	h := newHostState(Options{Host: "a", Lease: time.Minute}, nil)
	var ops []outOp
	for i := range 10 {
		ops = append(ops, outOp{meter: "m", id: uint64(i)}, outOp{meter: "x", id: uint64(100 + i)})
	}
	ops = append(ops, outOp{meter: "m", id: 50, revoke: true}, outOp{meter: "m", id: 51})
	h.outbox = slices.Clone(ops)
	got := h.takeRiders("m", 4)
	require.Equal(t, []uint64{0, 1, 2, 3}, idsOf(got), "the first 4 of m, in order")
	rest := idsOf(h.outbox)
	require.Equal(t, []uint64{100, 101, 102, 103, 4, 104, 5, 105, 6, 106, 7, 107, 8, 108, 9, 109, 50, 51}, rest, "the rest in order")
	got = h.takeRiders("m", 16)
	require.Equal(t, []uint64{4, 5, 6, 7, 8, 9}, idsOf(got), "up to the revocation, not past it")
	require.Equal(t, []uint64{100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 50, 51}, idsOf(h.outbox))
	require.Equal(t, 10, h.inflight)

	h.outbox = nil
	for i := range riderLook {
		h.outbox = append(h.outbox, outOp{meter: "x", id: uint64(i)})
	}
	h.outbox = append(h.outbox, outOp{meter: "m", id: 1})
	require.Empty(t, h.takeRiders("m", 16), "beyond the first riderLook operations: left to the sender")
	require.Len(t, h.outbox, riderLook+1)
}

func idsOf(ops []outOp) []uint64 {
	var ids []uint64
	for _, o := range ops {
		ids = append(ids, o.id)
	}
	return ids
}

// The sender leaves a release that waits for an acquire to carry it in
// the outbox, and what follows it of its meter (in order); the other
// meters' operations go. Once its wait ends, or once it was on its way
// and came back, the sender takes it.
func TestSenderLeavesLingeringReleases(t *testing.T) {
	h := newHostState(Options{Host: "a", Lease: time.Minute}, nil)
	waits := make(chan struct{})
	h.outbox = []outOp{
		{meter: "x", id: 1},
		{meter: "m", id: 2, lingers: true, settled: waits},
		{meter: "x", id: 3},
		{meter: "m", id: 4}, // after m's lingering release: stays with it
		{meter: "y", id: 5, revoke: true},
	}
	require.True(t, h.sendable())
	require.Equal(t, []uint64{1, 3, 5}, idsOf(h.takeOutbox(true)), "the sender's take")
	require.Equal(t, []uint64{2, 4}, idsOf(h.outbox), "m's stay, in order")
	require.False(t, h.sendable(), "nothing the sender may take")
	require.True(t, h.pending(), "but the outbox is not empty")
	h.settled(3)

	h.lingered(waits)
	require.True(t, h.sendable(), "its wait ended")
	got := h.takeOutbox(true)
	require.Equal(t, []uint64{2, 4}, idsOf(got))
	h.returnOutbox(got) // on its way, and back (the store did not answer)
	require.True(t, h.sendable(), "what came back is the sender's")
	require.Equal(t, []uint64{2, 4}, idsOf(h.takeOutbox(true)))

	// an acquire carries a lingering release; if it comes back, it is the
	// sender's too
	h.outbox = []outOp{{meter: "m", id: 6, lingers: true, settled: make(chan struct{})}}
	riders := h.takeRiders("m", maxReleases)
	require.Equal(t, []uint64{6}, idsOf(riders))
	h.returnOutbox(riders)
	require.True(t, h.sendable())
}

// While a release of one meter waits for an acquire, another meter's
// release that goes at once goes alone: it does not take the waiting one
// along, which the next acquire of its meter carries.
func TestReleaseAloneLeavesAnotherLingering(t *testing.T) {
	srv := redistest.Start(t)
	a := bareStore(t, srv.URL(), "a", Options{Lease: time.Minute})
	ctx := context.Background()
	for _, m := range []string{"m", "x"} {
		require.NoError(t, a.CreateMeter(ctx, m, mustSpecT(t, "concurrency=1"), meter.DefaultAttr()))
	}
	grant := func(m string, ticket uint64) uint64 {
		adm, err := a.Enqueue(ctx, m, meter.Request{Ticket: ticket, Cost: 1, Nonblock: true})
		require.NoError(t, err)
		require.True(t, adm.Granted, "%s ticket %d", m, ticket)
		return adm.Call.ID
	}
	m1, x1 := grant("m", 1), grant("x", 1)

	a.linger = time.Minute
	released := make(chan struct{})
	go func() {
		_ = a.Release(ctx, "m", m1)
		close(released)
	}()
	require.Eventually(t, a.host.pending, 10*time.Second, 10*time.Microsecond, "m's release waits in the outbox")
	a.host.lingeredInVain("x") // x's releases go at once
	before := fcalls(t, srv.Addr())
	require.NoError(t, a.Release(ctx, "x", x1))
	require.Equal(t, 1, fcalls(t, srv.Addr())-before, "x's release, alone")
	select {
	case <-released:
		t.Fatal("m's release went with x's")
	default:
	}
	require.True(t, a.host.pending(), "m's release still waits")
	before = fcalls(t, srv.Addr())
	grant("m", 2) // carries it: the serial meter is free
	<-released
	require.Equal(t, 1, fcalls(t, srv.Addr())-before, "one FCALL for m's release and the next acquire")
}

// A release that waited in vain makes the next ones of its meter go at
// once, until an open of the meter comes: opens coming again, a release
// may wait for the next one again.
func TestLingerBackoffEndsWithAnOpen(t *testing.T) {
	h := newHostState(Options{Host: "a", Lease: time.Minute}, nil)
	h.asking("m", 1, false)
	ok, _ := h.mayLinger("m")
	require.True(t, ok, "nobody waits")
	h.lingeredInVain("m")
	for i := range 3 {
		ok, _ = h.mayLinger("m")
		require.False(t, ok, "release %d after a vain wait", i)
	}
	h.asking("m", 2, false)
	ok, _ = h.mayLinger("m")
	require.True(t, ok, "an open came")
}
