package test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// netLink is a veth pair from the root network namespace into a network
// namespace the test made, with link-local addresses (a /30 of
// 169.254.0.0/16) and no other route: a daemon run in the namespace
// (nsenter --net, which keeps the root mount namespace, so its mount is
// the test's) reaches a redis-server of the root namespace only through
// it, and the test cuts it with down. Cleanup deletes both.
type netLink struct {
	name             string // the namespace: /run/netns/NAME
	rootIf, nsIf     string
	rootAddr, nsAddr string
}

// newNetLink makes the namespace and the link, up.
func newNetLink(t *testing.T) *netLink {
	t.Helper()
	requireTools(t, "ip", "nsenter")
	n := rand.IntN(100000)
	// 169.254.1.0–169.254.168.255: clear of 169.254.169.254 and its /24.
	third, fourth := 1+rand.IntN(168), 4*rand.IntN(64)
	l := &netLink{
		name: fmt.Sprintf("rlfs-test-%05d", n), rootIf: fmt.Sprintf("rlv%05da", n), nsIf: fmt.Sprintf("rlv%05db", n),
		rootAddr: fmt.Sprintf("169.254.%d.%d", third, fourth+1), nsAddr: fmt.Sprintf("169.254.%d.%d", third, fourth+2),
	}
	ipCmd(t, "netns", "add", l.name)
	t.Cleanup(func() { ipCleanup(t, "netns", "del", l.name) })
	ipCmd(t, "link", "add", l.rootIf, "type", "veth", "peer", "name", l.nsIf)
	t.Cleanup(func() { ipCleanup(t, "link", "del", l.rootIf) })
	ipCmd(t, "link", "set", l.nsIf, "netns", l.name)
	ipCmd(t, "addr", "add", l.rootAddr+"/30", "dev", l.rootIf)
	ipCmd(t, "-n", l.name, "addr", "add", l.nsAddr+"/30", "dev", l.nsIf)
	ipCmd(t, "-n", l.name, "link", "set", "lo", "up")
	ipCmd(t, "-n", l.name, "link", "set", l.nsIf, "up")
	l.up(t)
	return l
}

// requireTools skips a test when one of the programs it runs is missing,
// or fails it under CI.
func requireTools(t *testing.T, bins ...string) {
	t.Helper()
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is missing (apt-get install iproute2 util-linux); CI is set, so this is a failure", bin)
			}
			t.Skipf("%s is missing (apt-get install iproute2 util-linux)", bin)
		}
	}
}

// wrap runs a command in the namespace.
func (l *netLink) wrap() []string { return []string{"nsenter", "--net=/run/netns/" + l.name} }

// down cuts the link (both ends lose their carrier).
func (l *netLink) down(t *testing.T) {
	t.Helper()
	ipCmd(t, "link", "set", l.rootIf, "down")
}

// up brings the link back and waits until both ends have their carrier.
func (l *netLink) up(t *testing.T) {
	t.Helper()
	ipCmd(t, "link", "set", l.rootIf, "up")
	waitWithin(t, 10*time.Second, "the veth link is up at both ends", func() bool {
		return linkUp(ipOut(t, "-br", "link", "show", l.rootIf)) && linkUp(ipOut(t, "-n", l.name, "-br", "link", "show", l.nsIf))
	}, nil)
}

// linkUp reads the state column of `ip -br link show`.
func linkUp(out string) bool {
	f := strings.Fields(out)
	return len(f) > 1 && f[1] == "UP"
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
}

func ipOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
	return string(out)
}

// ipCleanup runs ip in Cleanup: a failure is reported, not fatal.
func ipCleanup(t *testing.T, args ...string) {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
		t.Errorf("cleanup: ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}
