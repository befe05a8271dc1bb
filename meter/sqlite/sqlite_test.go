package sqlite_test

import (
	"crypto/sha256"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
	"github.com/rlfs/rlfs/meter/sqlite"
)

func TestConformance(t *testing.T) {
	for _, sync := range []string{"normal", "full"} {
		t.Run(sync, func(t *testing.T) {
			metertest.RunStoreTests(t, func(t *testing.T, dir string) meter.LocalStore {
				s, err := sqlite.Open(filepath.Join(dir, "meters.db"), sqlite.Options{Sync: sync, Mountpoint: "/mnt/rl"})
				require.NoError(t, err, "Open")
				return s
			})
		})
	}
}

// open opens a fresh database in a temporary directory and closes it at
// the end of the test.
func open(t *testing.T, opt sqlite.Options) (*sqlite.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meters.db")
	s, err := sqlite.Open(path, opt)
	require.NoError(t, err, "Open(%s)", path)
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestOpenCreatesWALDatabase(t *testing.T) {
	s, path := open(t, sqlite.Options{})
	require.Equal(t, path, s.Path(), "Path()")
	require.NoError(t, s.CreateMeter("email", meter.DefaultSpec(), meter.DefaultAttr()), "CreateMeter")
	for _, f := range []string{path, path + "-wal", path + ".lock"} {
		require.FileExists(t, f)
	}
	require.NoError(t, s.Close(), "Close")
	require.NoError(t, s.Close(), "Close twice")
	_, err := os.Stat(path + "-wal")
	require.ErrorIs(t, err, fs.ErrNotExist, "the -wal file after Close")

	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	var mode string
	var version int
	require.NoError(t, db.QueryRow("PRAGMA journal_mode").Scan(&mode))
	require.NoError(t, db.QueryRow("PRAGMA user_version").Scan(&version))
	require.Equal(t, "wal", mode, "journal_mode")
	require.Equal(t, 3, version, "user_version")
}

func TestOpenBadSync(t *testing.T) {
	_, err := sqlite.Open(filepath.Join(t.TempDir(), "meters.db"), sqlite.Options{Sync: "sometimes"})
	require.EqualError(t, err, `sqlite: sync level "sometimes": want normal or full`)
}

// TestSecondOpenNamesOwner: flock belongs to an open file description, so a
// second Open fails even in the same process, naming pid and mountpoint.
func TestSecondOpenNamesOwner(t *testing.T) {
	_, path := open(t, sqlite.Options{Mountpoint: "/mnt/rl"})
	_, err := sqlite.Open(path, sqlite.Options{Mountpoint: "/mnt/other"})
	require.ErrorIs(t, err, sqlite.ErrLocked, "second Open")
	want := fmt.Sprintf("sqlite: %s is served by pid %d (mounted at /mnt/rl); stop it or pass --db", path, os.Getpid())
	require.EqualError(t, err, want, "second Open")

	lock, err := os.ReadFile(path + ".lock")
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("pid=%d\nmountpoint=/mnt/rl\n", os.Getpid()), string(lock), "lock file")
}

func TestCloseReleasesLock(t *testing.T) {
	s, path := open(t, sqlite.Options{Mountpoint: "/mnt/a"})
	require.NoError(t, s.Close(), "Close")
	s2, err := sqlite.Open(path, sqlite.Options{Mountpoint: "/mnt/b"})
	require.NoError(t, err, "Open after Close")
	defer s2.Close()
	lock, err := os.ReadFile(path + ".lock")
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("pid=%d\nmountpoint=/mnt/b\n", os.Getpid()), string(lock), "lock file of the new owner")
}

func TestLockedWithoutMountpoint(t *testing.T) {
	_, path := open(t, sqlite.Options{})
	_, err := sqlite.Open(path, sqlite.Options{})
	require.EqualError(t, err, fmt.Sprintf("sqlite: %s is served by pid %d; stop it or pass --db", path, os.Getpid()))
}

func TestLockFileUnreadable(t *testing.T) {
	_, path := open(t, sqlite.Options{Mountpoint: "/mnt/rl"})
	require.NoError(t, os.WriteFile(path+".lock", []byte("garbage"), 0o644))
	_, err := sqlite.Open(path, sqlite.Options{})
	require.ErrorIs(t, err, sqlite.ErrLocked)
	require.EqualError(t, err, fmt.Sprintf("sqlite: %s is served by another process (it holds %s.lock); stop it or pass --db", path, path))
}

