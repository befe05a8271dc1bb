package sqlite_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
	"github.com/rlfs/rlfs/meter/sqlite"
)

// TestRecreateAfterDelete pins design §4: deleting the database file while
// the daemon runs must not lose the meters.
func TestRecreateAfterDelete(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meters.db")
	st, err := sqlite.Open(path, sqlite.Options{})
	require.NoError(t, err)
	clk := metertest.NewClock()
	reg, err := meter.OpenLocal(st, meter.Options{Clock: clk})
	require.NoError(t, err)
	spec, _ := meter.ParseSpec("1/5s")
	m, err := reg.Create("email", spec, meter.Attr{Mode: 0o700, UID: 7, GID: 8})
	require.NoError(t, err)
	tk, err := m.Enqueue(meter.Holder{PID: 42, Cmd: "sendmail"}, false)
	require.NoError(t, err)
	c, err := tk.Result()
	require.NoError(t, err)
	clk.Advance(time.Second)
	require.NoError(t, m.Release(c.ID))

	require.False(t, st.Missing())
	require.NoError(t, os.Remove(path))
	require.True(t, st.Missing())
	require.NoError(t, reg.Rewrite(st.Recreate))
	require.False(t, st.Missing())

	// Writes go on into the new file.
	_, err = reg.Create("api", meter.DefaultSpec(), meter.DefaultAttr())
	require.NoError(t, err)
	require.NoError(t, st.Close())

	st2, err := sqlite.Open(path, sqlite.Options{})
	require.NoError(t, err)
	defer st2.Close()
	all, err := st2.Load()
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.Equal(t, "api", all[0].Name)
	e := all[1]
	require.Equal(t, "email", e.Name)
	require.Equal(t, "1/5s,concurrency=1", e.Spec.String())
	require.Equal(t, meter.Attr{Mode: 0o700, UID: 7, GID: 8}, e.Attr)
	require.Equal(t, uint64(1), e.Grants)
	require.Len(t, e.State.Calls, 1)
	require.Equal(t, c.GrantedAt.UnixNano(), e.State.Calls[0].GrantedAt.UnixNano())
	require.Equal(t, c.GrantedAt.Add(time.Second).UnixNano(), e.State.Calls[0].DoneAt.UnixNano())
	require.Equal(t, int64(1), e.State.Calls[0].Units(), "the call's cost")
	// The engine keeps of a completed call what the rule needs (its times
	// and units, 64 bytes), not its process: the rewritten file has none.
}

// TestJournalSurvivesCrash: grants and completions written just before a
// crash (no Close, nothing flushed into SQLite yet) are read back by a
// read-only open and replayed by the next owner. It pins the bug where a
// kill -9 within 50 ms of a completion lost it.
func TestJournalSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "meters.db")
	st, err := sqlite.Open(path, sqlite.Options{})
	require.NoError(t, err)
	require.NoError(t, st.CreateMeter("m", meter.DefaultSpec(), meter.DefaultAttr()))
	g := metertest.Epoch
	require.NoError(t, st.Grant("m", meter.Call{ID: 1, GrantedAt: g}, time.Time{}, time.Time{}))
	require.NoError(t, st.Complete("m", meter.Call{ID: 1, GrantedAt: g, DoneAt: g.Add(time.Second)}))
	require.NoError(t, st.Grant("m", meter.Call{ID: 2, GrantedAt: g.Add(2 * time.Second)}, time.Time{}, time.Time{}))
	// A crash image: the files as they are now, before any flush.
	crash := filepath.Join(t.TempDir(), "meters.db")
	for _, suffix := range []string{"", "-wal", "-shm", ".grants-0", ".grants-1"} {
		b, err := os.ReadFile(path + suffix)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(crash+suffix, b, 0o644))
	}
	require.NoError(t, st.Close())

	check := func(all []meter.Stored) {
		t.Helper()
		require.Len(t, all, 1)
		calls := all[0].State.Calls
		require.Len(t, calls, 2)
		require.Equal(t, g.Add(time.Second).UnixNano(), calls[0].DoneAt.UnixNano(), "the completion survived")
		require.True(t, calls[1].InProgress())
		require.Equal(t, uint64(2), all[0].Grants)
		require.Equal(t, uint64(3), all[0].State.NextID)
	}
	ro, err := sqlite.OpenReadOnly(crash)
	require.NoError(t, err)
	all, err := ro.Load()
	require.NoError(t, err)
	check(all)
	require.NoError(t, ro.Close())

	again, err := sqlite.Open(crash, sqlite.Options{})
	require.NoError(t, err)
	all, err = again.Load()
	require.NoError(t, err)
	check(all)
	require.NoError(t, again.Close())
	// Replaying twice changes nothing (the journal was emptied, but the
	// replay is idempotent anyway).
	again, err = sqlite.Open(crash, sqlite.Options{})
	require.NoError(t, err)
	all, err = again.Load()
	require.NoError(t, err)
	check(all)
	require.NoError(t, again.Close())
}

// TestRevoke: a revoked grant leaves no call and no count behind, whether it
// is revoked before or after it reached SQLite, and its ID is not reused.
func TestRevoke(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meters.db")
	st, err := sqlite.Open(path, sqlite.Options{})
	require.NoError(t, err)
	require.NoError(t, st.CreateMeter("m", meter.DefaultSpec(), meter.DefaultAttr()))
	g := metertest.Epoch
	require.NoError(t, st.Grant("m", meter.Call{ID: 1, GrantedAt: g}, time.Time{}, time.Time{}))
	require.NoError(t, st.Revoke("m", 1)) // in the same batch
	require.NoError(t, st.Grant("m", meter.Call{ID: 2, GrantedAt: g}, time.Time{}, time.Time{}))
	all, err := st.Load() // flushes
	require.NoError(t, err)
	require.Equal(t, uint64(1), all[0].Grants)
	require.Len(t, all[0].State.Calls, 1)
	require.NoError(t, st.Revoke("m", 2)) // after it reached SQLite
	require.NoError(t, st.Close())

	st, err = sqlite.Open(path, sqlite.Options{})
	require.NoError(t, err)
	defer st.Close()
	all, err = st.Load()
	require.NoError(t, err)
	require.Equal(t, uint64(0), all[0].Grants)
	require.Empty(t, all[0].State.Calls)
	require.Equal(t, uint64(3), all[0].State.NextID, "revoked IDs are not reused")
}
