package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// Data files through ordinary tools: the shell and coreutils, Python's
// open(), and Go's os package (the test process is the Go client: it
// serves no mount, so it may open files of one).

// TestDataShellTools: echo >, >>, cat, mv, cp, rm, truncate(1), touch,
// `: >` and sed -i (which writes a temporary file, copies the owner and
// mode onto it, and renames it over the original) work on data/ and say
// nothing on stderr.
func TestDataShellTools(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	data := d.path("m", "data")
	run := func(script string) {
		t.Helper()
		p := startProcIn(t, data, nil, posixSh.need(t), "-c", script)
		p.requireSuccess(t, pollTimeout)
		require.Empty(t, p.stderr.String(), "stderr of %q", script)
	}
	run("echo one > f && echo two >> f")
	requireData(t, data+"/f", "one\ntwo\n")
	run("mv f g")
	require.Equal(t, []string{"g"}, d.dataNames(t, "m"))
	requireData(t, data+"/g", "one\ntwo\n")
	run("truncate -s 3 g")
	requireData(t, data+"/g", "one")
	run("truncate -s 5 g")
	requireData(t, data+"/g", "one\x00\x00")
	run("printf 'a\\nb\\n' > s && sed -i s/a/A/ s")
	requireData(t, data+"/s", "A\nb\n")
	run("cp -p s h && rm g && touch e")
	require.Equal(t, []string{"e", "h", "s"}, d.dataNames(t, "m"))
	requireData(t, data+"/h", "A\nb\n")
	requireData(t, data+"/e", "")
	// `: > h` truncates without writing: stored at the last close (the
	// RELEASE after sh exits, which the kernel sends without waiting).
	run(": > h")
	waitFor(t, "h is empty after `: > h`", func() bool { b, err := os.ReadFile(data + "/h"); return err == nil && len(b) == 0 }, nil)
	run("cat s s > two && rm s h e")
	require.Equal(t, []string{"two"}, d.dataNames(t, "m"))
	requireData(t, data+"/two", "A\nb\nA\nb\n")
}

// dataPyScript exercises Python's open() on data/ and prints one line per
// step, "STEP ok CONTENT" or "STEP ERRNONAME".
const dataPyScript = `
import errno, os, sys
os.chdir(sys.argv[1])
def step(name, f):
    try:
        f()
        print(name, "ok", repr(open("f").read()) if os.path.exists("f") else "-")
    except OSError as e:
        print(name, errno.errorcode[e.errno])
def w(): open("f", "w").write("hello")
def a(): open("f", "a").write(" world")
def rplus():
    with open("f", "r+") as f:
        f.seek(1); f.write("E")
def x(): open("f", "x").write("nope")
def replace():
    with open(".f.tmp", "w") as f:
        f.write("replaced")
    os.replace(".f.tmp", "f")
def trunc(): os.truncate("f", 4)
def unlink(): os.unlink("f")
for name, f in [("w", w), ("a", a), ("r+", rplus), ("x", x), ("replace", replace), ("truncate", trunc), ("unlink", unlink)]:
    step(name, f)
print("listing", sorted(os.listdir(".")))
`

// TestDataPythonOpen: Python's open() in modes w, a, r+ and x, an
// editor-style write of a temporary file renamed over the original
// (os.replace), os.truncate and os.unlink.
func TestDataPythonOpen(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	p := startProc(t, python3.need(t), "-c", dataPyScript, d.path("m", "data"))
	p.requireSuccess(t, pollTimeout)
	want := []string{
		`w ok 'hello'`,
		`a ok 'hello world'`,
		`r+ ok 'hEllo world'`,
		`x EEXIST`,
		`replace ok 'replaced'`,
		`truncate ok 'repl'`,
		`unlink ok -`,
		`listing []`,
	}
	require.Equal(t, want, strings.Split(strings.TrimSpace(p.stdout.String()), "\n"), "stderr:\n%s", p.stderr.String())
}

