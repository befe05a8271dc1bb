package sqlite

import (
	"errors"
	"fmt"
	"os"

	"github.com/rlfs/rlfs/meter"
)

// Missing reports whether the database file this store writes is no longer
// at its path: deleted, or replaced by another file.
func (s *Store) Missing() bool {
	s.mu.Lock()
	ident := s.ident
	s.mu.Unlock()
	fi, err := os.Stat(s.path)
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	return ident != nil && !os.SameFile(ident, fi)
}

// Recreate writes a fresh database at the store's path holding all (the
// engine's whole state, see meter.Registry.Rewrite) and switches the store to
// it. It is the answer to a database file deleted while the daemon runs.
func (s *Store) Recreate(all []meter.Stored) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(true); err != nil {
		return err
	}
	// The data files are only in the database: read them from the deleted
	// file, still open, before letting go of it.
	data, derr := s.readAllData()
	if derr != nil {
		data = nil // a damaged file: the meters and calls are rewritten still
	}
	// Let go of the deleted file, and of its WAL and shared memory, which
	// must not be replayed into the new one.
	s.st.close()
	s.conn.Close()
	s.db.Close()
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(s.path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("sqlite: remove stale %s%s: %w", s.path, suffix, err)
		}
	}
	if _, err := os.Stat(s.path); err == nil {
		// Replaced by another file: move that aside rather than lose it.
		aside := s.path + ".replaced"
		if err := os.Rename(s.path, aside); err != nil {
			return fmt.Errorf("sqlite: move aside the file that replaced %s: %w", s.path, err)
		}
	}
	// The new file is the database now: it takes the flock that kept a
	// second daemon off the old one under another name (a hard link).
	if err := s.lock.lockDB(s.path); err != nil {
		s.closed = true
		return err
	}
	n, err := open(s.path, false, s.sync)
	if err != nil {
		s.closed = true
		return err
	}
	s.db, s.conn, s.st, s.ident = n.db, n.conn, n.st, n.ident
	if err := s.j.reopen(s.path); err != nil {
		return fmt.Errorf("sqlite: recreate the grant journal of %s: %w", s.path, err)
	}
	return s.txLocked(func() error {
		for _, r := range data {
			if _, err := s.conn.ExecContext(s.bg(), "INSERT INTO data (meter, name, content, mtime_ns) VALUES (?, ?, ?, ?)", r.meter, r.name, r.content, r.mtime); err != nil {
				return fmt.Errorf("sqlite: rewrite data file %q of %q: %w", r.name, r.meter, err)
			}
		}
		for _, m := range all {
			s.j.setKnown(m.Name, true)
			if _, err := exec(s.st.create, m.Name, m.Spec.String(), m.Attr.Mode, m.Attr.UID, m.Attr.GID, 0); err != nil {
				return fmt.Errorf("sqlite: rewrite meter %q: %w", m.Name, err)
			}
			if err := must1(s.st.setState, nsOf(m.State.TAT), int64(m.State.NextID), int64(m.Grants), encodePast(m.State.Past), nsOf(m.State.UTAT), m.Name); err != nil {
				return fmt.Errorf("sqlite: rewrite meter %q: %w", m.Name, err)
			}
			if err := must1(s.st.setPause, nsOf(m.Pause.Until), m.Pause.By, m.Pause.From, m.Name); err != nil {
				return fmt.Errorf("sqlite: rewrite meter %q: %w", m.Name, err)
			}
			for _, c := range m.State.Calls {
				if _, err := exec(s.st.grantCall, callArgs(m.Name, c)...); err != nil {
					return fmt.Errorf("sqlite: rewrite call %d of %q: %w", c.ID, m.Name, err)
				}
			}
		}
		return nil
	})
}
