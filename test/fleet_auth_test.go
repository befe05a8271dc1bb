package test

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// TestFleetAuthRefusals pins issue 15's item 8: a wrong or missing Redis
// password was blamed on the address ("WRONGPASS …; check the address and
// that redis-server runs"). rlfs mount now stops before mounting with one
// line that says it is authentication (or an ACL permission), quotes
// Redis's own error, and points at the fix: the URL's password,
// RLFS_STORE_PASSWORD, or the ACL rule of docs/fleet.md.
func TestFleetAuthRefusals(t *testing.T) {
	t.Parallel()
	requireFUSE(t) // a broken rlfs could mount after all
	srv := startRedis(t)
	addr := srv.Addr()
	// An ACL user without FUNCTION LOAD, then a password for the default
	// user (as --requirepass would; set after the start so that the helper
	// can check the server with PING first).
	require.Equal(t, "+OK", redistest.Command(addr, "ACL", "SETUSER", "noload", "on", ">pw", "~*", "&*", "+@all", "-function"))
	require.Equal(t, "+OK", redistest.Command(addr, "CONFIG", "SET", "requirepass", "s3cret"))

	for _, tc := range []struct {
		name string
		url  string
		env  string // RLFS_STORE_PASSWORD
		want []string
	}{
		{"wrong password in the URL", "redis://:wrong@" + addr, "",
			[]string{"authentication failed", "WRONGPASS invalid username-password pair", "check the password in the store URL", "RLFS_STORE_PASSWORD is used only when the URL has none"}},
		{"wrong RLFS_STORE_PASSWORD", "redis://" + addr, "wrong",
			[]string{"authentication failed", "WRONGPASS", "check RLFS_STORE_PASSWORD"}},
		{"no password", "redis://" + addr, "",
			[]string{"the store needs a password and none was given", "(NOAUTH ", "put it in the URL (redis://:PASSWORD@HOST:PORT", "or in RLFS_STORE_PASSWORD"}},
		{"ACL user without FUNCTION LOAD", "redis://noload:pw@" + addr, "",
			[]string{`the ACL user "noload" may not run a command rlfs needs`, "NOPERM", "'function|load'", `docs/fleet.md, "An ACL user for rlfs"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mnt := filepath.Join(t.TempDir(), "mnt")
			prefix := []string{"env", "RLFS_STORE_PASSWORD=" + tc.env, rlfsBin}
			f := runBadMountCmd(t, mnt, prefix, "--store", tc.url, "--host", "h1", "--journal", filepath.Join(t.TempDir(), "j"), "--meter", "m=1/s", mnt)
			require.Equal(t, 1, f.code, f.stderr)
			for _, w := range tc.want {
				require.Contains(t, f.rlfs, w)
			}
			require.NotContains(t, f.rlfs, "check the address", "blamed on the address")
			require.NotContains(t, f.rlfs, "s3cret")
			require.NotContains(t, f.rlfs, ":wrong@", "the URL's password is shown")
		})
	}
}

// TestFleetProtectedModeRefusal: a Redis in protected mode (no password)
// answers a host that is not on its loopback with -DENIED. rlfs mount,
// run in a network namespace of the test's that reaches the server over a
// veth link, stops with Redis's text and the fix, not with "check the
// address".
func TestFleetProtectedModeRefusal(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	link := newNetLink(t)
	srv := startRedis(t, "--bind", "127.0.0.1 "+link.rootAddr, "--protected-mode", "yes")
	url := "redis://" + link.rootAddr + ":" + strconv.Itoa(srv.Port)
	mnt := filepath.Join(t.TempDir(), "mnt")
	f := runBadMountCmd(t, mnt, append(link.wrap(), rlfsBin), "--store", url, "--host", "h1", "--journal", filepath.Join(t.TempDir(), "j"), "--meter", "m=1/s", mnt)
	require.Equal(t, 1, f.code, f.stderr)
	require.Contains(t, f.rlfs, "the store refuses this host (DENIED Redis is running in protected mode")
	require.Contains(t, f.rlfs, "give Redis a password (requirepass, or an ACL user for rlfs: docs/fleet.md) and pass it in the URL or in RLFS_STORE_PASSWORD")
	require.False(t, strings.Contains(f.rlfs, "check the address"), "blamed on the address: %s", f.rlfs)
}
