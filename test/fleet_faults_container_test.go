package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// containerScript runs in another mount namespace: it prints that
// namespace, waits for ACQUIRE to appear (the daemon mounts later, and the
// mount propagates in), holds one call until its stdin closes, and says so.
const containerScript = `echo "ns $(readlink /proc/self/ns/mnt)"
while [ ! -e "$1" ]; do sleep 0.01; done
exec 3<"$1" || exit 1
IFS= read -r line <&3
echo "held $(date +%s%N) $line"
while read -r _; do :; done
exec 3<&-
echo released
`

// sharedDir makes a new directory a shared mount (a bind mount of itself,
// made shared), as a Kubernetes node's host path with Bidirectional
// propagation is, and unmounts it in Cleanup.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, args := range [][]string{{"--bind", dir, dir}, {"--make-shared", dir}} {
		out, err := exec.Command("mount", args...).CombinedOutput()
		require.NoError(t, err, "mount %s: %s", strings.Join(args, " "), out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount -l %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestFleetFaultContainerSlaveMount: a process in another mount namespace,
// created with slave propagation (a container with HostToContainer
// propagation) before the daemon mounts, sees the mount appear and uses it:
// its open of acquire is a real call, counted fleet-wide (the other host's
// holders/ lists it, and refuses a second call), and its close completes it.
func TestFleetFaultContainerSlaveMount(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	requireTools(t, "unshare", "mount", "umount")
	dir := sharedDir(t)
	mnt := filepath.Join(dir, "mnt")
	container := startProc(t, "unshare", "--mount", "--propagation", "slave", "sh", "-c", containerScript, "sh",
		filepath.Join(mnt, "m", "acquire"))
	container.waitOutput(t, "ns ")
	own, err := os.Readlink("/proc/self/ns/mnt")
	require.NoError(t, err)
	require.NotContains(t, container.stdout.String(), own, "the container runs in the test's own mount namespace")

	srv := startRedis(t)
	const spec = "m=2/1h"
	h1 := &daemon{mnt: mnt, meters: []string{spec}, extra: []string{"--store", srv.URL(), "--host", "h1", "--journal", filepath.Join(t.TempDir(), "h1.journal")}}
	t.Cleanup(func() { h1.cleanup(t) })
	h1.start(t)
	mounted := time.Now()
	h2 := startFleetDaemon(t, srv.URL(), "h2", nil, spec)

	waitWithin(t, 30*time.Second, "the container's open through the propagated mount is granted", func() bool {
		return strings.Contains(container.stdout.String(), "held ") || container.exited()
	}, func() string { return container.stdout.String() + container.stderr.String() })
	out := container.stdout.String()
	require.Regexp(t, `held \d+ granted`, out, "the container's open: %s", container.stderr.String())
	granted := unixNS(t, strings.Fields(out[strings.Index(out, "held "):])[1]).Sub(mounted)
	holders := h2.waitEntries(t, "m", "holders", 1)
	require.True(t, strings.HasSuffix(holders[0], "@h1"), "h2 lists the container's call as h1's: %q", holders)
	require.ErrorIs(t, openNonblock(h2.path("m", "acquire")), syscall.EAGAIN, "a second call while the container holds (concurrency=1)")

	require.NoError(t, container.stdin.Close())
	container.requireSuccess(t, pollTimeout)
	require.Contains(t, container.stdout.String(), "released")
	h2.waitStatus(t, "m", "window 2/1h", "1 used, 1 free")
	require.NoError(t, openNonblock(h2.path("m", "acquire")), "the second call of the hour, on h2")
	h1.waitStatus(t, "m", "window 2/1h", "2 used, 0 free")
	t.Logf("FIGURE fleet-container: a process in a slave mount namespace made before the mount was granted at %s from when the test saw the mount; "+
		"its call counted fleet-wide (h2: holder @h1, EAGAIN; then 1 of 2/1h used)", fmtMS(granted))
}

// containerLook runs in another mount namespace: it prints that namespace,
// then, for each line on its stdin, what it sees in the directory $1 (one
// line: the names, then END), and "ACQ <grant line>" after a cat of
// $1/m/acquire when the line is "acquire".
const containerLook = `echo "ns $(readlink /proc/self/ns/mnt)"
while IFS= read -r cmd; do
	if [ "$cmd" = acquire ]; then echo "ACQ $(cat "$1/m/acquire" 2>&1)"; continue; fi
	echo "$(ls -A "$1" 2>&1 | tr '\n' ' ')END"
done
`

// privateDir makes a new directory a private mount (a bind mount of
// itself, made private): a host whose / is private, as on a machine
// without systemd as PID 1. Cleanup unmounts it.
func privateDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, args := range [][]string{{"--bind", dir, dir}, {"--make-private", dir}} {
		out, err := exec.Command("mount", args...).CombinedOutput()
		require.NoError(t, err, "mount %s: %s", strings.Join(args, " "), out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount -l %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// look asks a containerLook process what it sees in its directory.
func (p *proc) look(t *testing.T) string {
	t.Helper()
	before := strings.Count(p.stdout.String(), "END\n")
	_, err := p.stdin.Write([]byte("ls\n"))
	require.NoError(t, err)
	waitFor(t, "the container lists the mountpoint", func() bool { return strings.Count(p.stdout.String(), "END\n") > before }, p.stdout.String)
	lines := strings.Split(strings.TrimSuffix(p.stdout.String(), "\n"), "\n")
	return strings.TrimSuffix(lines[len(lines)-1], "END")
}

// TestContainerNeedsSharedMount: on a host whose / is private (docs/fleet.md,
// Containers), a container made with slave propagation before the daemon
// mounts sees an empty mountpoint, while the host sees the meters: nothing
// propagates from a private mount. With the directory above the mountpoint
// made a shared bind mount of itself first, as the doc says, the same
// kind of container sees the mount, and its call is a real, counted call.
// (The mountpoint itself cannot be the bind mount: rlfs mount refuses a
// mountpoint where a filesystem is mounted.)
func TestContainerNeedsSharedMount(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	requireTools(t, "unshare", "mount", "umount", "findmnt")
	host := privateDir(t)
	mnt := filepath.Join(host, "mnt")
	require.NoError(t, os.Mkdir(mnt, 0o755))
	db := filepath.Join(t.TempDir(), "meters.db")

	before := startProc(t, "unshare", "--mount", "--propagation", "slave", "sh", "-c", containerLook, "sh", mnt)
	before.waitOutput(t, "ns ")
	d := newDaemon(t, db, mnt, nil, "m=2/1h")
	d.start(t)
	require.Equal(t, "", before.look(t), "on a private /, the container sees the daemon's mount (nothing should propagate)")
	d.stop(t)

	// The doc's fix: the directory above the mountpoint becomes a shared
	// mount of its own.
	shared := filepath.Join(host, "shared")
	require.NoError(t, os.Mkdir(shared, 0o755))
	for _, args := range [][]string{{"--bind", shared, shared}, {"--make-shared", shared}} {
		out, err := exec.Command("mount", args...).CombinedOutput()
		require.NoError(t, err, "mount %s: %s", strings.Join(args, " "), out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", shared).Run() })
	out, err := exec.Command("findmnt", "-no", "PROPAGATION", shared).CombinedOutput()
	require.NoError(t, err, "findmnt: %s", out)
	require.Equal(t, "shared", strings.TrimSpace(string(out)))
	mnt2 := filepath.Join(shared, "mnt")
	after := startProc(t, "unshare", "--mount", "--propagation", "slave", "sh", "-c", containerLook, "sh", mnt2)
	after.waitOutput(t, "ns ")
	d2 := newDaemon(t, db, mnt2, nil, "m=2/1h")
	d2.start(t)
	require.Equal(t, "m ", after.look(t), "with the shared bind mount, the container sees the meters")
	_, err = after.stdin.Write([]byte("acquire\n"))
	require.NoError(t, err)
	after.waitOutput(t, "ACQ ")
	require.Regexp(t, `ACQ granted \S+ waited \S+ meter m call 1 pid \d+`, after.stdout.String(), "the container's call")
	d2.waitStatus(t, "m", "window 2/1h", "1 used, 1 free")
}
