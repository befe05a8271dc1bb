package metertest_test

import (
	"testing"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

func TestMemStoreConformance(t *testing.T) {
	// A MemStore outlives its Close, as a database file outlives its daemon.
	stores := map[string]*metertest.MemStore{}
	metertest.RunStoreTests(t, func(t *testing.T, dir string) meter.LocalStore {
		s, ok := stores[dir]
		if !ok {
			s = metertest.NewMemStore()
			stores[dir] = s
		}
		return s
	})
}
