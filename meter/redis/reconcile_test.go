package redis

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// The reconcile after a store lost its last writes (reconcile.go), without
// the engine: two Stores on one server, which is rolled back under them
// (SAVE, then act, then the server killed and started again from the
// saved RDB: a new run id, the same epoch, as a replica that had not
// caught up and took over).

// recEvents is a meter.Events that counts what the store tells the engine.
type recEvents struct {
	mu        sync.Mutex
	reachable int
	granted   map[uint64]meter.Call // by ticket
}

func (e *recEvents) Granted(_ string, ticket uint64, c meter.Call) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.granted[ticket] = c
}
func (e *recEvents) Refused(string, uint64, error)        {}
func (e *recEvents) Wake(string, time.Time, bool, uint64) {}
func (e *recEvents) Changed(string)                       {}
func (e *recEvents) Reachable()                           { e.mu.Lock(); e.reachable++; e.mu.Unlock() }
func (e *recEvents) grantOf(ticket uint64) (meter.Call, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.granted[ticket]
	return c, ok
}
func (e *recEvents) reachables() int { e.mu.Lock(); defer e.mu.Unlock(); return e.reachable }

// reconcileLease is the hosts' lease: the renewal (lease/3) notices the
// roll-back; the meter is quiet for a lease.
const reconcileLease = time.Second

// rollbackRig is a server and two hosts on it, subscribed.
type rollbackRig struct {
	srv      *redistest.Server
	a, b     *Store
	ea, eb   *recEvents
	snapshot string
}

func newRollbackRig(t *testing.T) *rollbackRig {
	t.Helper()
	r := &rollbackRig{srv: redistest.Start(t), ea: &recEvents{granted: map[uint64]meter.Call{}}, eb: &recEvents{granted: map[uint64]meter.Call{}}}
	r.a = bareStore(t, r.srv.URL(), "a", Options{Lease: reconcileLease})
	r.b = bareStore(t, r.srv.URL(), "b", Options{Lease: reconcileLease})
	r.a.Subscribe(r.ea)
	r.b.Subscribe(r.eb)
	waitSubscribed(t, r.a)
	waitSubscribed(t, r.b)
	return r
}

// save keeps the server's data as it is now.
func (r *rollbackRig) save(t *testing.T) {
	t.Helper()
	require.Equal(t, "+OK", redistest.Command(r.srv.Addr(), "SAVE"))
	b, err := os.ReadFile(filepath.Join(r.srv.Dir, "dump.rdb"))
	require.NoError(t, err)
	r.snapshot = filepath.Join(t.TempDir(), "saved.rdb")
	require.NoError(t, os.WriteFile(r.snapshot, b, 0o600))
}

// rollBack kills the server and starts it again from what save kept.
func (r *rollbackRig) rollBack(t *testing.T) {
	t.Helper()
	r.srv.Kill()
	b, err := os.ReadFile(r.snapshot)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(r.srv.Dir, "dump.rdb"), b, 0o600))
	r.srv.Restart()
}

func (r *rollbackRig) view(t *testing.T, name string) meter.View {
	t.Helper()
	v, err := r.a.View(context.Background(), name, meter.ViewQuery{})
	require.NoError(t, err)
	return v
}

