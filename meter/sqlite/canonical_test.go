package sqlite_test

import (
	"database/sql"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/sqlite"
)

// TestLoadsSpecStoredInAnyOrder: rlfs used to store a spec's windows in the
// order they were written ("75/1h,1/1s"); windows are now canonical (by
// PER), and such a stored spec still loads, equal to the canonical one.
func TestLoadsSpecStoredInAnyOrder(t *testing.T) {
	s, path := open(t, sqlite.Options{})
	want, err := meter.ParseSpec("1/s,75/h")
	require.NoError(t, err)
	require.NoError(t, s.CreateMeter("email", want, meter.DefaultAttr()))
	require.NoError(t, s.Close())

	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	_, err = db.Exec("UPDATE meters SET spec = ? WHERE name = ?", "75/1h,1/1s,concurrency=1", "email")
	require.NoError(t, err)
	require.NoError(t, db.Close())

	s, err = sqlite.Open(path, sqlite.Options{})
	require.NoError(t, err)
	defer s.Close()
	got, err := s.Load()
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, want, got[0].Spec, "the stored spec 75/1h,1/1s loaded")
	require.Equal(t, "1/1s,75/1h,concurrency=1", got[0].Spec.String())
}
