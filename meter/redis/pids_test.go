package redis

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The process of a thread is resolved once a pidTTL, per thread.
func TestPidCache(t *testing.T) {
	var c pidCache
	calls := 0
	resolve := func(tid int) int { calls++; return tid + 1000 }
	for range 3 {
		require.Equal(t, 1007, c.of(7, resolve))
		require.Equal(t, 1008, c.of(8, resolve))
	}
	require.Equal(t, 2, calls, "resolved once per thread")
	c.mu.Lock()
	e := c.m[7]
	e.at = e.at.Add(-pidTTL)
	c.m[7] = e
	c.mu.Unlock()
	require.Equal(t, 1007, c.of(7, resolve))
	require.Equal(t, 3, calls, "resolved again after pidTTL")
}
