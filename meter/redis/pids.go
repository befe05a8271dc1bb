package redis

import (
	"sync"
	"time"
)

// pidCache remembers for a while the process of each thread an open came
// from (Options.ProcessID reads /proc/TID/status: three system calls, a
// tenth of a fleet daemon's CPU per open+close when one thread opens in a
// loop). A thread's process never changes; a thread id is given again only
// after the whole pid space went round since it ended (32768 or more
// threads and processes made), which no machine does within pidTTL. Safe
// for concurrent use; the zero value is empty.
type pidCache struct {
	mu sync.Mutex
	m  map[int]pidSeen
}

type pidSeen struct {
	pid int
	at  time.Time
}

const (
	pidTTL    = time.Second
	pidCached = 4096 // at most this many threads remembered (then forgotten at once)
)

// of is tid's process: remembered, or resolve's.
func (c *pidCache) of(tid int, resolve func(int) int) int {
	now := time.Now()
	c.mu.Lock()
	if e, ok := c.m[tid]; ok && now.Sub(e.at) < pidTTL {
		c.mu.Unlock()
		return e.pid
	}
	c.mu.Unlock()
	pid := resolve(tid)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= pidCached {
		c.m = map[int]pidSeen{}
	}
	c.m[tid] = pidSeen{pid: pid, at: now}
	return pid
}