// TestSymlinkSharesLock: two names of one database lead to one lock.
func TestSymlinkSharesLock(t *testing.T) {
	_, path := open(t, sqlite.Options{Mountpoint: "/mnt/rl"})
	link := filepath.Join(t.TempDir(), "link.db")
	require.NoError(t, os.Symlink(path, link))
	_, err := sqlite.Open(link, sqlite.Options{})
	require.ErrorIs(t, err, sqlite.ErrLocked, "Open through a symbolic link")
	require.Contains(t, err.Error(), "(mounted at /mnt/rl)")
}

func TestMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "x", "y")
	_, err := sqlite.Open(filepath.Join(dir, "meters.db"), sqlite.Options{})
	require.ErrorIs(t, err, sqlite.ErrNoDir)
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.EqualError(t, err, fmt.Sprintf("sqlite: directory %s does not exist; create it (mkdir -p %s) or pass --db", dir, dir))
	_, err = os.Stat(filepath.Dir(dir))
	require.ErrorIs(t, err, fs.ErrNotExist, "Open created the directory")
}

func TestDirectoryIsAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	_, err := sqlite.Open(filepath.Join(file, "meters.db"), sqlite.Options{})
	require.ErrorIs(t, err, sqlite.ErrNoDir)
	require.Contains(t, err.Error(), "is not a directory")
}

func TestPathIsADirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := sqlite.Open(dir, sqlite.Options{})
	require.ErrorIs(t, err, sqlite.ErrCorrupt)
	require.Contains(t, err.Error(), dir+" is a directory")
}

// untouched checks that Open refuses path with kind and a message
// containing msg, and leaves the directory as it was.
func untouched(t *testing.T, path string, kind error, msg string) {
	t.Helper()
	dir := filepath.Dir(path)
	before := snapshotDir(t, dir)
	_, err := sqlite.Open(path, sqlite.Options{})
	require.ErrorIs(t, err, kind, "Open(%s)", path)
	require.Contains(t, err.Error(), msg, "Open(%s)", path)
	require.NotContains(t, err.Error(), "\n", "Open(%s): the message is one line", path)
	require.Equal(t, before, snapshotDir(t, dir), "files after a refused Open")
}

// snapshotDir returns each file of dir with the SHA-256 of its content,
// but only the presence of a -shm file: it is SQLite's shared-memory index
// of the -wal, which every reader updates.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), "-shm") {
			out[e.Name()] = "present"
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		out[e.Name()] = fmt.Sprintf("%d bytes, sha256 %x", len(b), sha256.Sum256(b))
	}
	return out
}

func TestGarbageFileUntouched(t *testing.T) {
	for name, content := range map[string][]byte{
		"text":        []byte("hello, I am not a database\n"),
		"short":       []byte("SQLite"),
		"binary":      []byte(strings.Repeat("\x00\x01\xfe\xff", 4096)),
		"bad-header":  append([]byte("SQLite format 3\x00"), make([]byte, 4080)...),
		"magic-lower": append([]byte("sqlite format 3\x00"), make([]byte, 4080)...),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "meters.db")
			require.NoError(t, os.WriteFile(path, content, 0o644))
			untouched(t, path, sqlite.ErrCorrupt, path+" is not an rlfs database")
		})
	}
}

func TestGarbageFileMessage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meters.db")
	require.NoError(t, os.WriteFile(path, []byte("not a database"), 0o644))
	_, err := sqlite.Open(path, sqlite.Options{})
	require.EqualError(t, err, fmt.Sprintf("sqlite: %s is not an rlfs database (file is not a database); move it aside or pass --db", path))
}

// TestForeignDatabaseUntouched: a SQLite database of another program is
// refused, byte for byte as it was, and no lock file is left beside it.
func TestForeignDatabaseUntouched(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	_, err = db.Exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'ann')")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	untouched(t, path, sqlite.ErrCorrupt, path+" is not an rlfs database (it holds tables users but no rlfs schema); move it aside or pass --db")

	// Even one named like ours is not ours without the schema version.
	db, err = sql.Open("sqlite", path)
	require.NoError(t, err)
	_, err = db.Exec("CREATE TABLE meters (name TEXT); CREATE TABLE calls (meter TEXT)")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	untouched(t, path, sqlite.ErrCorrupt, "is not an rlfs database (it holds tables calls, meters, users but no rlfs schema)")
}

