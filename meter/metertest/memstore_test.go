package metertest_test

import (
	"testing"

	"github.com/stretchr/testify/require"

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

func TestRegistryConformance(t *testing.T) {
	stores := map[string]*metertest.MemStore{}
	metertest.RunDeciderTests(t, func(t *testing.T, dir, host string, clk *metertest.Clock) (*meter.Registry, func()) {
		s, ok := stores[dir]
		if !ok {
			s = metertest.NewMemStore()
			stores[dir] = s
		}
		reg, err := meter.OpenLocal(s, meter.Options{Clock: clk})
		require.NoError(t, err)
		return reg, reg.Close
	})
}
