package test

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// fleetVisible is how soon a change made on one host (mkdir, rmdir, a
// limits write, chmod, chown) must show on every other host: the issue's
// must-show figure (the contract says 1 s; the kernel may cache an entry
// or an attribute for 1 s of that).
const fleetVisible = 2 * time.Second

// startFleetDaemon mounts the meters (NAME=SPEC) of the fleet store at
// url as host, on a fresh mountpoint, with more flags for rlfs mount. The
// daemon keeps no database: its meters live in the store. Cleanup stops it.
func startFleetDaemon(t *testing.T, url, host string, flags []string, meters ...string) *daemon {
	t.Helper()
	requireFUSE(t)
	dir := t.TempDir()
	if !slices.Contains(flags, "--lease") {
		// Tests of anything but leases must not see a host's lease lapse
		// because a loaded machine delayed its renewals for seconds.
		flags = append([]string{"--lease", "30s"}, flags...)
	}
	d := &daemon{mnt: filepath.Join(dir, "mnt-"+host), meters: meters,
		extra: append([]string{"--store", url, "--host", host, "--journal", filepath.Join(dir, host+".journal")}, flags...)}
	t.Cleanup(func() { d.cleanup(t) })
	d.start(t)
	return d
}

// startRedis starts a redis-server for the test (see redistest.Start).
func startRedis(t *testing.T, args ...string) *redistest.Server {
	t.Helper()
	return redistest.Start(t, args...)
}

// fleet starts n daemons, hosts h1…hn, on one new redis-server, each
// declaring meters; the first one creates them.
func fleet(t *testing.T, n int, flags []string, meters ...string) (*redistest.Server, []*daemon) {
	t.Helper()
	srv := startRedis(t)
	return srv, fleetOn(t, srv, n, flags, meters...)
}

// fleetOn starts n daemons, hosts h1…hn, on the redis-server srv.
func fleetOn(t *testing.T, srv *redistest.Server, n int, flags []string, meters ...string) []*daemon {
	t.Helper()
	var ds []*daemon
	for i := range n {
		ds = append(ds, startFleetDaemon(t, srv.URL(), hostName(i), flags, meters...))
	}
	return ds
}

// hostName names the i-th host (from 0) of a fleet: h1, h2, …
func hostName(i int) string { return fmt.Sprintf("h%d", i+1) }

// host is the --host the daemon was started with ("" outside a fleet).
func (d *daemon) host() string {
	for i, f := range d.extra {
		if f == "--host" && i+1 < len(d.extra) {
			return d.extra[i+1]
		}
	}
	return ""
}

// crash kills the daemon with SIGKILL, waits until it is gone and returns
// when the signal was sent. Its dead mount stays until restartCrashed (or
// cleanup) detaches it, so that the test can look at the store first.
func (d *daemon) crash(t *testing.T) time.Time {
	t.Helper()
	at := time.Now()
	require.NoError(t, d.run.cmd.Process.Kill())
	d.run.awaitKilled(t)
	return at
}

// restartCrashed detaches the dead mount of a daemon that crash ended and
// starts it again on the same mountpoint, store and host name.
func (d *daemon) restartCrashed(t *testing.T) {
	t.Helper()
	require.False(t, d.alive(), "restartCrashed: %s still runs", d.mnt)
	detach(t, d.mnt, d.run.dev)
	d.start(t)
}

// storeCommand sends one command to srv (redistest.Command) until it
// answers: a loaded machine may make one attempt time out.
func storeCommand(t *testing.T, srv *redistest.Server, args ...string) string {
	t.Helper()
	var v string
	waitFor(t, fmt.Sprintf("redis-server answers %q", args), func() bool {
		v = redistest.Command(srv.Addr(), args...)
		return v != ""
	}, nil)
	return v
}

// storeCalls is how many library functions (FCALL) srv has run: what the
// fleet's daemons asked of the store.
func storeCalls(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	info := storeCommand(t, srv, "INFO", "commandstats")
	m := regexp.MustCompile(`cmdstat_fcall:calls=(\d+)`).FindStringSubmatch(info)
	require.NotNil(t, m, "no FCALL in INFO commandstats:\n%s", info)
	n, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	return n
}

// visibleOn polls every daemon of ds until cond holds on it, and returns
// how long after since each first did. It fails the test if one did not
// within fleetVisible of since.
func visibleOn(t *testing.T, ds []*daemon, since time.Time, what string, cond func(d *daemon) bool) []time.Duration {
	t.Helper()
	took := make([]time.Duration, len(ds))
	left := len(ds)
	for left > 0 {
		for i, d := range ds {
			if took[i] == 0 && cond(d) {
				took[i], left = time.Since(since), left-1
			}
		}
		if left > 0 && time.Since(since) > fleetVisible {
			var missing []string
			for i, d := range ds {
				if took[i] == 0 {
					missing = append(missing, d.host())
				}
			}
			t.Fatalf("%s did not show within %v on %s", what, fleetVisible, strings.Join(missing, ", "))
		}
		time.Sleep(pollEvery)
	}
	for i, d := range ds {
		require.LessOrEqual(t, took[i], fleetVisible, "%s showed on %s only after %s", what, d.host(), fmtMS(took[i]))
	}
	return took
}

// fmtDurations formats ds in milliseconds, for logs.
func fmtDurations(ds []time.Duration) string {
	var out []string
	for _, d := range ds {
		out = append(out, fmtMS(d))
	}
	return strings.Join(out, ", ")
}
