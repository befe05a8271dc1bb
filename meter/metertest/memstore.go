package metertest

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// MemStore is an in-memory meter.LocalStore, for engine tests and as the
// reference the conformance suite checks other stores against. Fail, when
// set, makes every write return it. Safe for concurrent use.
type MemStore struct {
	mu     sync.Mutex
	meters map[string]*meter.Stored
	data   map[string]map[string]memData
	Fail   error
}

var _ meter.LocalStore = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{meters: map[string]*meter.Stored{}} }

func (s *MemStore) get(name string) (*meter.Stored, error) {
	if s.Fail != nil {
		return nil, s.Fail
	}
	m, ok := s.meters[name]
	if !ok {
		return nil, fmt.Errorf("memstore: no meter %q", name)
	}
	return m, nil
}

// Load returns deep copies of every meter, sorted by name.
func (s *MemStore) Load() ([]meter.Stored, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []meter.Stored
	for _, m := range s.meters {
		c := *m
		c.State.Calls = slices.Clone(m.State.Calls)
		c.State.Past = slices.Clone(m.State.Past)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// CreateMeter stores a new meter.
func (s *MemStore) CreateMeter(name string, spec meter.Spec, attr meter.Attr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return s.Fail
	}
	if _, ok := s.meters[name]; ok {
		return fmt.Errorf("memstore: meter %q exists", name)
	}
	s.meters[name] = &meter.Stored{Name: name, Spec: spec, Attr: attr}
	return nil
}

// SetSpec replaces a meter's spec.
func (s *MemStore) SetSpec(name string, spec meter.Spec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.get(name)
	if err == nil {
		m.Spec = spec
	}
	return err
}

// SetPause replaces a meter's pause.
func (s *MemStore) SetPause(name string, p meter.Pause) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.get(name)
	if err == nil {
		m.Pause = p
	}
	return err
}

// SetAttr replaces a meter's attr.
func (s *MemStore) SetAttr(name string, attr meter.Attr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.get(name)
	if err == nil {
		m.Attr = attr
	}
	return err
}

// DeleteMeter removes a meter.
func (s *MemStore) DeleteMeter(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.get(name); err != nil {
		return err
	}
	delete(s.meters, name)
	delete(s.data, name)
	return nil
}

// Grant appends a call.
func (s *MemStore) Grant(name string, c meter.Call, tat, utat time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.get(name)
	if err != nil {
		return err
	}
	m.State.Calls = append(m.State.Calls, c)
	m.State.TAT, m.State.UTAT = tat, utat
	m.State.NextID = c.ID + 1
	m.Grants++
	return nil
}

// Complete records a completion.
func (s *MemStore) Complete(name string, c meter.Call) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.get(name)
	if err != nil {
		return err
	}
	for i := range m.State.Calls {
		if m.State.Calls[i].ID == c.ID {
			m.State.Calls[i].DoneAt = c.DoneAt
			m.State.Calls[i].Expired = c.Expired
			return nil
		}
	}
	return fmt.Errorf("memstore: meter %q has no call %d", name, c.ID)
}

// Revoke forgets a call and takes back its grant.
func (s *MemStore) Revoke(name string, id uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.get(name)
	if err != nil {
		return err
	}
	n := len(m.State.Calls)
	m.State.Calls = slices.DeleteFunc(m.State.Calls, func(c meter.Call) bool { return c.ID == id })
	if len(m.State.Calls) < n {
		m.Grants--
	}
	return nil
}

// Retire drops completed calls at or before cutoff and keeps past.
func (s *MemStore) Retire(name string, cutoff time.Time, byGrant bool, past []meter.Past) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.get(name)
	if err != nil {
		return err
	}
	m.State.Calls = slices.DeleteFunc(m.State.Calls, func(c meter.Call) bool {
		if c.InProgress() {
			return false
		}
		if byGrant {
			return !c.GrantedAt.After(cutoff)
		}
		return !c.DoneAt.After(cutoff)
	})
	m.State.Past = slices.Clone(past)
	return nil
}

// Settle records a call's actual cost.
func (s *MemStore) Settle(name string, id uint64, actual int64, utat time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.get(name)
	if err != nil {
		return err
	}
	for i := range m.State.Calls {
		if m.State.Calls[i].ID == id {
			m.State.Calls[i].Actual, m.State.Calls[i].Settled = actual, true
			m.State.UTAT = utat
			return nil
		}
	}
	return fmt.Errorf("memstore: meter %q has no call %d", name, id)
}

// Close does nothing.
func (s *MemStore) Close() error { return nil }

// memData is one MemStore meter's data files.
type memData struct {
	content []byte
	mtime   time.Time
}

func (s *MemStore) dataOf(name string) (map[string]memData, error) {
	if _, err := s.get(name); err != nil {
		return nil, err
	}
	if s.data == nil {
		s.data = map[string]map[string]memData{}
	}
	d := s.data[name]
	if d == nil {
		d = map[string]memData{}
		s.data[name] = d
	}
	return d, nil
}

// ListData lists a meter's data files, sorted by name.
func (s *MemStore) ListData(meterName string) ([]meter.DataFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.dataOf(meterName)
	if err != nil {
		return nil, err
	}
	var out []meter.DataFile
	for n, f := range d {
		out = append(out, meter.DataFile{Name: n, Size: int64(len(f.content)), MTime: f.mtime})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// StatData returns a data file's size and time.
func (s *MemStore) StatData(meterName, name string) (meter.DataFile, error) {
	_, f, err := s.ReadData(meterName, name)
	return f, err
}

// ReadData returns a copy of a data file.
func (s *MemStore) ReadData(meterName, name string) ([]byte, meter.DataFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.dataOf(meterName)
	if err != nil {
		return nil, meter.DataFile{}, err
	}
	f, ok := d[name]
	if !ok {
		return nil, meter.DataFile{}, meter.ErrNotExist
	}
	return slices.Clone(f.content), meter.DataFile{Name: name, Size: int64(len(f.content)), MTime: f.mtime}, nil
}

// WriteData replaces a data file, within the meter's bounds.
func (s *MemStore) WriteData(meterName, name string, content []byte, mtime time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.dataOf(meterName)
	if err != nil {
		return err
	}
	files, bytes := 0, int64(0)
	for n, f := range d {
		if n != name {
			files++
			bytes += int64(len(f.content))
		}
	}
	_, exists := d[name]
	if err := meter.DataFits(files, bytes, int64(len(content)), !exists); err != nil {
		return err
	}
	d[name] = memData{slices.Clone(content), mtime}
	return nil
}

// RenameData renames a data file, replacing the target.
func (s *MemStore) RenameData(meterName, from, to string, mtime time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.dataOf(meterName)
	if err != nil {
		return err
	}
	f, ok := d[from]
	if !ok {
		return meter.ErrNotExist
	}
	delete(d, from)
	f.mtime = mtime
	d[to] = f
	return nil
}

// DeleteData removes a data file.
func (s *MemStore) DeleteData(meterName, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.dataOf(meterName)
	if err != nil {
		return err
	}
	if _, ok := d[name]; !ok {
		return meter.ErrNotExist
	}
	delete(d, name)
	return nil
}