// waitView waits until the meter's view satisfies ok.
func (r *rollbackRig) waitView(t *testing.T, name, what string, ok func(meter.View) bool) {
	t.Helper()
	var v meter.View
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		v, err = r.a.View(context.Background(), name, meter.ViewQuery{})
		if err == nil && ok(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s; the store shows %d in progress, %d waiting, usage %v (err %v)", what, v.HoldersN, v.WaitersN, v.Usage, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// createMeter creates meter name on a, and has b load it: a host keeps its
// completed calls while they count against the windows it knows.
func (r *rollbackRig) createMeter(t *testing.T, name, spec string) {
	t.Helper()
	require.NoError(t, r.a.CreateMeter(context.Background(), name, mustSpecT(t, spec), meter.DefaultAttr()))
	_, ok, err := r.b.LoadMeter(context.Background(), name)
	require.NoError(t, err)
	require.True(t, ok, "b loads %s", name)
}

// enqueue asks s for ticket on name.
func enqueue(t *testing.T, s *Store, name string, ticket uint64, nonblock bool) meter.Admission {
	t.Helper()
	adm, err := s.Enqueue(context.Background(), name, meter.Request{Ticket: ticket, Cost: 1, Nonblock: nonblock, Holder: meter.Holder{PID: int(ticket)}})
	require.NoError(t, err, "ticket %d", ticket)
	return adm
}

// Store -> host: the store kept what the host ended. Host a releases its
// call, which hands the meter to b's waiter, which b releases too; the
// server is rolled back to before all that (a's call in progress, b's
// ticket queued). Each host must put its part right: a's release at the
// instant it journaled, b's ticket out of the queue and its call back as
// completed; both count in the window, and the next grant gets a new id.
// Before the reconcile the rolled-back meter kept a's call in progress and
// b's ticket queued for good (both hosts renew their leases): nothing more
// was granted.
func TestReconcileStoreKeptWhatHostsEnded(t *testing.T) {
	r := newRollbackRig(t)
	ctx := context.Background()
	r.createMeter(t, "q", "concurrency=1,5/1m")
	held := enqueue(t, r.a, "q", 1, false)
	require.True(t, held.Granted)
	queued := enqueue(t, r.b, "q", 1, false)
	require.False(t, queued.Granted)
	r.save(t)

	require.NoError(t, r.a.Release(ctx, "q", held.Call.ID))
	adm, err := r.b.Cancel(ctx, "q", queued.Seq, 1) // the dispatch granted it: Cancel replies the grant
	require.NoError(t, err)
	require.True(t, adm.Granted, "b's ticket granted at a's release")
	require.Equal(t, held.Call.ID+1, adm.Call.ID)
	require.NoError(t, r.b.Release(ctx, "q", adm.Call.ID))

	r.rollBack(t)
	rolled := time.Now()
	require.Equal(t, ":1", redistest.Command(r.srv.Addr(), "HLEN", "{rlfs:q}:c"), "the roll-back brought a's call back")
	r.waitView(t, "q", "a's release and b's call put back, b's ticket out of the queue", func(v meter.View) bool {
		return v.HoldersN == 0 && v.WaitersN == 0 && v.Usage[0].Used == 2
	})
	require.Less(t, time.Since(rolled), 10*reconcileLease, "the hosts reconcile at their renewal (lease/3)")
	require.Equal(t, uint64(3), waitGranted(t, r.a, "q", 10).ID, "the next id after 1 and 2, b's put back")
	_, err = r.b.Enqueue(ctx, "q", meter.Request{Ticket: 11, Cost: 1, Nonblock: true})
	require.ErrorIs(t, err, meter.ErrWouldBlock, "concurrency=1: a holds the call of ticket 10")
	v := r.view(t, "q")
	require.Equal(t, 3, v.Usage[0].Used, "window 5/1m: a's call, b's call, the new one")
}

// waitGranted asks for ticket (O_NONBLOCK) until the meter's quiet time
// ends and it is granted; it returns the call.
func waitGranted(t *testing.T, s *Store, name string, ticket uint64) meter.Call {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		adm, err := s.Enqueue(context.Background(), name, meter.Request{Ticket: ticket, Cost: 1, Nonblock: true})
		if err == nil && adm.Granted {
			return adm.Call
		}
		if time.Now().After(deadline) {
			t.Fatalf("ticket %d on %s not granted within 20s: %v", ticket, name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Host -> store: the store lost what the host has. Host a's call and b's
// waiter came after the save; the server is rolled back to before them.
// a's call must be in progress again (so that b's O_NONBLOCK ask is
// refused, also after the quiet time), under its own id, and the next
// grant gets a new one; b, whose waiter the store lacks, has its engine
// ask again (Reachable). Before the reconcile the rolled-back store
// granted b at once, as call 1: a's id, while a held it.
func TestReconcileStoreLostWhatHostsHave(t *testing.T) {
	r := newRollbackRig(t)
	ctx := context.Background()
	r.createMeter(t, "q", "concurrency=1,5/1m")
	r.save(t)
	held := enqueue(t, r.a, "q", 1, false)
	require.True(t, held.Granted)
	require.False(t, enqueue(t, r.b, "q", 1, false).Granted)

	r.rollBack(t)
	r.waitView(t, "q", "a's call in progress again", func(v meter.View) bool { return v.HoldersN == 1 })
	require.Eventually(t, func() bool { return r.eb.reachables() > 0 }, 10*time.Second, 10*time.Millisecond,
		"b's engine asked to present its waiter again")
	quietEnd := time.Now().Add(2 * reconcileLease)
	for time.Now().Before(quietEnd) {
		_, err := r.b.Enqueue(ctx, "q", meter.Request{Ticket: 50, Cost: 1, Nonblock: true})
		require.ErrorIs(t, err, meter.ErrWouldBlock, "an O_NONBLOCK ask on b while a's call, put back, holds q")
		time.Sleep(50 * time.Millisecond)
	}
	v, err := r.a.View(ctx, "q", meter.ViewQuery{Call: held.Call.ID})
	require.NoError(t, err)
	require.NotNil(t, v.Call, "a's call %d holds q under its id", held.Call.ID)
	require.NoError(t, r.a.Release(ctx, "q", held.Call.ID))
	require.Equal(t, held.Call.ID+1, waitGranted(t, r.b, "q", 51).ID, "the next id after a's, put back")
}
