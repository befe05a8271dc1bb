package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// interpreter is a program the suite runs its clients and scripts with,
// resolved once by TestMain to the absolute path of the real executable.
//
// Resolving once matters on machines where the name on PATH is a version
// manager's shim: pyenv's python3 is a bash script that runs pyenv, which
// took 12-17 s to start a Python on a loaded 2-core machine, so every
// deadline that included a client's start-up failed. The real executable
// starts in milliseconds.
type interpreter struct {
	name string // as on PATH: python3, node, bash, sh
	path string // absolute; "" when err is set
	err  error  // why it is missing
}

var (
	python3 = &interpreter{name: "python3"}
	node    = &interpreter{name: "node"}
	bash    = &interpreter{name: "bash"}
	posixSh = &interpreter{name: "sh"}
)

// askTimeout bounds how long an interpreter may take to say where it lives:
// generous, since a shim on a loaded machine is exactly what is being
// bypassed.
const askTimeout = 2 * time.Minute

// resolveInterpreters resolves every interpreter; a missing one fails only
// the tests that need it (see need and optional).
func resolveInterpreters() {
	// The interpreter itself knows its executable, whatever shim (pyenv,
	// asdf, nodenv, volta) started it. Not followed through symlinks: a
	// virtualenv's python3 is a symlink that finds its environment by its
	// own path.
	python3.resolveByAsking("-c", "import sys; print(sys.executable)")
	node.resolveByAsking("-e", "console.log(process.execPath)")
	// Shells are looked up once, not followed through symlinks: bash run as
	// sh (where /bin/sh is bash) behaves as a POSIX shell only under that
	// name.
	bash.resolveByLookPath()
	posixSh.resolveByLookPath()
}

func (in *interpreter) resolveByLookPath() {
	p, err := exec.LookPath(in.name)
	if err == nil {
		p, err = filepath.Abs(p)
	}
	if err != nil {
		in.err = fmt.Errorf("%s not found on PATH: %w", in.name, err)
		return
	}
	in.path = p
}

// resolveByAsking runs the interpreter found on PATH with args, which print
// the absolute path of its real executable.
func (in *interpreter) resolveByAsking(args ...string) {
	if in.resolveByLookPath(); in.err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, in.path, args...)
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	took := time.Since(start)
	p := strings.TrimSpace(string(out))
	switch {
	case err != nil:
		in.path, in.err = "", fmt.Errorf("%s %s (after %v): %v: %s", in.path, strings.Join(args, " "), took.Round(time.Millisecond), err, stderr.String())
	case !filepath.IsAbs(p):
		in.path, in.err = "", fmt.Errorf("%s says its executable is %q, not an absolute path", in.path, p)
	default:
		if _, err := os.Stat(p); err != nil {
			in.path, in.err = "", fmt.Errorf("%s says its executable is %s: %w", in.path, p, err)
			return
		}
		if took > time.Second {
			fmt.Fprintf(os.Stderr, "test: %s took %v to start; the suite runs %s directly\n", in.path, took.Round(time.Millisecond), p)
		}
		in.path = p
	}
}

// need returns the interpreter's path. If it is missing, the test is
// skipped, or fails when the environment variable CI is set (as
// requireFUSE does): in CI a missing interpreter is a broken machine.
func (in *interpreter) need(t *testing.T) string {
	t.Helper()
	if in.err == nil {
		return in.path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is needed (CI is set, so this is a failure): %v", in.name, in.err)
	}
	t.Skipf("%s is needed: %v", in.name, in.err)
	return ""
}

// optional reports whether the interpreter is there, for a test that can
// do without it (node, one client among many); under CI a missing one
// fails the test.
func (in *interpreter) optional(t *testing.T) bool {
	t.Helper()
	if in.err == nil {
		return true
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is needed (CI is set, so this is a failure): %v", in.name, in.err)
	}
	t.Logf("%s is missing, its client is left out: %v", in.name, in.err)
	return false
}

// interpreterPATH is $PATH with the directories of the resolved
// interpreters first, for scripts written for users (examples/shell) that
// call an interpreter by name: they get the same one as the suite, not a
// shim.
func interpreterPATH() string {
	var dirs []string
	seen := map[string]bool{}
	for _, in := range []*interpreter{python3, node, bash, posixSh} {
		if in.err != nil {
			continue
		}
		if dir := filepath.Dir(in.path); !seen[dir] {
			seen[dir] = true
			dirs = append(dirs, dir)
		}
	}
	return strings.Join(append(dirs, os.Getenv("PATH")), string(os.PathListSeparator))
}
