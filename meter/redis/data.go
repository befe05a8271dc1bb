package redis

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// Data files live in the meter's d hash (name -> content) and dm hash
// (name -> "size,mtime"); the library's functions change them atomically,
// within the meter's bounds. Every host reads them from the store, so a
// change on one host is seen by the next read on any other. Their
// durability is the store's (AOF, replicas): see docs/fleet.md.

// ListData lists a meter's data files, sorted by name.
func (s *Store) ListData(name string) ([]meter.DataFile, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	k := keysOf(s.opt.Prefix, name)
	raw, err := s.c.Do(ctx, s.c.B().Hgetall().Key(k[7]).Build()).AsStrMap()
	if err != nil {
		return nil, s.classify("list the data files of "+name, err)
	}
	out := make([]meter.DataFile, 0, len(raw))
	for n, meta := range raw {
		size, mtime := parseDataMeta(meta)
		out = append(out, meter.DataFile{Name: n, Size: size, MTime: mtime})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func parseDataMeta(meta string) (int64, time.Time) {
	sz, mt, _ := strings.Cut(meta, ",")
	size, _ := strconv.ParseInt(sz, 10, 64)
	us, _ := strconv.ParseInt(mt, 10, 64)
	return size, time.UnixMicro(us)
}

// StatData returns a data file's size and time; meter.ErrNotExist if none.
func (s *Store) StatData(meterName, name string) (meter.DataFile, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	k := keysOf(s.opt.Prefix, meterName)
	meta, err := s.c.Do(ctx, s.c.B().Hget().Key(k[7]).Field(name).Build()).ToString()
	if isNil(err) {
		return meter.DataFile{Name: name}, meter.ErrNotExist
	}
	if err != nil {
		return meter.DataFile{Name: name}, s.classify("stat "+name+" of "+meterName, err)
	}
	size, mtime := parseDataMeta(meta)
	return meter.DataFile{Name: name, Size: size, MTime: mtime}, nil
}

// ReadData returns a data file's content; meter.ErrNotExist if none.
func (s *Store) ReadData(meterName, name string) ([]byte, meter.DataFile, error) {
	res, _, err := s.fcall("rlfs1_data_read", meterName, name)
	if err != nil {
		return nil, meter.DataFile{}, err
	}
	if len(res) < 2 {
		return nil, meter.DataFile{}, meter.ErrNotExist
	}
	content, err := res[0].ToString()
	if err != nil {
		return nil, meter.DataFile{}, fmt.Errorf("redis: read %q of %q: %w", name, meterName, err)
	}
	meta, _ := res[1].ToString()
	size, mtime := parseDataMeta(meta)
	return []byte(content), meter.DataFile{Name: name, Size: size, MTime: mtime}, nil
}

// WriteData replaces a data file whole, within the meter's bounds.
func (s *Store) WriteData(meterName, name string, content []byte, mtime time.Time) error {
	_, _, err := s.dataCall("rlfs1_data_write", meterName, name, string(content), strconv.FormatInt(mtime.UnixMicro(), 10),
		strconv.Itoa(meter.MaxDataFiles), strconv.Itoa(meter.MaxDataTotal))
	return err
}

// RenameData renames a data file, replacing the target.
func (s *Store) RenameData(meterName, from, to string, mtime time.Time) error {
	n, _, err := s.dataCall("rlfs1_data_rename", meterName, from, to, strconv.FormatInt(mtime.UnixMicro(), 10))
	if err == nil && n == 0 {
		return meter.ErrNotExist
	}
	return err
}

// DeleteData removes a data file.
func (s *Store) DeleteData(meterName, name string) error {
	n, _, err := s.dataCall("rlfs1_data_delete", meterName, name)
	if err == nil && n == 0 {
		return meter.ErrNotExist
	}
	return err
}

// dataCall runs a data function that replies with one integer.
func (s *Store) dataCall(fn, meterName string, args ...string) (int64, bool, error) {
	return s.fcallScalar(fn, meterName, args...)
}
