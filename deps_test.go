package rlfs_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDependencies keeps imports pointing down (cmd/rlfs → fsnode → meter ←
// meter/sqlite, meter/redis): the engine imports nothing outside the
// standard library, fsnode knows no store, and nothing but cmd/rlfs imports
// fsnode.
func TestDependencies(t *testing.T) {
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", pkg).Output()
		require.NoError(t, err, "go list -deps %s", pkg)
		var nonstd []string
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			path, std, _ := strings.Cut(line, " ")
			if std != "true" {
				nonstd = append(nonstd, path)
			}
		}
		return nonstd
	}
	for _, d := range deps("./meter") {
		require.Equal(t, "github.com/rlfs/rlfs/meter", d, "meter imports %s; the engine must use the standard library only", d)
	}
	for _, d := range deps("./fsnode") {
		for _, store := range []string{"sqlite", "redis", "rueidis"} {
			require.NotContains(t, d, store, "fsnode imports %s; it must not know the store", d)
		}
	}
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}: {{join .Imports \" \"}}", "./...").Output()
	require.NoError(t, err)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, ": ")
		if pkg == "github.com/rlfs/rlfs/cmd/rlfs" || pkg == "github.com/rlfs/rlfs/fsnode" {
			continue
		}
		require.NotContains(t, strings.Fields(imports), "github.com/rlfs/rlfs/fsnode", "%s imports fsnode; only cmd/rlfs may", pkg)
	}
}
