package redis

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// openConformance opens registries on one redis-server per suite storage
// dir, with the suite's fake clock: the library's time follows it too. The
// lease is long, since the fake clock jumps.
func openConformance() metertest.OpenRegistry {
	var mu sync.Mutex
	servers := map[string]*redistest.Server{}
	return func(t *testing.T, dir, host string, clk *metertest.Clock) (*meter.Registry, func()) {
		mu.Lock()
		srv, ok := servers[dir]
		if !ok {
			srv = redistest.Start(t)
			servers[dir] = srv
		}
		mu.Unlock()
		s, err := Open(Options{URL: srv.URL(), Host: host, Lease: 1000 * time.Hour, clock: clk})
		require.NoError(t, err, "Open(%s)", host)
		reg, err := engineOpen(s, meter.Options{Clock: clk})
		require.NoError(t, err, "meter.Open(%s)", host)
		return reg, func() { reg.Close(); require.NoError(t, s.Close()) }
	}
}

func TestRegistryConformance(t *testing.T) { metertest.RunDeciderTests(t, openConformance()) }

func TestSharedConformance(t *testing.T) { metertest.RunSharedTests(t, openConformance()) }
