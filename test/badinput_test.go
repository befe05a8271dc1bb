package test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// failedMount is what a refused `rlfs mount` did.
type failedMount struct {
	code   int
	rlfs   string // the one line starting "rlfs: "
	stderr string
	stdout string
	argv   []string
}

// runBadMount runs rlfs mount with args, which must fail before mounting:
// non-zero exit, exactly one line "rlfs: ..." on stderr (a "Try: ..." hint
// line may follow), nothing on stdout, and mnt not mounted. Should it mount
// after all, it is stopped and the mount removed.
func runBadMount(t *testing.T, mnt string, args ...string) failedMount {
	t.Helper()
	f := runBadMountCmd(t, mnt, nil, args...)
	require.NotEqual(t, 0, f.code)
	return f
}

// badMount is a bad command line for rlfs mount, and what its rlfs: line
// must name; dir is the test's temporary directory, db and mnt paths in it.
type badMount struct {
	name string
	args func(t *testing.T, dir, db, mnt string) []string
	want func(dir, db, mnt string) []string
}

var badMounts = []badMount{
	{"bad spec",
		func(t *testing.T, dir, db, mnt string) []string { return []string{"--db", db, "--meter", "x=0/s", mnt} },
		func(dir, db, mnt string) []string { return []string{`0/s`} }},
	{"unknown spec item",
		func(t *testing.T, dir, db, mnt string) []string {
			return []string{"--db", db, "--meter", "x=2/1s,bogus=3", mnt}
		},
		func(dir, db, mnt string) []string { return []string{"bogus"} }},
	{"meter without NAME=",
		func(t *testing.T, dir, db, mnt string) []string { return []string{"--db", db, "--meter", "2/1s", mnt} },
		func(dir, db, mnt string) []string { return []string{"2/1s", "NAME=SPEC"} }},
	// These two pin a bug: on a flag without its value, rlfs mount also
	// prints the flag package's own "flag needs an argument: -meter" line on
	// stderr and the whole usage on stdout, around its rlfs: line.
	{"missing value",
		func(t *testing.T, dir, db, mnt string) []string { return []string{"--db", db, "--meter"} },
		func(dir, db, mnt string) []string { return []string{"meter"} }},
	{"missing flag value",
		func(t *testing.T, dir, db, mnt string) []string { return []string{"--meter", "x=1/s", "--db"} },
		func(dir, db, mnt string) []string { return []string{"db"} }},
	{"missing mountpoint",
		func(t *testing.T, dir, db, mnt string) []string { return []string{"--db", db, "--meter", "x=1/s"} },
		func(dir, db, mnt string) []string { return []string{"MOUNTPOINT"} }},
	{"bad sync",
		func(t *testing.T, dir, db, mnt string) []string {
			return []string{"--db", db, "--sync", "sometimes", mnt}
		},
		func(dir, db, mnt string) []string { return []string{"sometimes"} }},
	{"missing db dir",
		func(t *testing.T, dir, db, mnt string) []string {
			return []string{"--db", filepath.Join(dir, "nope", "m.db"), "--meter", "x=1/s", mnt}
		},
		func(dir, db, mnt string) []string { return []string{filepath.Join(dir, "nope")} }},
	// Issue 15, item 7: a --host with '/' made its holders vanish from
	// holders/ on every host (the listing failed with EIO), one over 226
	// bytes made ls holders/ fail with EIO everywhere. Refused before
	// anything connects or mounts, as the characters refused before.
	{"host with a slash",
		func(t *testing.T, dir, db, mnt string) []string {
			return []string{"--store", "redis://127.0.0.1:1", "--host", "evil/../x", mnt}
		},
		func(dir, db, mnt string) []string {
			return []string{`--host`, `"evil/../x"`, `contains '/'`, "pass --host NAME"}
		}},
	{"host of 300 bytes",
		func(t *testing.T, dir, db, mnt string) []string {
			return []string{"--store", "redis://127.0.0.1:1", "--host", strings.Repeat("h", 300), mnt}
		},
		func(dir, db, mnt string) []string {
			return []string{"has 300 bytes, more than 226", "255-byte limit of a file name", "pass --host NAME"}
		}},
	{"host ..",
		func(t *testing.T, dir, db, mnt string) []string {
			return []string{"--store", "redis://127.0.0.1:1", "--host", "..", mnt}
		},
		func(dir, db, mnt string) []string { return []string{`".."`, "is not a file name"} }},
	{"empty host",
		func(t *testing.T, dir, db, mnt string) []string {
			return []string{"--store", "redis://127.0.0.1:1", "--host", "", mnt}
		},
		func(dir, db, mnt string) []string { return []string{`""`, "is empty"} }},
	{"host with a newline",
		func(t *testing.T, dir, db, mnt string) []string {
			return []string{"--store", "redis://127.0.0.1:1", "--host", "h1\nforged: 1", mnt}
		},
		func(dir, db, mnt string) []string { return []string{`"h1\nforged: 1"`, "control character"} }},
	{"host with an escape",
		func(t *testing.T, dir, db, mnt string) []string {
			return []string{"--store", "redis://127.0.0.1:1", "--host", "h\x1b[31m", mnt}
		},
		func(dir, db, mnt string) []string { return []string{`"h\x1b[31m"`, "control character"} }},
	{"mountpoint is a file",
		func(t *testing.T, dir, db, mnt string) []string {
			f := filepath.Join(dir, "file")
			require.NoError(t, os.WriteFile(f, nil, 0o644))
			return []string{"--db", db, "--meter", "x=1/s", f}
		},
		func(dir, db, mnt string) []string { return []string{filepath.Join(dir, "file")} }},
}

