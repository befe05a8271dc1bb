package redis

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// Data files do not take a context (meter.DataStore): their calls run
// within the store's own (s.base), each bounded by the call timeout.

// Data files live in the meter's d hash (name -> content) and dm hash
// (name -> "size,mtime"); the library's functions change them atomically,
// within the meter's bounds. Every host reads them from the store, so a
// change on one host is seen by the next read on any other. Their
// durability is the store's (AOF, replicas): see docs/fleet.md.

// ListData lists a meter's data files, sorted by name.
func (s *Store) ListData(name string) ([]meter.DataFile, error) {
	k := keysOf(s.opt.Prefix, name)
	res, err := s.do(s.base, "list the data files of "+name, s.c.B().Hgetall().Key(k[10]).Build())
	if err != nil {
		return nil, err
	}
	raw, err := res.AsStrMap()
	if err != nil {
		return nil, fmt.Errorf("redis: list the data files of %q: %w", name, err)
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
	k := keysOf(s.opt.Prefix, meterName)
	res, err := s.do(s.base, "stat "+name+" of "+meterName, s.c.B().Hget().Key(k[10]).Field(name).Build())
	if err != nil {
		return meter.DataFile{Name: name}, err
	}
	meta, err := res.ToString()
	if err != nil {
		return meter.DataFile{Name: name}, meter.ErrNotExist
	}
	size, mtime := parseDataMeta(meta)
	return meter.DataFile{Name: name, Size: size, MTime: mtime}, nil
}

// ReadData returns a data file's content; meter.ErrNotExist if none.
func (s *Store) ReadData(meterName, name string) ([]byte, meter.DataFile, error) {
	var rep dataReply
	if _, err := s.fcall(s.base, "rlfs2_data_read", meterName, &rep, name); err != nil {
		return nil, meter.DataFile{}, err
	}
	if !rep.ok {
		return nil, meter.DataFile{}, meter.ErrNotExist
	}
	size, mtime := parseDataMeta(rep.meta)
	return []byte(rep.content), meter.DataFile{Name: name, Size: size, MTime: mtime}, nil
}

// WriteData replaces a data file whole, within the meter's bounds.
func (s *Store) WriteData(meterName, name string, content []byte, mtime time.Time) error {
	_, _, err := s.dataCall("rlfs2_data_write", meterName, name, string(content), strconv.FormatInt(mtime.UnixMicro(), 10),
		strconv.Itoa(meter.MaxDataFiles), strconv.Itoa(meter.MaxDataTotal))
	return err
}

// RenameData renames a data file, replacing the target.
func (s *Store) RenameData(meterName, from, to string, mtime time.Time) error {
	n, _, err := s.dataCall("rlfs2_data_rename", meterName, from, to, strconv.FormatInt(mtime.UnixMicro(), 10))
	if err == nil && n == 0 {
		return meter.ErrNotExist
	}
	return err
}

// DeleteData removes a data file.
func (s *Store) DeleteData(meterName, name string) error {
	n, _, err := s.dataCall("rlfs2_data_delete", meterName, name)
	if err == nil && n == 0 {
		return meter.ErrNotExist
	}
	return err
}

// dataCall runs a data function that replies with one integer.
func (s *Store) dataCall(fn, meterName string, args ...string) (int64, bool, error) {
	var n intReply
	if _, err := s.fcall(s.base, fn, meterName, &n, args...); err != nil {
		return 0, false, err
	}
	return int64(n), true, nil
}
