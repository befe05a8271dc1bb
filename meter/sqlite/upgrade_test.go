package sqlite_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter/sqlite"
)

// schema1 is the schema rlfs wrote before meters kept a history (user_version 1).
const schema1 = `
CREATE TABLE meters (name TEXT PRIMARY KEY NOT NULL, spec TEXT NOT NULL, mode INTEGER NOT NULL,
	uid INTEGER NOT NULL, gid INTEGER NOT NULL, tat_ns INTEGER, next_id INTEGER NOT NULL,
	grants INTEGER NOT NULL, created_ns INTEGER NOT NULL) STRICT;
CREATE TABLE calls (meter TEXT NOT NULL, id INTEGER NOT NULL, granted_ns INTEGER NOT NULL, done_ns INTEGER,
	expired INTEGER NOT NULL, pid INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
	cmd TEXT NOT NULL, PRIMARY KEY (meter, id)) STRICT, WITHOUT ROWID;
INSERT INTO meters VALUES ('email', '1/1s,75/1h,concurrency=1', 493, 0, 0, NULL, 3, 2, 1);
INSERT INTO calls VALUES ('email', 1, 1000, 2000, 0, 1, 0, 0, 'a');
INSERT INTO calls VALUES ('email', 2, 3000, NULL, 0, 2, 0, 0, 'b');
PRAGMA user_version = 1;
`

// A database written before meters kept a history (schema 1) is read as it
// is by status --db, and upgraded in place, with every meter and call, by
// the daemon that owns it.
func TestSchema1IsUpgraded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meters.db")
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	_, err = db.Exec(schema1)
	require.NoError(t, err, "write a schema 1 database")
	require.NoError(t, db.Close())

	ro, err := sqlite.OpenReadOnly(path)
	require.NoError(t, err, "OpenReadOnly of a schema 1 database")
	got, err := ro.Load()
	require.NoError(t, err, "Load of a schema 1 database, read-only")
	require.Len(t, got, 1)
	require.Len(t, got[0].State.Calls, 2, "calls of a schema 1 database, read-only")
	require.Empty(t, got[0].State.Past, "history of a schema 1 database")
	require.NoError(t, ro.Close())

	s, err := sqlite.Open(path, sqlite.Options{})
	require.NoError(t, err, "Open of a schema 1 database")
	got, err = s.Load()
	require.NoError(t, err, "Load after the upgrade")
	require.Equal(t, "email", got[0].Name)
	require.Equal(t, "1/1s,75/1h,concurrency=1", got[0].Spec.String())
	require.Equal(t, uint64(2), got[0].Grants)
	require.Len(t, got[0].State.Calls, 2, "calls after the upgrade")
	require.NoError(t, s.Close())

	db, err = sql.Open("sqlite", path)
	require.NoError(t, err)
	defer db.Close()
	var version int
	require.NoError(t, db.QueryRow("PRAGMA user_version").Scan(&version))
	require.Equal(t, 3, version, "user_version after the upgrade")
	var past sql.NullString
	require.NoError(t, db.QueryRow("SELECT past FROM meters WHERE name = 'email'").Scan(&past), "the history column exists")
}
