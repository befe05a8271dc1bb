package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// Data files live in the data table, one row per file. Each change is one
// SQLite transaction, committed before the call returns: it survives a
// crash of the daemon, and with sync "full" a power loss.

// ListData lists a meter's data files, sorted by name.
func (s *Store) ListData(meterName string) ([]meter.DataFile, error) {
	var out []meter.DataFile
	err := s.read(func() error {
		rows, err := s.conn.QueryContext(s.bg(), "SELECT name, length(content), mtime_ns FROM data WHERE meter = ? ORDER BY name", meterName)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var f meter.DataFile
			var ns int64
			if err := rows.Scan(&f.Name, &f.Size, &ns); err != nil {
				return err
			}
			f.MTime = time.Unix(0, ns)
			out = append(out, f)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: list the data files of %q: %w", meterName, err)
	}
	return out, nil
}

// StatData returns a data file's size and time; meter.ErrNotExist if none.
func (s *Store) StatData(meterName, name string) (meter.DataFile, error) {
	f := meter.DataFile{Name: name}
	var ns int64
	err := s.read(func() error {
		return s.conn.QueryRowContext(s.bg(), "SELECT length(content), mtime_ns FROM data WHERE meter = ? AND name = ?", meterName, name).Scan(&f.Size, &ns)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return f, meter.ErrNotExist
	}
	if err != nil {
		return f, fmt.Errorf("sqlite: stat %q of %q: %w", name, meterName, err)
	}
	f.MTime = time.Unix(0, ns)
	return f, nil
}

// ReadData returns a data file's content; meter.ErrNotExist if none.
func (s *Store) ReadData(meterName, name string) ([]byte, meter.DataFile, error) {
	var content []byte
	var ns int64
	err := s.read(func() error {
		return s.conn.QueryRowContext(s.bg(), "SELECT content, mtime_ns FROM data WHERE meter = ? AND name = ?", meterName, name).Scan(&content, &ns)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, meter.DataFile{}, meter.ErrNotExist
	}
	if err != nil {
		return nil, meter.DataFile{}, fmt.Errorf("sqlite: read %q of %q: %w", name, meterName, err)
	}
	return content, meter.DataFile{Name: name, Size: int64(len(content)), MTime: time.Unix(0, ns)}, nil
}

// WriteData replaces a data file in one transaction, within the meter's
// bounds (meter.ErrNoSpace otherwise, and nothing changes).
func (s *Store) WriteData(meterName, name string, content []byte, mtime time.Time) error {
	if content == nil {
		content = []byte{}
	}
	err := s.write(func() error {
		return s.txLocked(func() error {
			if err := s.dataFits(meterName, name, int64(len(content))); err != nil {
				return err
			}
			_, err := s.conn.ExecContext(s.bg(), "INSERT OR REPLACE INTO data (meter, name, content, mtime_ns) VALUES (?, ?, ?, ?)",
				meterName, name, content, mtime.UnixNano())
			return err
		})
	})
	if err != nil && !errors.Is(err, meter.ErrNoSpace) && !errors.Is(err, meter.ErrNotExist) {
		return fmt.Errorf("sqlite: write %q of %q: %w", name, meterName, err)
	}
	return err
}

// dataFits checks the meter's bounds for a write of size bytes to name,
// and that the meter exists, inside the caller's transaction.
func (s *Store) dataFits(meterName, name string, size int64) error {
	if _, ok, err := s.storedNextID(meterName); err != nil || !ok {
		if err == nil {
			err = meter.ErrNotExist
		}
		return err
	}
	var files int
	var bytes sql.NullInt64
	var exists int
	err := s.conn.QueryRowContext(s.bg(), `SELECT count(*), sum(length(content)),
		(SELECT count(*) FROM data WHERE meter = ?1 AND name = ?2) FROM data WHERE meter = ?1 AND name != ?2`,
		meterName, name).Scan(&files, &bytes, &exists)
	if err != nil {
		return err
	}
	return meter.DataFits(files, bytes.Int64, size, exists == 0)
}

// RenameData renames a data file, replacing to, in one transaction.
func (s *Store) RenameData(meterName, from, to string, mtime time.Time) error {
	err := s.write(func() error {
		return s.txLocked(func() error {
			if from != to {
				if _, err := s.conn.ExecContext(s.bg(), "DELETE FROM data WHERE meter = ? AND name = ?", meterName, to); err != nil {
					return err
				}
			}
			res, err := s.conn.ExecContext(s.bg(), "UPDATE data SET name = ?, mtime_ns = ? WHERE meter = ? AND name = ?", to, mtime.UnixNano(), meterName, from)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return meter.ErrNotExist
			}
			return nil
		})
	})
	if err != nil && !errors.Is(err, meter.ErrNotExist) {
		return fmt.Errorf("sqlite: rename %q to %q in %q: %w", from, to, meterName, err)
	}
	return err
}

// DeleteData removes a data file.
func (s *Store) DeleteData(meterName, name string) error {
	err := s.write(func() error {
		res, err := s.conn.ExecContext(s.bg(), "DELETE FROM data WHERE meter = ? AND name = ?", meterName, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return meter.ErrNotExist
		}
		return nil
	})
	if err != nil && !errors.Is(err, meter.ErrNotExist) {
		return fmt.Errorf("sqlite: delete %q of %q: %w", name, meterName, err)
	}
	return err
}

// readAllData returns every data row (for Recreate, from the old file).
func (s *Store) readAllData() ([]dataRow, error) {
	rows, err := s.conn.QueryContext(s.bg(), "SELECT meter, name, content, mtime_ns FROM data")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []dataRow
	for rows.Next() {
		var r dataRow
		if err := rows.Scan(&r.meter, &r.name, &r.content, &r.mtime); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

type dataRow struct {
	meter, name string
	content     []byte
	mtime       int64
}
