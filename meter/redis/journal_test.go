package redis

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// openJournaled opens a registry for host on url with journal path.
func openJournaled(t *testing.T, url, host, path string) (*meter.Registry, *Store) {
	t.Helper()
	s, err := Open(Options{URL: url, Host: host, Journal: path})
	require.NoError(t, err, "Open(%s, journal %s)", host, path)
	reg, err := engineOpen(s, meter.Options{})
	require.NoError(t, err)
	return reg, s
}

// A store that lost its data while a host's daemon was stopped gets the
// host's meters and its calls that still count back when the daemon starts
// again, from the host's journal.
func TestJournalPutsCallsBackAfterLossWhileDown(t *testing.T) {
	srv := redistest.Start(t)
	path := filepath.Join(t.TempDir(), "a.journal")
	reg, s := openJournaled(t, srv.URL(), "a", path)
	m, err := reg.Create("m", mustSpecT(t, "2/1h,concurrency=0"), meter.DefaultAttr())
	require.NoError(t, err)
	for range 2 {
		c, err := m.Acquire(context.Background(), meter.Holder{PID: 1}, true)
		require.NoError(t, err)
		require.NoError(t, m.Release(c.ID))
	}
	reg.Close()
	require.NoError(t, s.Close())

	srv.Restart() // no persistence: the store comes back empty
	require.Equal(t, "$-1", redistest.Command(srv.Addr(), "GET", "{rlfs}:epoch"), "the store lost its data (no epoch)")

	reg, s = openJournaled(t, srv.URL(), "a", path)
	defer s.Close()
	defer reg.Close()
	m = reg.Get("m")
	require.NotNil(t, m, "the meter is back")
	require.Equal(t, "2/1h,concurrency=0", m.Spec().String())
	require.Equal(t, 2, m.Status().Usage[0].Used, "the two calls made before the loss count")
	_, err = m.Acquire(context.Background(), meter.Holder{PID: 1}, true)
	require.ErrorIs(t, err, meter.ErrWouldBlock, "a third call in the hour")
}

// One daemon per journal: a second one on the same journal stops with a
// message naming it.
func TestJournalIsLocked(t *testing.T) {
	srv := redistest.Start(t)
	path := filepath.Join(t.TempDir(), "a.journal")
	reg, s := openJournaled(t, srv.URL(), "a", path)
	defer s.Close()
	defer reg.Close()
	_, err := Open(Options{URL: srv.URL(), Host: "a", Journal: path})
	require.ErrorContains(t, err, "is in use by another rlfs")
	require.ErrorContains(t, err, `serves host "a"`)
}

// Completions made while the store was unreachable, and not delivered when
// the daemon stopped, are delivered by its next start, from the journal.
func TestJournalDeliversOwedCompletions(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes")
	path := filepath.Join(t.TempDir(), "a.journal")
	reg, s := openJournaled(t, srv.URL(), "a", path)
	m, err := reg.Create("m", mustSpecT(t, "concurrency=1"), meter.DefaultAttr())
	require.NoError(t, err)
	c, err := m.Acquire(context.Background(), meter.Holder{PID: 1}, true)
	require.NoError(t, err)
	srv.Kill()
	require.NoError(t, m.Release(c.ID), "a release while the store is down is kept")
	reg.Close()
	require.NoError(t, s.Close())
	srv.Restart() // with its AOF: the call is still in progress there

	reg, s = openJournaled(t, srv.URL(), "a", path)
	defer s.Close()
	defer reg.Close()
	m = reg.Get("m")
	require.NotNil(t, m, "the meter after the restart; meters: %v", reg.Names())
	require.Eventually(t, func() bool { return m.Status().HoldersN == 0 }, 5*time.Second, 10*time.Millisecond,
		"the owed completion was delivered")
}

func mustSpecT(t *testing.T, text string) meter.Spec {
	t.Helper()
	s, err := meter.ParseSpec(text)
	require.NoError(t, err)
	return s
}

// The journal's lines are json.Marshal's, written without reflection when
// the strings are plain (appendRec).
func TestJournalEncoding(t *testing.T) {
	for _, r := range []jrec{
		{K: "call", M: "email", ID: 7, Ticket: 9, G: 1767225600000001, C: 3, PID: 42},
		{K: "done", M: "api-v2.x", ID: 1 << 60, D: 1767225600000002},
		{K: "out", M: "m", ID: 5, D: -1, Rev: true},
		{K: "def", M: "m", Spec: "1/s,concurrency=0,max_hold=1h", Mode: 0o640, UID: 1000, GID: 100},
		{K: "epoch", E: "0123456789abcdef"},
		{K: "sent"},
		{K: "def", M: `a "quoted" <name> & more`, Spec: "1/s"},
		{K: "call", M: "ünïcode\x01", ID: 1},
	} {
		want, err := json.Marshal(r)
		require.NoError(t, err)
		require.Equal(t, string(want), string(appendRec(nil, r)), "%+v", r)
	}
}

// A host that must remember many calls does not rewrite its journal on
// every line once the snapshot itself passes the compaction size: it
// rewrites when the journal doubled since its last rewrite. (It rewrote on
// every grant and release: a window of 40,000 calls slowed a host from
// ~6,000 grants/s to ~12, the bench's s2 fill to 100,000 never ended.)
func TestJournalCompactionIsAmortized(t *testing.T) {
	srv := redistest.Start(t)
	defer func(v int64) { journalCompactAt = v }(journalCompactAt)
	journalCompactAt = 16 << 10
	path := filepath.Join(t.TempDir(), "a.journal")
	s := bareStore(t, srv.URL(), "a", Options{Lease: time.Hour, Journal: path})
	ctx := context.Background()
	require.NoError(t, s.CreateMeter(ctx, "w", mustSpecT(t, "1000000/1h,concurrency=0"), meter.DefaultAttr()))
	const n = 2000
	for i := range n {
		cycle(t, s, "w", uint64(i+1))
	}
	s.host.mu.Lock()
	rewrites, size := s.host.jl.rewrites, s.host.jl.size
	s.host.mu.Unlock()
	// The snapshot passes 16 KB after ~150 calls; then every one of the
	// ~3,700 lines written after would rewrite it. Doubling: a dozen.
	require.Less(t, rewrites, 20, "journal rewrites over %d grants and releases (%d bytes now)", n, size)
	require.Greater(t, rewrites, 1, "the journal was compacted at all")
	// What the journal holds is still every call that counts.
	s.Close()
	_, recs, err := openJournal(path, "a")
	require.NoError(t, err)
	calls := map[uint64]bool{}
	for _, r := range recs {
		if r.K == "call" && r.M == "w" {
			calls[r.ID] = true
		}
	}
	require.Len(t, calls, n, "calls of the window in the journal")
}
