package test

import (
	"os"
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
