package redis

import (
	"context"
	"errors"

	"github.com/rlfs/rlfs/meter"
)

// Pause is not kept by the library yet.
func (s *Store) Pause(ctx context.Context, name string, p meter.Pause) (meter.Pause, error) {
	return meter.Pause{}, errors.New("redis: this store's library keeps no pause yet")
}