// TestMountBadInput: every bad input of rlfs mount stops it before mounting
// with one line naming the problem, a non-zero exit, and nothing stored
// overwritten.
func TestMountBadInput(t *testing.T) {
	t.Parallel()
	requireFUSE(t) // a broken rlfs could mount after all
	for _, tc := range badMounts {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			db, mnt := filepath.Join(dir, "m.db"), filepath.Join(dir, "mnt")
			f := runBadMount(t, mnt, tc.args(t, dir, db, mnt)...)
			for _, w := range tc.want(dir, db, mnt) {
				require.Contains(t, f.rlfs, w)
			}
			_, err := os.Stat(filepath.Join(dir, "nope"))
			require.ErrorIs(t, err, os.ErrNotExist, "a missing db dir is not created behind the user's back")
		})
	}

	t.Run("corrupt db", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		db, mnt := filepath.Join(dir, "m.db"), filepath.Join(dir, "mnt")
		garbage := bytes.Repeat([]byte("this is not an rlfs database\n"), 200)
		require.NoError(t, os.WriteFile(db, garbage, 0o600))
		f := runBadMount(t, mnt, "--db", db, "--meter", "x=1/s", mnt)
		require.Contains(t, f.rlfs, db)
		got, err := os.ReadFile(db)
		require.NoError(t, err)
		require.True(t, bytes.Equal(garbage, got), "the corrupt database is left untouched byte for byte")
	})

	t.Run("busy mountpoint", func(t *testing.T) {
		t.Parallel()
		d := startDaemon(t, "m=1/s")
		db := filepath.Join(t.TempDir(), "other.db")
		f := runBadMount(t, filepath.Join(t.TempDir(), "unused"), "--db", db, "--meter", "m=1/s", d.mnt)
		require.Contains(t, f.rlfs, d.mnt)
		require.Contains(t, f.rlfs, "busy")
		_, mounted := mountDev(d.mnt)
		require.True(t, mounted, "the first daemon's mount stays")
		require.Equal(t, "m", d.status(t, "m")["meter"], "the first daemon still serves")
	})

	t.Run("database served by another daemon", func(t *testing.T) {
		t.Parallel()
		d := startDaemon(t, "m=1/s")
		mnt := filepath.Join(t.TempDir(), "mnt2")
		f := runBadMount(t, mnt, "--db", d.db, "--meter", "m=1/s", mnt)
		require.Contains(t, f.rlfs, d.db)
		require.Contains(t, f.rlfs, fmt.Sprintf("pid %d", d.pid()), "names the owner's pid")
		require.Contains(t, f.rlfs, d.mnt, "names the owner's mountpoint")
		require.Equal(t, "m", d.status(t, "m")["meter"], "the first daemon still serves")
	})
}
