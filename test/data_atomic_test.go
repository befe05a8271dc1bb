package test

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Atomic and durable: readers see a data file's old or new content, never
// a mix; a write survives kill -9 of the daemon once its close returned.

// dataWriterScript rewrites a file many times, each time whole, with one
// letter repeated: argv file letter size times.
const dataWriterScript = `
import sys
f, letter, size, times = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4])
for _ in range(times):
    with open(f, "wb") as w:
        w.write(letter * size)
print("done")
`

// dataLetterSizes are the writers of TestDataNoMix: each writes its letter
// with its own length (several FUSE writes of 128 KiB for the larger), so
// that a reader can tell a mix of two by letter or by length.
var dataLetterSizes = map[byte]int{'b': 300 << 10, 'c': 200 << 10, 'd': 1 << 10}

// TestDataNoMix: three Python processes rewrite one file again and again
// (each whole, with its own letter and length) while readers read it: every
// read is one writer's whole content (all bytes one letter, of that
// letter's length) or the initial one, never a mix.
func TestDataNoMix(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	f := d.path("m", "data", "f")
	sizes := map[byte]int{'a': 100}
	for c, n := range dataLetterSizes {
		sizes[c] = n
	}
	require.NoError(t, os.WriteFile(f, repeat('a', sizes['a']), 0o644))
	var writers []*proc
	for c, n := range dataLetterSizes {
		writers = append(writers, startProc(t, python3.need(t), "-c", dataWriterScript, f, string(c), strconv.Itoa(n), "40"))
	}
	seen, bad := readUntil(f, sizes, 4, func() bool { return allExited(writers) })
	for _, w := range writers {
		w.requireSuccess(t, pollTimeout)
	}
	require.Empty(t, bad, "reads that were not one writer's whole content")
	b, err := os.ReadFile(f)
	require.NoError(t, err)
	require.Contains(t, "bcd", string(b[:1]), "the last content is a writer's")
	require.Empty(t, checkWhole(b, sizes))
	t.Logf("FIGURE reads by letter while 3 writers rewrote the file 40 times each: %v", seen)
}

// readUntil runs readers goroutines, each reading file until done(), and
// returns how many reads saw each letter and a description of every read
// that was not whole (at most 10).
func readUntil(file string, sizes map[byte]int, readers int, done func() bool) (map[string]int, []string) {
	var mu sync.Mutex
	seen := map[string]int{}
	var bad []string
	var wg sync.WaitGroup
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done() {
				b, err := os.ReadFile(file)
				why := checkWhole(b, sizes)
				if err != nil {
					why = err.Error()
				}
				mu.Lock()
				if why != "" && len(bad) < 10 {
					bad = append(bad, why)
				} else if why == "" {
					seen[string(b[:1])]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return seen, bad
}

// checkWhole says what is wrong with b, if it is not one letter of sizes
// repeated its size times.
func checkWhole(b []byte, sizes map[byte]int) string {
	if len(b) == 0 {
		return "empty"
	}
	n, ok := sizes[b[0]]
	if !ok || len(b) != n {
		return fmt.Sprintf("%d bytes starting %q", len(b), b[0])
	}
	for i, c := range b {
		if c != b[0] {
			return fmt.Sprintf("%d bytes, %q at 0 and %q at %d", len(b), b[0], c, i)
		}
	}
	return ""
}

func allExited(ps []*proc) bool {
	for _, p := range ps {
		if !p.exited() {
			return false
		}
	}
	return true
}

// TestDataKill9AfterClose: a write whose close returned survives kill -9
// of the daemon at that instant, each of several times; a rename and an
// unlink too. With --sync normal (here) and full (TestDataKill9SyncFull).
func TestDataKill9AfterClose(t *testing.T) {
	t.Parallel()
	kill9AfterClose(t, startDaemon(t, "m=concurrency=1"))
}

// TestDataKill9SyncFull is TestDataKill9AfterClose with --sync full.
func TestDataKill9SyncFull(t *testing.T) {
	t.Parallel()
	kill9AfterClose(t, startDaemonFlags(t, []string{"--sync", "full"}, "m=concurrency=1"))
}

func kill9AfterClose(t *testing.T, d *daemon) {
	t.Helper()
	f := d.path("m", "data", "f")
	for i := range 4 {
		want := fmt.Sprintf("value %d\n", i)
		out, code := sh(t, fmt.Sprintf("echo 'value %d' > %s", i, f))
		require.Equal(t, 0, code, out)
		d.kill9(t)
		d.start(t)
		requireData(t, f, want)
	}
	out, code := sh(t, fmt.Sprintf("echo gone > %s.tmp && mv %s %s.old && rm %s.tmp", f, f, f, f))
	require.Equal(t, 0, code, out)
	d.kill9(t)
	d.start(t)
	require.Equal(t, []string{"f.old"}, d.dataNames(t, "m"), "a rename and an unlink survive kill -9")
	requireData(t, f+".old", "value 3\n")
}

// dataForkScript writes a data file in two parts and, between them, forks
// a child that exits at once: the child's exit closes its inherited copy
// of the descriptor (a FLUSH from a process that wrote nothing). It prints
// what a reader sees then, and after the writer's close; then the same
// for an ftruncate.
const dataForkScript = `
import os, sys, subprocess
f = sys.argv[1]
fd = os.open(f, os.O_WRONLY | os.O_TRUNC)
os.write(fd, b"half")
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
subprocess.run(["true"], check=True)  # fork and exec: the exec closes it too (O_CLOEXEC)
print("during", open(f).read())
os.write(fd, b" and whole")
os.close(fd)
print("after", open(f).read())
fd = os.open(f, os.O_RDWR)
os.ftruncate(fd, 4)  # a change without a write
subprocess.run(["true"], check=True)
print("truncated", open(f).read())
os.close(fd)
print("closed", open(f).read())
`

// TestDataForkedChildStoresNothing: a child that inherits a writer's
// descriptor and closes it without writing (at its exit, or at exec for a
// close-on-exec descriptor) does not store the writer's half-written copy
// (regression: every FLUSH of a writable descriptor stored the copy, so a
// program that started a subprocess mid-write published half a file). The
// same for an ftruncate, stored by the writer's close, not the child's.
func TestDataForkedChildStoresNothing(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	f := d.path("m", "data", "f")
	require.NoError(t, os.WriteFile(f, []byte("old"), 0o644))
	p := startProc(t, python3.need(t), "-c", dataForkScript, f)
	p.requireSuccess(t, pollTimeout)
	require.Equal(t, "during old\nafter half and whole\ntruncated half and whole\nclosed half\n", p.stdout.String())
}
