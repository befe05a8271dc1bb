package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// aclFromDoc is the ACL SETUSER command of docs/fleet.md, split into its
// arguments as the shell splits them (the doc's quotes included), after
// "ACL SETUSER".
func aclFromDoc(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "fleet.md"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?s)redis-cli [^\n]*?ACL SETUSER (.*?[^\\])\n`).FindStringSubmatch(string(b))
	require.NotNil(t, m, "docs/fleet.md has no redis-cli … ACL SETUSER command")
	out, err := exec.Command(bash.need(t), "-c", `printf '%s\n' `+m[1]).Output()
	require.NoError(t, err, "the shell splits the doc's ACL SETUSER arguments: %s", m[1])
	return strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
}

// aclLog is what ACL LOG says, for a failure message.
func aclLog(addr string) string {
	host, port, _ := strings.Cut(addr, ":")
	out, _ := exec.Command("redis-cli", "-h", host, "-p", port, "ACL", "LOG").CombinedOutput()
	return string(out)
}

// TestFleetACLUser: the ACL user docs/fleet.md makes (read from the doc) is
// enough for everything rlfs does: two hosts create, configure, chmod and
// chown meters, hold calls, queue waiters that a release on the other host
// wakes, refuse an O_NONBLOCK open, settle weighted calls, read and write
// data files, show status and rlfs status, renew leases, restart, load the
// function library again after FUNCTION FLUSH, remove meters; Redis
// refuses none of their commands (ACL LOG stays empty). INFO commandstats
// shows which commands they sent.
func TestFleetACLUser(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	requireTools(t, "redis-cli")
	rule := aclFromDoc(t)
	require.Equal(t, "rlfs", rule[0], "the doc's user")
	var pass string
	for _, a := range rule {
		if p, ok := strings.CutPrefix(a, ">"); ok {
			pass = p
		}
	}
	require.NotEmpty(t, pass, "the doc's ACL SETUSER gives no >password: %q", rule)
	srv := startRedis(t)
	require.Equal(t, "+OK", storeCommand(t, srv, append([]string{"ACL", "SETUSER"}, rule...)...))
	// The check itself: a command outside the rule is logged.
	out, _ := exec.Command("redis-cli", "-p", strings.TrimPrefix(srv.Addr(), "127.0.0.1:"), "--user", "rlfs", "--pass", pass, "--no-auth-warning", "KEYS", "*").CombinedOutput()
	require.Contains(t, string(out), "NOPERM", "KEYS as the rlfs user")
	require.Equal(t, "*1", storeCommand(t, srv, "ACL", "LOG"), "ACL LOG records the refusal")
	require.Equal(t, "+OK", storeCommand(t, srv, "ACL", "LOG", "RESET"))

	url := "redis://rlfs@" + srv.Addr()
	hosts := []*daemon{aclHost(t, url, pass, "h1"), aclHost(t, url, pass, "h2")}
	h1, h2 := hosts[0], hosts[1]
	aclWorkload(t, srv, h1, h2)
	h1.restart(t)
	h1.requireServes(t, "m")
	require.Equal(t, "+OK", storeCommand(t, srv, "FUNCTION", "FLUSH"))
	h2.requireServes(t, "m") // loads the library again, as the rlfs user
	require.NoError(t, os.Remove(h1.path("m")+"/data/renamed"))
	waitFor(t, "rmdir m (its last release arrived)", func() bool { return syscall.Rmdir(h1.path("m")) == nil }, nil)

	require.Equal(t, "*0", storeCommand(t, srv, "ACL", "LOG"), "Redis refused commands of the rlfs user:\n%s", aclLog(srv.Addr()))
	for _, d := range hosts {
		require.Empty(t, d.logLines("NOPERM"), "%s's log", d.host())
	}
	stats := storeCommand(t, srv, "INFO", "commandstats")
	var used []string
	for _, m := range regexp.MustCompile(`cmdstat_([a-z|_]+):calls=(\d+)`).FindAllStringSubmatch(stats, -1) {
		used = append(used, m[1]+"="+m[2])
	}
	for _, c := range []string{"fcall", "function|load", "publish", "subscribe", "ping", "hello"} {
		require.Contains(t, stats, "cmdstat_"+c+":", "rlfs sent %s", c)
	}
	t.Logf("FIGURE fleet-acl: the doc's ACL user ran two hosts' whole workload; ACL LOG empty; commands sent (this test's admin connection included): %s", strings.Join(used, " "))
}

// aclHost starts a fleet daemon that logs in as the ACL user.
func aclHost(t *testing.T, url, pass, host string) *daemon {
	t.Helper()
	dir := t.TempDir()
	d := &daemon{mnt: filepath.Join(dir, "mnt"), meters: []string{"m=4/1h,units:10/1h,concurrency=1"}, env: []string{"RLFS_STORE_PASSWORD=" + pass},
		extra: []string{"--store", url, "--host", host, "--lease", "3s", "--journal", filepath.Join(dir, host+".journal")}}
	t.Cleanup(func() { d.cleanup(t) })
	d.start(t)
	return d
}

// aclWorkload is what the two hosts do: each kind of call rlfs makes.
func aclWorkload(t *testing.T, srv *redistest.Server, h1, h2 *daemon) {
	t.Helper()
	since := time.Now()
	require.NoError(t, os.Mkdir(h1.path("extra"), 0o755))
	require.NoError(t, os.WriteFile(h1.path("extra", "limits"), []byte("1/1s,units:rate=5/1s,units:burst=5\n"), 0o644))
	require.NoError(t, os.Chmod(h1.path("extra"), 0o750))
	require.NoError(t, os.Chown(h1.path("extra"), 1, 1))
	visibleOn(t, []*daemon{h2}, since, "meter extra", func(d *daemon) bool { _, err := os.Stat(d.path("extra", "acquire")); return err == nil })

	holder := shHold(t, h1.path("m", "acquire"))
	require.ErrorIs(t, openNonblock(h2.path("m", "acquire")), syscall.EAGAIN, "a second call while h1 holds")
	waiter := startProc(t, "sh", "-c", `cat "$1"`, "sh", h2.path("m", "acquire"))
	h1.waitEntries(t, "m", "waiters", 1)
	h1.waitStatus(t, "m", "waiting", "1")
	require.NoError(t, holder.stdin.Close()) // released on h1: h2's waiter goes
	waiter.requireSuccess(t, pollTimeout)
	require.Contains(t, waiter.stdout.String(), "meter m call 2")

	settle := startProc(t, bash.need(t), "-c", `exec 3<>"$1" && head -c 200 <&3 >/dev/null; echo 1 >&3; exec 3>&-`, h1.path("m", "acquire@3"))
	settle.requireSuccess(t, pollTimeout)
	require.NoError(t, os.WriteFile(h1.path("m", "data", "sent"), []byte("1\n"), 0o644))
	f, err := os.OpenFile(h2.path("m", "data", "sent"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("2\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.Rename(h1.path("m", "data", "sent"), h1.path("m", "data", "renamed")))
	waitFor(t, "h2 reads the renamed data file", func() bool {
		b, err := os.ReadFile(h2.path("m", "data", "renamed"))
		return err == nil && string(b) == "1\n2\n"
	}, nil)
	for _, args := range [][]string{{"status", h1.mnt}, {"status", "--json", h2.mnt}} {
		out, err := exec.Command(rlfsBin, args...).CombinedOutput()
		require.NoError(t, err, "rlfs %v: %s", args, out)
	}
	_, err = os.ReadFile(h2.path("m", "status.json"))
	require.NoError(t, err)
	require.Len(t, h2.entries(t, "m", "holders"), 0)
	require.NoError(t, syscall.Rmdir(h2.path("extra")))
	storeCommand(t, srv, "PING")
}
