package redis

import (
	"context"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// Legacy adapts a Store to the engine of before meter.Decider: the
// meter.SharedStore seam, whose methods take no context. It exists only
// while the engine moves to the new seam (issue 16): delete this file, and
// pass the Store itself to meter.Open, once meter.SharedStore is gone.
func Legacy(s *Store) meter.SharedStore { return legacy{s} }

type legacy struct{ s *Store }

var _ meter.SharedStore = legacy{}

func (l legacy) bg() context.Context { return context.Background() }

func (l legacy) Host() string                  { return l.s.Host() }
func (l legacy) Load() ([]meter.Stored, error) { return l.s.Load(l.bg()) }
func (l legacy) LoadMeter(name string) (meter.Stored, bool, error) {
	return l.s.LoadMeter(l.bg(), name)
}
func (l legacy) CreateMeter(name string, spec meter.Spec, attr meter.Attr) error {
	return l.s.CreateMeter(l.bg(), name, spec, attr)
}
func (l legacy) SetSpec(name string, spec meter.Spec) error { return l.s.SetSpec(l.bg(), name, spec) }
func (l legacy) SetAttr(name string, attr meter.Attr) error { return l.s.SetAttr(l.bg(), name, attr) }
func (l legacy) DeleteMeter(name string) error              { return l.s.DeleteMeter(l.bg(), name) }
func (l legacy) Revoke(name string, id uint64) error        { return l.s.Revoke(l.bg(), name, id) }
func (l legacy) Close() error                               { return l.s.Close() }
func (l legacy) Enqueue(name string, r meter.Request) (meter.Admission, error) {
	return l.s.Enqueue(l.bg(), name, r)
}
func (l legacy) Cancel(name string, seq, ticket uint64) (meter.Admission, error) {
	return l.s.Cancel(l.bg(), name, seq, ticket)
}
func (l legacy) Release(name string, id uint64) error { return l.s.Release(l.bg(), name, id) }
func (l legacy) Settle(name string, id uint64, cost int64) error {
	return l.s.Settle(l.bg(), name, id, cost)
}
func (l legacy) Dispatch(name string) (meter.Admission, error) { return l.s.Dispatch(l.bg(), name) }
func (l legacy) View(name string, lists bool) (meter.View, error) {
	return l.s.View(l.bg(), name, meter.ViewQuery{Lists: lists})
}
func (l legacy) Subscribe(h meter.SharedEvents) { l.s.Subscribe(h) }

func (l legacy) ListData(m string) ([]meter.DataFile, error)     { return l.s.ListData(m) }
func (l legacy) StatData(m, name string) (meter.DataFile, error) { return l.s.StatData(m, name) }
func (l legacy) ReadData(m, name string) ([]byte, meter.DataFile, error) {
	return l.s.ReadData(m, name)
}
func (l legacy) WriteData(m, name string, content []byte, mtime time.Time) error {
	return l.s.WriteData(m, name, content, mtime)
}
func (l legacy) RenameData(m, from, to string, mtime time.Time) error {
	return l.s.RenameData(m, from, to, mtime)
}
func (l legacy) DeleteData(m, name string) error { return l.s.DeleteData(m, name) }
