package redis

import (
	"context"
	"errors"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// The seam (meter.Decider) over the store's steps. (A thin layer while the
// library is rebuilt for issue 17: the steps do not take contexts yet.)

func (s *Store) Load(ctx context.Context) ([]meter.Stored, error) { return s.v1Load() }
func (s *Store) LoadMeter(ctx context.Context, name string) (meter.Stored, bool, error) {
	return s.v1LoadMeter(name)
}
func (s *Store) CreateMeter(ctx context.Context, name string, spec meter.Spec, attr meter.Attr) error {
	return s.v1CreateMeter(name, spec, attr)
}
func (s *Store) SetSpec(ctx context.Context, name string, spec meter.Spec) error {
	return s.v1SetSpec(name, spec)
}
func (s *Store) SetAttr(ctx context.Context, name string, attr meter.Attr) error {
	return s.v1SetAttr(name, attr)
}
func (s *Store) DeleteMeter(ctx context.Context, name string) error { return s.v1DeleteMeter(name) }
func (s *Store) Enqueue(ctx context.Context, name string, r meter.Request) (meter.Admission, error) {
	return s.v1Enqueue(name, r)
}
func (s *Store) Cancel(ctx context.Context, name string, seq, ticket uint64) (meter.Admission, error) {
	return s.v1Cancel(name, seq, ticket)
}
func (s *Store) Dispatch(ctx context.Context, name string) (meter.Admission, error) {
	return s.v1Dispatch(name)
}
func (s *Store) Release(ctx context.Context, name string, id uint64) error {
	return s.v1Release(name, id)
}
func (s *Store) Revoke(ctx context.Context, name string, id uint64) error {
	return s.v1Revoke(name, id)
}
func (s *Store) Settle(ctx context.Context, name string, id uint64, actual int64) error {
	return s.v1Settle(name, id, actual)
}
func (s *Store) Subscribe(ev meter.Events) { s.v1Subscribe(ev) }

// UnreachableSince says since when the store does not answer.
func (s *Store) UnreachableSince() time.Time { return s.Health().Down }

// View pictures the meter; one call or waiter is found in the lists.
func (s *Store) View(ctx context.Context, name string, q meter.ViewQuery) (meter.View, error) {
	v, err := s.v1View(name, q.Lists || q.Call != 0 || q.Seq != 0)
	if err != nil {
		return v, err
	}
	for _, c := range v.Holders {
		if q.Call != 0 && c.ID == q.Call {
			v.Call = &c
		}
	}
	for _, c := range v.Expired {
		if q.Call != 0 && c.ID == q.Call {
			c.Expired = true
			v.Call = &c
		}
	}
	for i, w := range v.Waiters {
		if q.Seq != 0 && w.Seq == q.Seq {
			v.Waiter, v.Place = &w, i+1
		}
	}
	if !q.Lists {
		v.Holders, v.Expired, v.Waiters = nil, nil, nil
	}
	return v, nil
}

// Pause is not kept by this library yet (the rebuilt one keeps it).
func (s *Store) Pause(ctx context.Context, name string, p meter.Pause) (meter.Pause, error) {
	return meter.Pause{}, errors.New("redis: this store's library keeps no pause yet")
}