// TestForeignWALDatabaseUntouched: a foreign database in WAL mode, left
// with frames in its -wal by a crash, is refused with its -wal not
// checkpointed into it.
func TestForeignWALDatabaseUntouched(t *testing.T) {
	src := filepath.Join(t.TempDir(), "app.db")
	db, err := sql.Open("sqlite", src)
	require.NoError(t, err)
	defer db.Close()
	db.SetMaxOpenConns(1)
	_, err = db.Exec("PRAGMA journal_mode=WAL; CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'ann')")
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "app.db")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(src + suffix)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path+suffix, b, 0o644))
	}
	fi, err := os.Stat(path + "-wal")
	require.NoError(t, err)
	require.NotZero(t, fi.Size(), "size of the -wal of the crash image")
	untouched(t, path, sqlite.ErrCorrupt, "it holds tables users but no rlfs schema")
}

func TestNewerSchemaUntouched(t *testing.T) {
	s, path := open(t, sqlite.Options{})
	require.NoError(t, s.Close())
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	_, err = db.Exec("PRAGMA user_version = 7")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	untouched(t, path, sqlite.ErrVersion, "was written by a newer rlfs (schema 7, this rlfs knows 3); upgrade rlfs or pass --db")
}

// TestDamagedDatabase: a database whose pages were overwritten is refused
// as damaged, and left as it was.
func TestDamagedDatabase(t *testing.T) {
	s, path := open(t, sqlite.Options{})
	for i := range 200 {
		require.NoError(t, s.CreateMeter(fmt.Sprintf("meter-%03d-%s", i, strings.Repeat("x", 100)), meter.DefaultSpec(), meter.DefaultAttr()))
	}
	require.NoError(t, s.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Greater(t, len(b), 3*4096, "database size")
	for i := 4096 + 8; i < len(b); i += 7 {
		b[i] ^= 0x5a
	}
	require.NoError(t, os.WriteFile(path, b, 0o644))
	untouched(t, path, sqlite.ErrCorrupt, path+" is")
}

func TestEmptyFileBecomesDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meters.db")
	require.NoError(t, os.WriteFile(path, nil, 0o644))
	s, err := sqlite.Open(path, sqlite.Options{})
	require.NoError(t, err, "Open(empty file)")
	require.NoError(t, s.CreateMeter("a", meter.DefaultSpec(), meter.DefaultAttr()))
	require.NoError(t, s.Close())
}

// TestOddPath: a path with characters that mean something in a URI is
// opened as the file it names.
func TestOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a b#c?d=e&f%20")
	require.NoError(t, os.Mkdir(dir, 0o755))
	path := filepath.Join(dir, "m?mode=ro.db")
	s, err := sqlite.Open(path, sqlite.Options{})
	require.NoError(t, err, "Open(%q)", path)
	require.NoError(t, s.CreateMeter("a", meter.DefaultSpec(), meter.DefaultAttr()))
	require.NoError(t, s.Close())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.Equal(t, []string{"m?mode=ro.db"}, names, "files in %q after a clean Close (no WAL, journal or lock file left)", dir)
}

func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root may write anything")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "meters.db")
	s, err := sqlite.Open(path, sqlite.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, os.Chmod(path, 0o444))
	_, err = sqlite.Open(path, sqlite.Options{})
	require.ErrorIs(t, err, sqlite.ErrPermission)
	require.Contains(t, err.Error(), "cannot read and write "+path+" (permission denied)")

	ro := filepath.Join(t.TempDir(), "ro")
	require.NoError(t, os.Mkdir(ro, 0o555))
	_, err = sqlite.Open(filepath.Join(ro, "meters.db"), sqlite.Options{})
	require.ErrorIs(t, err, sqlite.ErrPermission)
	require.Contains(t, err.Error(), "cannot create files in directory "+ro)
}
func TestRegistryConformance(t *testing.T) {
	metertest.RunDeciderTests(t, func(t *testing.T, dir, host string, clk *metertest.Clock) (*meter.Registry, func()) {
		s, err := sqlite.Open(filepath.Join(dir, "meters.db"), sqlite.Options{Mountpoint: "/mnt/rl"})
		require.NoError(t, err, "Open")
		reg, err := meter.OpenLocal(s, meter.Options{Clock: clk})
		require.NoError(t, err, "meter.Open")
		return reg, func() { reg.Close(); require.NoError(t, s.Close()) }
	})
}
