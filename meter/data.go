package meter

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Data files (design §8): small files kept in the store with their meter,
// the original library's "place to persist values". A file's content is
// replaced whole (WriteData), so readers see the old or the new content.

// The bounds of a meter's data files.
const (
	MaxDataFile  = 1 << 20  // bytes in one file
	MaxDataTotal = 16 << 20 // bytes in all the files of a meter
	MaxDataFiles = 1000     // files of a meter
)

// Errors of data files; check them with errors.Is.
var (
	ErrFileTooBig = errors.New("meter: a data file may hold at most 1 MiB")
	ErrNoSpace    = errors.New("meter: a meter's data files may hold at most 16 MiB in 1,000 files")
	ErrBadData    = errors.New("meter: bad data file name")
	// ErrDataNameTooLong is a data file name over 255 bytes (not ErrBadData:
	// it has an errno of its own, ENAMETOOLONG).
	ErrDataNameTooLong = errors.New("meter: data file name longer than 255 bytes")
)

// DataFile is one data file as listed: its name, size and when it last
// changed.
type DataFile struct {
	Name  string
	Size  int64
	MTime time.Time
}

// ValidDataName checks a data file's name: 1 to 255 bytes of UTF-8, not
// "." or "..", no '/' and no control characters. A leading dot is fine
// (editors write .name.swp).
func ValidDataName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrBadData, name, why) }
	switch {
	case name == "" || name == "." || name == "..":
		return bad("give the file a name")
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes; use a shorter name", ErrDataNameTooLong, len(name))
	case !utf8.ValidString(name):
		return bad("not valid UTF-8")
	case strings.ContainsRune(name, '/'):
		return bad("contains '/'; data/ holds no directories")
	case strings.ContainsFunc(name, unicode.IsControl):
		return bad("contains a control character")
	}
	return nil
}

// errRemoved is the error of a data operation on a meter removed (by
// rmdir, here or on another host of a fleet) while a descriptor or a
// directory of its data/ was still open: its files are gone, and a meter
// made again under its name is another meter whose files it must not reach.
func (m *Meter) errRemoved() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.removed {
		return fmt.Errorf("%w: %q was removed", ErrNotExist, m.name)
	}
	return nil
}

// ListData lists the meter's data files, sorted by name.
func (m *Meter) ListData() ([]DataFile, error) {
	if err := m.errRemoved(); err != nil {
		return nil, err
	}
	fs, err := m.dataStore().ListData(m.name)
	if err != nil {
		return nil, fmt.Errorf("%w: list the data of %q: %w", ErrStore, m.name, err)
	}
	return fs, nil
}

// StatData returns a data file's size and time; ErrNotExist if there is none.
func (m *Meter) StatData(name string) (DataFile, error) {
	if err := m.errRemoved(); err != nil {
		return DataFile{Name: name}, err
	}
	f, err := m.dataStore().StatData(m.name, name)
	if err != nil && !errors.Is(err, ErrNotExist) {
		err = fmt.Errorf("%w: stat %q of %q: %w", ErrStore, name, m.name, err)
	}
	return f, err
}

// ReadData returns a data file's content; ErrNotExist if there is none.
func (m *Meter) ReadData(name string) ([]byte, DataFile, error) {
	if err := m.errRemoved(); err != nil {
		return nil, DataFile{}, err
	}
	b, f, err := m.dataStore().ReadData(m.name, name)
	if err != nil && !errors.Is(err, ErrNotExist) {
		err = fmt.Errorf("%w: read %q of %q: %w", ErrStore, name, m.name, err)
	}
	return b, f, err
}

// WriteData replaces a data file's content whole (creating it), durably:
// when it returns, the content survives a crash of the daemon. It fails
// with ErrFileTooBig, ErrNoSpace (the meter's bounds) or ErrBadData, and
// then nothing changes.
func (m *Meter) WriteData(name string, content []byte) error {
	if err := ValidDataName(name); err != nil {
		return err
	}
	if len(content) > MaxDataFile {
		return fmt.Errorf("%w: %q would hold %d bytes", ErrFileTooBig, name, len(content))
	}
	if err := m.errRemoved(); err != nil {
		return err
	}
	err := m.dataStore().WriteData(m.name, name, content, m.reg.clock.Now())
	if err != nil && !errors.Is(err, ErrNoSpace) && !errors.Is(err, ErrNotExist) {
		err = fmt.Errorf("%w: write %q of %q: %w", ErrStore, name, m.name, err)
	}
	return err
}

// RenameData renames a data file within the meter, replacing to if it
// exists; ErrNotExist if from does not.
func (m *Meter) RenameData(from, to string) error {
	if err := ValidDataName(to); err != nil {
		return err
	}
	if err := m.errRemoved(); err != nil {
		return err
	}
	err := m.dataStore().RenameData(m.name, from, to, m.reg.clock.Now())
	if err != nil && !errors.Is(err, ErrNotExist) {
		err = fmt.Errorf("%w: rename %q to %q in %q: %w", ErrStore, from, to, m.name, err)
	}
	return err
}

// DeleteData removes a data file; ErrNotExist if there is none.
func (m *Meter) DeleteData(name string) error {
	if err := m.errRemoved(); err != nil {
		return err
	}
	err := m.dataStore().DeleteData(m.name, name)
	if err != nil && !errors.Is(err, ErrNotExist) {
		err = fmt.Errorf("%w: delete %q of %q: %w", ErrStore, name, m.name, err)
	}
	return err
}

// DataRoom returns how many bytes data file name may hold within the
// meter's bound on all its files (MaxDataTotal less what the others hold;
// MaxDataFile bounds one file apart). A writer checks its copy against it
// as writes arrive, so that ENOSPC comes at the write that overflows, not
// only at close; the store checks again, atomically, when the copy is
// stored.
func (m *Meter) DataRoom(name string) (int64, error) {
	files, err := m.ListData()
	if err != nil {
		return 0, err
	}
	var others int64
	for _, f := range files {
		if f.Name != name {
			others += f.Size
		}
	}
	return max(MaxDataTotal-others, 0), nil
}

func (m *Meter) dataStore() DataStore {
	return m.reg.dec
}

// DataStore keeps data files; every Store does. Each operation is atomic
// and durable to the store's level when it returns. WriteData and
// RenameData enforce MaxDataTotal and MaxDataFiles (ErrNoSpace); the engine
// checks MaxDataFile and names. Unknown files give ErrNotExist.
type DataStore interface {
	ListData(meter string) ([]DataFile, error)
	StatData(meter, name string) (DataFile, error)
	ReadData(meter, name string) ([]byte, DataFile, error)
	WriteData(meter, name string, content []byte, mtime time.Time) error
	RenameData(meter, from, to string, mtime time.Time) error
	DeleteData(meter, name string) error
}

// DataFits reports whether a meter whose data files hold files files and
// bytes bytes, other than the one being written, may take content of
// size more (as a new file when isNew): ErrNoSpace if not. Stores call it
// inside their atomic write.
func DataFits(files int, bytes, size int64, isNew bool) error {
	if isNew && files+1 > MaxDataFiles {
		return fmt.Errorf("%w: it has %d files already", ErrNoSpace, files)
	}
	if bytes+size > MaxDataTotal {
		return fmt.Errorf("%w: %d bytes with this write", ErrNoSpace, bytes+size)
	}
	return nil
}
