package test

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// exampleHeader is what a recipe in examples/shell declares in its header
// comments:
//
//	# rlfs-test-meter: NAME=SPEC        (one or more; the meters to mount)
//	# rlfs-test-min-seconds: X          (optional: it must take at least X s)
//	# rlfs-test-max-seconds: Y          (optional: and at most Y s)
//
// The script reads the mountpoint from $RLFS_MNT and exits 0 on success.
type exampleHeader struct {
	meters   []string
	min, max time.Duration // max 0: no bound
}

func parseExampleHeader(t *testing.T, path string) exampleHeader {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var h exampleHeader
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "# rlfs-test-")
		if !ok {
			continue
		}
		key, val, ok := strings.Cut(rest, ":")
		require.True(t, ok, "%s: %q: want # rlfs-test-KEY: VALUE", path, sc.Text())
		val = strings.TrimSpace(val)
		seconds := func() time.Duration {
			s, err := strconv.ParseFloat(val, 64)
			require.NoError(t, err, "%s: %q", path, sc.Text())
			return time.Duration(s * float64(time.Second))
		}
		switch key {
		case "meter":
			require.Contains(t, val, "=", "%s: %q: want NAME=SPEC", path, sc.Text())
			h.meters = append(h.meters, val)
		case "min-seconds":
			h.min = seconds()
		case "max-seconds":
			h.max = seconds()
		default:
			t.Fatalf("%s: unknown header %q (known: rlfs-test-meter, rlfs-test-min-seconds, rlfs-test-max-seconds)", path, sc.Text())
		}
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, h.meters, "%s declares no meter: add a header line such as # rlfs-test-meter: demo=2/1s", path)
	return h
}

// TestExamples runs every recipe in examples/shell against a daemon with the
// meters it declares, and checks that it exits 0 within its declared time
// bounds.
func TestExamples(t *testing.T) {
	t.Parallel()
	scripts, err := filepath.Glob(filepath.Join("..", "examples", "shell", "*.sh"))
	require.NoError(t, err)
	if len(scripts) == 0 {
		t.Fatal("no recipes in examples/shell/*.sh: there must be at least one, and each must declare its meters " +
			"(# rlfs-test-meter: NAME=SPEC) and read the mountpoint from $RLFS_MNT")
	}
	for _, script := range scripts {
		t.Run(filepath.Base(script), func(t *testing.T) {
			t.Parallel()
			h := parseExampleHeader(t, script)
			abs, err := filepath.Abs(script)
			require.NoError(t, err)
			d := startDaemon(t, h.meters...)
			timeout := 120 * time.Second
			if h.max > 0 {
				timeout = h.max + 30*time.Second
			}
			start := time.Now()
			p := startProcIn(t, t.TempDir(), []string{"RLFS_MNT=" + d.mnt, "PATH=" + interpreterPATH()}, bash.need(t), abs)
			p.requireSuccess(t, timeout)
			elapsed := p.endAt.Sub(start)
			t.Logf("%s took %v (declared %v..%v)", filepath.Base(script), elapsed.Round(time.Millisecond), h.min, h.max)
			require.GreaterOrEqual(t, elapsed, h.min, "%s finished too early\nstdout:\n%s", script, p.stdout.String())
			if h.max > 0 {
				require.LessOrEqual(t, elapsed, h.max, "%s took too long\nstdout:\n%s", script, p.stdout.String())
			}
		})
	}
}
