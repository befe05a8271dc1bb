package rlfs_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDependencies keeps imports pointing down (cmd/rlfs → fsnode → meter ←
// meter/sqlite, meter/redis; meter → meter/rule): the engine imports
// nothing outside the standard library but its rule, the rule nothing at
// all, fsnode knows no store, and nothing but cmd/rlfs imports fsnode.
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
	for _, d := range deps("./meter/rule") {
		require.Equal(t, "github.com/rlfs/rlfs/meter/rule", d, "meter/rule imports %s; the rule and its data use the standard library only", d)
	}
	for _, d := range deps("./meter") {
		require.Contains(t, []string{"github.com/rlfs/rlfs/meter", "github.com/rlfs/rlfs/meter/rule"}, d,
			"meter imports %s; the engine uses the standard library and its rule (meter/rule) only", d)
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

// TestGoModMarksDirectDependencies pins a bug: go.mod listed every
// dependency as "// indirect", so `go mod tidy` rewrote it. A module that a
// package (or test) of rlfs imports must be required without "// indirect",
// and a module required without it must be imported: then `go mod tidy`
// leaves go.mod as it is. It reads go.mod and the imports with the go
// command alone, so it needs no network.
func TestGoModMarksDirectDependencies(t *testing.T) {
	out, err := exec.Command("go", "mod", "edit", "-json").Output()
	require.NoError(t, err, "go mod edit -json")
	var mod struct {
		Module  struct{ Path string }
		Require []struct {
			Path     string
			Indirect bool
		}
	}
	require.NoError(t, json.Unmarshal(out, &mod))
	marked := map[string]bool{} // module path → required as direct
	for _, r := range mod.Require {
		marked[r.Path] = !r.Indirect
	}

	out, err = exec.Command("go", "list", "-f",
		`{{join .Imports "\n"}}{{"\n"}}{{join .TestImports "\n"}}{{"\n"}}{{join .XTestImports "\n"}}`, "./...").Output()
	require.NoError(t, err, "go list ./...")
	imports := strings.Fields(string(out))
	out, err = exec.Command("go", append([]string{"list", "-f", "{{with .Module}}{{.Path}}{{end}}"}, imports...)...).Output()
	require.NoError(t, err, "go list of the imported packages")
	direct := map[string]bool{}
	for _, m := range strings.Fields(string(out)) {
		if m != mod.Module.Path {
			direct[m] = true
		}
	}
	require.NotEmpty(t, direct)
	for m := range direct {
		isDirect, required := marked[m]
		require.True(t, required, "rlfs imports module %s, which go.mod does not require; run go mod tidy", m)
		require.True(t, isDirect, "go.mod marks %s // indirect, but rlfs imports it; run go mod tidy", m)
	}
	for m, isDirect := range marked {
		if isDirect {
			require.True(t, direct[m], "go.mod requires %s as a direct dependency, but nothing in rlfs imports it; run go mod tidy", m)
		}
	}
}
