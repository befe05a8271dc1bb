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
	reg, err := meter.Open(st, meter.Options{Clock: clk})
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
	require.Equal(t, 42, e.State.Calls[0].Holder.PID)
}
