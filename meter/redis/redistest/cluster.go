package redistest

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a local Redis Cluster of masters without replicas.
type Cluster struct {
	Nodes []*Server
}

// URL points at the first node; a client finds the others from it.
func (c *Cluster) URL() string { return c.Nodes[0].URL() }

// StartCluster starts n redis-server nodes in cluster mode on free loopback
// ports, shares the 16384 slots among them and waits until the cluster is
// ok. t.Cleanup stops them.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{}
	for range n {
		c.Nodes = append(c.Nodes, Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "yes"))
	}
	per := 16384 / n
	for i, s := range c.Nodes {
		lo, hi := i*per, (i+1)*per-1
		if i == n-1 {
			hi = 16383
		}
		if r := Command(s.Addr(), "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); r != "+OK" {
			t.Fatalf("CLUSTER ADDSLOTSRANGE %d %d on %s: %q", lo, hi, s.Addr(), r)
		}
	}
	for _, s := range c.Nodes[1:] {
		if r := Command(c.Nodes[0].Addr(), "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(s.Port)); r != "+OK" {
			t.Fatalf("CLUSTER MEET %s: %q", s.Addr(), r)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, s := range c.Nodes {
		for !strings.Contains(Command(s.Addr(), "CLUSTER", "INFO"), "cluster_state:ok") {
			if time.Now().After(deadline) {
				t.Fatalf("cluster not ok within 60s on %s: %s", s.Addr(), Command(s.Addr(), "CLUSTER", "INFO"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}
