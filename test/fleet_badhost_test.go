package test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFleetBadHostInStoreListed pins the other half of issue 15's item 7:
// a host name that rlfs mount now refuses may already be in the store,
// written by an older daemon. A call of host "evil/../x" plus a newline
// made ls holders/ fail with EIO on every host, and a waiter of a 300-byte
// host did the same to waiters/. Such names are now escaped ('/' as \x2f)
// and cut to 255 bytes: the listings work, and each entry reads with its
// host escaped on one line.
func TestFleetBadHostInStoreListed(t *testing.T) {
	t.Parallel()
	srv, ds := fleet(t, 1, nil, "m=concurrency=1")
	d := ds[0]
	slash, long := "evil/../x\nforged: 1", strings.Repeat("w", 300)
	// A call in progress of host slash, and a waiter behind it of host
	// long, asked of the library as a daemon of each would (rlfs2_acquire:
	// the prefix, the time, host, incarnation, lease µs, ticket, cost,
	// how, who, asked).
	acquire := func(host, ticket, who string) {
		storeCommand(t, srv, "FCALL", "rlfs2_acquire", "1", "{rlfs:m}:m", "rlfs", "", host, "old", "30000000", ticket, "1", "f", who, "0")
	}
	acquire(slash, "7", "4242,0,0")
	acquire(long, "8", "4343,0,0")
	entry := func(dir string) string {
		names := d.entries(t, "m", dir)
		require.Len(t, names, 1, "ls %s", dir)
		return names[0]
	}
	seqOf := func(dir string) string { n := entry(dir); return n[:strings.IndexByte(n, '.')] }
	for dir, want := range map[string]struct{ name, host string }{
		"holders": {seqOf("holders") + `.4242@evil\x2f..\x2fx\nforged: 1`, `evil/../x\nforged: 1`},
		"waiters": {seqOf("waiters") + ".4343@" + long[:255-len(seqOf("waiters")+".4343@")], long},
	} {
		out, err := exec.Command("ls", d.path("m", dir)).CombinedOutput()
		require.NoError(t, err, "ls %s: %s", dir, out)
		require.Equal(t, want.name+"\n", string(out), "ls %s", dir)
		b, err := os.ReadFile(d.path("m", dir, want.name))
		require.NoError(t, err, "read %s/%s", dir, want.name)
		kv := requireOneLinePerKey(t, dir+"/"+want.name, string(b))
		require.Equal(t, want.host, kv["host"], "%s/%s:\n%s", dir, want.name, b)
	}
}