// TestDataGoClient: Go's os package: WriteFile, O_APPEND, WriteAt, and
// what another descriptor reads while a writer has the file open (the old
// content, until the writer's close). The processes that parallel tests
// fork meanwhile inherit the test's descriptors until they exec, and close
// them then: they wrote nothing, so they store nothing (see
// TestDataForkedChildStoresNothing).
func TestDataGoClient(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	f := d.path("m", "data", "f")
	require.NoError(t, os.WriteFile(f, []byte("0123456789"), 0o644))
	require.NoError(t, writeData(f, os.O_WRONLY|os.O_APPEND, []byte("ab")))
	requireData(t, f, "0123456789ab")

	w, err := os.OpenFile(f, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = w.WriteAt([]byte("XY"), 3)
	require.NoError(t, err)
	st, err := w.Stat()
	require.NoError(t, err)
	require.Equal(t, int64(12), st.Size())
	requireData(t, f, "0123456789ab") // another open sees the stored file
	b := make([]byte, 5)
	_, err = w.ReadAt(b, 1)
	require.NoError(t, err)
	require.Equal(t, "12XY5", string(b), "the writer reads its own copy")
	require.NoError(t, w.Close())
	requireData(t, f, "012XY56789ab")

	st, err = os.Stat(f)
	require.NoError(t, err)
	require.Equal(t, int64(12), st.Size())
	require.True(t, st.Mode().IsRegular())
	require.NoError(t, os.Rename(f, f+".old"))
	require.NoError(t, os.Remove(f+".old"))
	require.Empty(t, d.dataNames(t, "m"))
	_, err = os.ReadFile(f)
	requireErrno(t, err, syscall.ENOENT, "read of a removed file")
}

// TestDataStatShowsLatest: a stat shows the stored file, or the copy a
// writer changed and has not stored yet, never the copy of a descriptor
// whose content is stored and was replaced since. Linux does not say which
// descriptor a stat is about, and go-fuse hands the daemon the file's first
// open handle: here a writer kept open after fsync stored its copy, as a
// closed writer's is until the kernel's RELEASE comes (the cause of a
// TestDataGoClient flake: an O_APPEND writer's fstat showed the size
// before its append).
func TestDataStatShowsLatest(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	f := d.path("m", "data", "f")
	old, err := os.OpenFile(f, os.O_RDWR|os.O_CREATE, 0o644)
	require.NoError(t, err)
	defer old.Close()
	_, err = old.Write([]byte("0123456789"))
	require.NoError(t, err)
	require.NoError(t, old.Sync()) // stored; its copy is now the stored file's
	requireData(t, f, "0123456789")

	a, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = a.Write([]byte("ab"))
	require.NoError(t, err)
	st, err := a.Stat()
	require.NoError(t, err)
	require.Equal(t, int64(12), st.Size(), "the appender's fstat: its own copy")
	require.NoError(t, a.Close())
	requireData(t, f, "0123456789ab")
	st, err = os.Stat(f)
	require.NoError(t, err)
	require.Equal(t, int64(12), st.Size(), "a stat after the append's close: the stored file, not the first writer's stored copy")
	st, err = old.Stat()
	require.NoError(t, err)
	require.Equal(t, int64(12), st.Size(), "the first writer's fstat: the stored file")
}

// TestDataTruncateAtClose pins the O_TRUNC and ftruncate rules: an open
// with O_TRUNC does not empty the stored file (readers see the old content
// until the writer's close, which stores what it wrote); an O_TRUNC open
// with no write is stored at the last close (just after close returns); an
// ftruncate is stored by the close, as a write is (truncate(1) opens and
// ftruncates; under GOMAXPROCS=1 a test once read the old content right
// after it exited); a truncate(2) by path is stored at once.
func TestDataTruncateAtClose(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	f := d.path("m", "data", "f")
	require.NoError(t, os.WriteFile(f, []byte("old content"), 0o644))

	w, err := os.OpenFile(f, os.O_WRONLY|os.O_TRUNC, 0)
	require.NoError(t, err)
	requireData(t, f, "old content") // the open did not empty it
	_, err = w.Write([]byte("new"))
	require.NoError(t, err)
	requireData(t, f, "old content") // nor did the write
	require.NoError(t, w.Close())
	requireData(t, f, "new")

	w, err = os.OpenFile(f, os.O_WRONLY|os.O_TRUNC, 0)
	require.NoError(t, err)
	requireData(t, f, "new")
	require.NoError(t, w.Close())
	waitFor(t, "an O_TRUNC open with no write empties the file at its last close", func() bool { return fileIs(f, "") }, nil)

	require.NoError(t, os.WriteFile(f, []byte("0123456789"), 0o644))
	w, err = os.OpenFile(f, os.O_RDWR, 0)
	require.NoError(t, err)
	require.NoError(t, w.Truncate(4))
	st, err := w.Stat()
	require.NoError(t, err)
	require.Equal(t, int64(4), st.Size(), "the truncating writer's fstat: its copy")
	requireData(t, f, "0123456789")
	require.NoError(t, w.Close())
	requireData(t, f, "0123") // stored by the close

	require.NoError(t, os.Truncate(f, 2))
	requireData(t, f, "01")
}

// fileIs reports whether file reads as want.
func fileIs(file, want string) bool {
	b, err := os.ReadFile(file)
	return err == nil && string(b) == want
}

// dataFileList is "name size" per file of dir, for messages.
func dataFileList(dir string) string {
	des, _ := os.ReadDir(dir)
	var s []string
	for _, de := range des {
		if fi, err := de.Info(); err == nil {
			s = append(s, fmt.Sprintf("%s %d", filepath.Base(de.Name()), fi.Size()))
		}
	}
	return strings.Join(s, ", ")
}

// dataTruncateScript: a process with the file open for writing (its
// descriptor fresh: nothing written) truncates it by path to 2 bytes; a
// reader sees that at once. The writer's close then stores nothing more.
const dataTruncateScript = `
import os, sys, time
f = sys.argv[1]
fd = os.open(f, os.O_RDWR)
os.truncate(f, 2)
print(open(f).read())
os.close(fd)
`

// TestDataTruncatePathWhileOpen: truncate(2) by path is stored at once even
// by the thread that just opened the file for writing (regression: within
// a second of the open it truncated that descriptor's copy instead, taken
// for the truncation of an O_TRUNC open, and was stored at its close).
func TestDataTruncatePathWhileOpen(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	f := d.path("m", "data", "f")
	require.NoError(t, os.WriteFile(f, []byte("0123456789"), 0o644))
	p := startProc(t, python3.need(t), "-c", dataTruncateScript, f)
	p.requireSuccess(t, pollTimeout)
	require.Equal(t, "01\n", p.stdout.String())
	requireData(t, f, "01")
}
