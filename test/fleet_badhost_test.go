package test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

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
	now := time.Now().UnixMicro()
	slash, long := "evil/../x\nforged: 1", strings.Repeat("w", 300)
	// Records as rlfs.lua writes them: a call in progress
	// (granted,done,expired,ticket,cost,actual,host,inc,pid,uid,gid,held)
	// and a waiter behind it (host,inc,ticket,since,cost,pid,uid,gid).
	storeCommand(t, srv, "HSET", "{rlfs:m}:c", "1000", fmt.Sprintf("%d,0,0,7,1,-1,%s,old,4242,0,0,0", now, slash))
	storeCommand(t, srv, "HSET", "{rlfs:m}:w", "1000", fmt.Sprintf("%s,old,8,%d,1,4343,0,0", long, now))
	storeCommand(t, srv, "ZADD", "{rlfs:m}:q", "1000", "1000")

	for dir, want := range map[string]struct{ name, host string }{
		"holders": {`001000.4242@evil\x2f..\x2fx\nforged: 1`, `evil/../x\nforged: 1`},
		"waiters": {"001000.4343@" + long[:255-len("001000.4343@")], long},
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
