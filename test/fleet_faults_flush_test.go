package test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// TestFleetFaultFunctionFlush: clients keep calling on two hosts while the
// test flushes Redis's functions (FUNCTION FLUSH, SYNC and ASYNC), its
// scripts (SCRIPT FLUSH), and then flushes the functions back to back for
// 300 ms. Every open still succeeds or waits: the hosts load their function
// library again on "Function not found" and retry (and treat a store that
// keeps losing it as unreachable). No client sees an error, both hosts are
// served again after each round, and the checker finds 0 window or
// concurrency violations across the hosts.
func TestFleetFaultFunctionFlush(t *testing.T) {
	t.Parallel()
	const spec = "20/1s,concurrency=2"
	lim := parseLimits(t, spec)
	srv, ds := fleet(t, 2, nil, "m="+spec)
	load := newLoadGroup(t)
	for _, d := range ds {
		load.add(t, d.path("m", "acquire"), d.host(), 3, "0.020")
	}
	load.waitCalls(t, "h", 4, time.Now())
	flush := func(cmd ...string) {
		require.Equal(t, "+OK", redistest.Command(srv.Addr(), cmd...), "%s", strings.Join(cmd, " "))
	}
	rounds := []struct {
		name string
		do   func()
	}{
		{"FUNCTION FLUSH", func() { flush("FUNCTION", "FLUSH") }},
		{"SCRIPT FLUSH", func() { flush("SCRIPT", "FLUSH") }},
		{"FUNCTION FLUSH SYNC", func() { flush("FUNCTION", "FLUSH", "SYNC") }},
		{"FUNCTION FLUSH ASYNC", func() { flush("FUNCTION", "FLUSH", "ASYNC") }},
		{"FUNCTION FLUSH back to back for 300 ms", func() {
			for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
				flush("FUNCTION", "FLUSH")
			}
		}},
	}
	first := time.Now()
	for _, r := range rounds {
		at := time.Now()
		r.do()
		for _, d := range ds {
			load.waitCalls(t, d.host()+"-", 2, at)
		}
		t.Logf("%s: both hosts served again within %s", r.name, fmtMS(time.Since(at)))
	}
	load.stop(t)
	require.Empty(t, load.failures(t), "a client's open, read or close failed across the flushes")
	calls := load.calls(t)
	checkCalls(t, calls, lim)
	during := 0
	for _, c := range calls {
		if c.grant.After(first) {
			during++
		}
	}
	t.Logf("FIGURE fleet-function-flush: %d calls on 2 hosts (%d during the flushes), 0 failed opens, 0 violations of %s",
		len(calls), during, spec)
}
