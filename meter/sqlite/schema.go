package sqlite

// The schema, and what Open does to a database it finds: create, check,
// upgrade from schema 1, switch to WAL.

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
)

// schemaVersion is PRAGMA user_version of the schema this package writes.
const schemaVersion = 3

const schema = `
CREATE TABLE meters (
	name       TEXT PRIMARY KEY NOT NULL,
	spec       TEXT NOT NULL,
	mode       INTEGER NOT NULL,
	uid        INTEGER NOT NULL,
	gid        INTEGER NOT NULL,
	tat_ns     INTEGER,
	next_id    INTEGER NOT NULL,
	grants     INTEGER NOT NULL,
	created_ns INTEGER NOT NULL,
	past       BLOB,
	utat_ns    INTEGER,
	pause_until_ns INTEGER,
	pause_by   TEXT,
	pause_from TEXT
) STRICT;
CREATE TABLE calls (
	meter      TEXT NOT NULL,
	id         INTEGER NOT NULL,
	granted_ns INTEGER NOT NULL,
	done_ns    INTEGER,
	expired    INTEGER NOT NULL,
	pid        INTEGER NOT NULL,
	uid        INTEGER NOT NULL,
	gid        INTEGER NOT NULL,
	cmd        TEXT NOT NULL,
	cost       INTEGER NOT NULL DEFAULT 1,
	actual     INTEGER,
	PRIMARY KEY (meter, id)
) STRICT, WITHOUT ROWID;
CREATE TABLE data (
	meter      TEXT NOT NULL,
	name       TEXT NOT NULL,
	content    BLOB NOT NULL,
	mtime_ns   INTEGER NOT NULL,
	PRIMARY KEY (meter, name)
) STRICT;
`

func (s *Store) setup() error {
	ctx := context.Background()
	version, err := inspect(ctx, s.conn, s.path)
	fresh := version == 0
	switch {
	case err != nil:
		return err
	case fresh && s.ro:
		return failf(ErrCorrupt, nil, "sqlite: %s is not an rlfs database yet (it holds no meters); check the path or pass --db", s.path)
	case !s.ro:
		// WAL before the schema: switching a database that has tables
		// makes the next checkpoint fail with SQLITE_LOCKED once.
		if err := s.useWAL(ctx); err != nil {
			return err
		}
	}
	if fresh && !s.ro {
		create := fmt.Sprintf("BEGIN IMMEDIATE; %s PRAGMA user_version = %d; COMMIT", schema, schemaVersion)
		if _, err := s.conn.ExecContext(ctx, create); err != nil {
			s.conn.ExecContext(ctx, "ROLLBACK")
			return classify(s.path, "create the schema of", err)
		}
		version = schemaVersion
	}
	if version == 1 && !s.ro {
		if err := s.upgrade1(ctx); err != nil {
			return err
		}
		version = 2
	}
	if version == 2 && !s.ro {
		if err := s.upgrade2(ctx); err != nil {
			return err
		}
		version = schemaVersion
	}
	if err := s.st.prepare(ctx, s.conn, version); err != nil {
		return failf(ErrCorrupt, err, "sqlite: %s is not an rlfs database (%v); move it aside or pass --db", s.path, err)
	}
	return nil
}

// upgrade1 adds what schema 2 has to a schema 1 database: the history (none),
// the units bucket's TAT (none), and each call's cost (1) and actual cost.
func (s *Store) upgrade1(ctx context.Context) error {
	up := (`BEGIN IMMEDIATE;
		ALTER TABLE meters ADD COLUMN past BLOB;
		ALTER TABLE meters ADD COLUMN utat_ns INTEGER;
		ALTER TABLE calls ADD COLUMN cost INTEGER NOT NULL DEFAULT 1;
		ALTER TABLE calls ADD COLUMN actual INTEGER;
		CREATE TABLE data (meter TEXT NOT NULL, name TEXT NOT NULL, content BLOB NOT NULL,
			mtime_ns INTEGER NOT NULL, PRIMARY KEY (meter, name)) STRICT;
		PRAGMA user_version = 2; COMMIT`)
	if _, err := s.conn.ExecContext(ctx, up); err != nil {
		s.conn.ExecContext(ctx, "ROLLBACK")
		return classify(s.path, "upgrade the schema (1 to 2) of", err)
	}
	return nil
}

// upgrade2 adds the pause of each meter (design §10) to a schema-2
// database, in one transaction.
func (s *Store) upgrade2(ctx context.Context) error {
	up := fmt.Sprintf(`BEGIN IMMEDIATE;
		ALTER TABLE meters ADD COLUMN pause_until_ns INTEGER;
		ALTER TABLE meters ADD COLUMN pause_by TEXT;
		ALTER TABLE meters ADD COLUMN pause_from TEXT;
		PRAGMA user_version = %d; COMMIT`, schemaVersion)
	if _, err := s.conn.ExecContext(ctx, up); err != nil {
		s.conn.ExecContext(ctx, "ROLLBACK")
		return classify(s.path, "upgrade the schema (2 to 3) of", err)
	}
	return nil
}

// inspect reads the schema version and tables of the database at path:
// version 0 when it is empty, an error unless it is rlfs's of a version
// this package knows (1 or 2).
func inspect(ctx context.Context, conn *sql.Conn, path string) (version int, err error) {
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, classify(path, "read", err)
	}
	tables, err := tableNames(ctx, conn)
	if err != nil {
		return 0, classify(path, "read", err)
	}
	switch {
	case version == 0 && len(tables) == 0:
		return 0, nil
	case version > schemaVersion:
		return 0, failf(ErrVersion, nil, "sqlite: %s was written by a newer rlfs (schema %d, this rlfs knows %d); upgrade rlfs or pass --db", path, version, schemaVersion)
	case version < 1 || !hasAll(tables, "meters", "calls"):
		what := "no tables"
		if len(tables) > 0 {
			what = "tables " + strings.Join(tables, ", ")
		}
		return 0, failf(ErrCorrupt, nil, "sqlite: %s is not an rlfs database (it holds %s but no rlfs schema); move it aside or pass --db", path, what)
	}
	return version, nil
}

// useWAL switches the database to WAL mode (a no-op once it is).
func (s *Store) useWAL(ctx context.Context) error {
	var mode string
	if err := s.conn.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return classify(s.path, "switch to WAL", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return failf(ErrPermission, nil, "sqlite: %s cannot use WAL mode (journal mode stays %s); put it on a local file system or pass --db", s.path, mode)
	}
	return nil
}

func tableNames(ctx context.Context, conn *sql.Conn) ([]string, error) {
	rows, err := conn.QueryContext(ctx, "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY name")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

func hasAll(have []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
