package test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// The smallest fleet: two hosts on one store see one meter, and a call on
// one host counts on the other.
func TestFleetSmoke(t *testing.T) {
	t.Parallel()
	_, ds := fleet(t, 2, nil, "m=1/1h")
	a, b := ds[0], ds[1]
	require.NoError(t, openNonblock(a.path("m", "acquire")))
	b.waitStatus(t, "m", "window 1/1h", "1 used, 0 free")
	err := openNonblock(b.path("m", "acquire"))
	require.Error(t, err, "a second call in the hour, on the other host")
	require.NoError(t, os.Mkdir(a.path("n"), 0o755))
	waitFor(t, "b sees meter n", func() bool { _, err := os.Stat(b.path("n", "acquire")); return err == nil }, nil)
}

// rlfs status on a fleet's daemon names its host and the store's state.
func TestFleetStatusCommand(t *testing.T) {
	t.Parallel()
	_, ds := fleet(t, 2, nil, "m=1/1h")
	require.NoError(t, openNonblock(ds[0].path("m", "acquire")))
	ds[1].waitStatus(t, "m", "window 1/1h", "1 used, 0 free")
	out, err := exec.Command(rlfsBin, "status", ds[1].mnt).CombinedOutput()
	require.NoError(t, err, "rlfs status: %s", out)
	require.Contains(t, string(out), "host h2, in a fleet with h1; the shared store answers", "rlfs status:\n%s", out)
	require.Contains(t, string(out), "1 of 1/1h", "rlfs status:\n%s", out)
	st := ds[1].status(t, "m")
	require.Equal(t, "h2", st["host"])
	require.Equal(t, "ok", st["store"])
}
