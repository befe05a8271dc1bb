package test

import (
	"path/filepath"
	"testing"

	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// startFleetDaemon mounts the meters (NAME=SPEC) of the fleet store at
// url as host, on a fresh mountpoint, with more flags for rlfs mount. The
// daemon keeps no database: its meters live in the store. Cleanup stops it.
func startFleetDaemon(t *testing.T, url, host string, flags []string, meters ...string) *daemon {
	t.Helper()
	requireFUSE(t)
	dir := t.TempDir()
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
	var ds []*daemon
	for i := range n {
		host := "h" + string(rune('1'+i))
		ds = append(ds, startFleetDaemon(t, srv.URL(), host, flags, meters...))
	}
	return srv, ds
}
