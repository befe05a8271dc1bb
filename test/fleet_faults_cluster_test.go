package test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// clusterNode is the index of the node of c (made by StartCluster, which
// shares the slots in equal ranges) that holds meter name's keys: their
// hash tag is {rlfs:NAME}.
func clusterNode(t *testing.T, c *redistest.Cluster, name string) int {
	t.Helper()
	r := redistest.Command(c.Nodes[0].Addr(), "CLUSTER", "KEYSLOT", "{rlfs:"+name+"}:m")
	slot, err := strconv.Atoi(strings.TrimPrefix(r, ":"))
	require.NoError(t, err, "CLUSTER KEYSLOT: %q", r)
	return min(slot/(16384/len(c.Nodes)), len(c.Nodes)-1)
}

// meterOnNode finds a meter name starting with prefix whose keys live on
// node i of c.
func meterOnNode(t *testing.T, c *redistest.Cluster, prefix string, i int) string {
	t.Helper()
	for k := range 1000 {
		if name := fmt.Sprintf("%s%d", prefix, k); clusterNode(t, c, name) == i {
			return name
		}
	}
	t.Fatalf("no meter name %s… on node %d", prefix, i)
	return ""
}

// TestFleetFaultClusterQuota: two daemons on a local 3-node Redis Cluster,
// each given a different node as --store. Three meters whose keys live on
// the three nodes (a window, a concurrency cap, both) are used by clients
// on both hosts: the checker finds 0 violations on each, none lost
// capacity (the cross-host wake-ups, PUBLISHed by the functions, reach the
// other host through the cluster), and a mkdir on one host, landing on a
// fourth slot, shows on the other.
func TestFleetFaultClusterQuota(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	specs := []string{"4/1s,concurrency=0", "concurrency=2", "3/1s,concurrency=1"}
	var meters, names []string
	for i, spec := range specs {
		name := meterOnNode(t, c, "m", i)
		names = append(names, name)
		meters = append(meters, name+"="+spec)
	}
	h1 := startFleetDaemon(t, c.Nodes[0].URL(), "h1", nil, meters...)
	h2 := startFleetDaemon(t, c.Nodes[2].URL(), "h2", nil, meters...)
	loads := make([]*loadGroup, len(names))
	for i, name := range names {
		loads[i] = newLoadGroup(t)
		for _, d := range []*daemon{h1, h2} {
			loads[i].add(t, d.path(name, "acquire"), d.host(), 2, "0.100")
		}
	}
	start := time.Now()
	for _, g := range loads {
		for _, host := range []string{"h1-", "h2-"} {
			g.waitCalls(t, host, 4, start)
		}
	}

	extra := meterOnNode(t, c, "new", 1)
	mkdirAt := time.Now()
	require.NoError(t, os.Mkdir(h1.path(extra), 0o755))
	waitWithin(t, 10*time.Second, "h2 sees the meter made on h1", func() bool {
		_, err := os.Stat(h2.path(extra, "acquire"))
		return err == nil
	}, nil)
	seen := time.Since(mkdirAt)
	require.Less(t, seen, 2*time.Second, "mkdir on h1 shows on h2 within 2 s")

	var report []string
	for i, g := range loads {
		g.stop(t)
		require.Empty(t, g.failures(t), "meter %s: failed opens", names[i])
		calls := g.calls(t)
		lim := parseLimits(t, specs[i])
		checkCalls(t, calls, lim)
		checkCapacity(t, calls, lim)
		report = append(report, fmt.Sprintf("%s (%s, node %d): %d calls", names[i], specs[i], i, len(calls)))
	}
	t.Logf("FIGURE fleet-cluster: 2 hosts on a 3-node cluster (--store at nodes 0 and 2): %s; 0 violations, no capacity lost; "+
		"mkdir on h1 seen on h2 after %s", strings.Join(report, "; "), fmtMS(seen))
}
