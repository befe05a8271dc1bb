package test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
//	# rlfs-test-expect-seconds: Y       (optional: it takes about Y s on an idle machine)
//
// The script reads the mountpoint from $RLFS_MNT and exits 0 on success.
// For each meter with N/PER windows it prints one line per call holding an
// instant inside the call, from which the test checks the meter's spacing:
// the daemon's grant line (what a read of acquire returns: "granted TIME
// waited W meter NAME call N pid P"), or, if it declares one meter only, a
// line starting with the local time of day (HH:MM:SS.mmm) taken while the
// call was in progress.
type exampleHeader struct {
	meters      []string
	min, expect time.Duration // expect 0: not declared
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
		case "expect-seconds":
			h.expect = seconds()
		default:
			t.Fatalf("%s: unknown header %q (known: rlfs-test-meter, rlfs-test-min-seconds, rlfs-test-expect-seconds)", path, sc.Text())
		}
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, h.meters, "%s declares no meter: add a header line such as # rlfs-test-meter: demo=2/1s", path)
	return h
}

// TestExamples runs every recipe in examples/shell against a daemon with the
// meters it declares (the commands of examples/shell/README.md itself are
// TestDocs's) and checks that it exits 0; that every meter's calls,
// as the recipe printed them, are spaced as its windows require (a strict
// lower bound) and number what the meter counted; that it took at least its
// declared minimum (strict) and at most exampleBound(expect).
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
			if h.expect > 0 {
				timeout = exampleBound(h.expect) + pollTimeout
			}
			start := time.Now()
			p := startProcIn(t, t.TempDir(), []string{"RLFS_MNT=" + d.mnt, "PATH=" + interpreterPATH()}, bash.need(t), abs)
			p.requireSuccess(t, timeout)
			elapsed := p.endAt.Sub(start)
			out := p.stdout.String()
			t.Logf("%s took %v (at least %v; about %v on an idle machine)", filepath.Base(script), elapsed.Round(time.Millisecond), h.min, h.expect)
			require.GreaterOrEqual(t, elapsed, h.min, "%s finished too early\nstdout:\n%s", script, out)
			checkExampleCalls(t, d, h, start, out)
			if h.expect > 0 {
				require.LessOrEqual(t, elapsed, exampleBound(h.expect), "%s took too long: over 3× the %v it takes on an idle machine, plus 15 s\nstdout:\n%s",
					script, h.expect, out)
			}
		})
	}
}

// exampleBound is how long a recipe that takes expect on an idle machine may
// take: loaded(expect) and 10 s more. A recipe's own work (dozens of
// short processes: date, sleep, flock, xargs, sh) dominates its time on a
// loaded machine: with two test suites running at once on 2 cores they
// took 4-8× their idle time. The meter's part is proven otherwise: its
// spacing strictly from the recipe's output, its capacity by
// TestNoLostCapacity and TestMixedClients; this bound catches a stall.
func exampleBound(expect time.Duration) time.Duration { return loaded(expect) + 10*time.Second }

var (
	exampleGrantRE = regexp.MustCompile(`granted (\S+) waited \S+ meter (\S+) call \d+`)
	exampleClockRE = regexp.MustCompile(`^(\d\d):(\d\d):(\d\d)\.(\d{3})\b`)
)

// checkExampleCalls finds the calls a recipe printed (see exampleHeader)
// and checks, for each meter with N/PER windows, that they number the
// meter's grants_total and are spaced as its windows require.
func checkExampleCalls(t *testing.T, d *daemon, h exampleHeader, start time.Time, out string) {
	t.Helper()
	calls := map[string][]time.Time{} // meter -> an instant of each call
	var clock []time.Time
	for _, line := range strings.Split(out, "\n") {
		if m := exampleGrantRE.FindStringSubmatch(line); m != nil {
			at, err := time.Parse(time.RFC3339Nano, m[1])
			require.NoError(t, err, "grant time in %q", line)
			calls[m[2]] = append(calls[m[2]], at)
		} else if m := exampleClockRE.FindStringSubmatch(line); m != nil {
			clock = append(clock, clockTime(t, start, m[1:]))
		}
	}
	if len(clock) > 0 {
		require.Len(t, h.meters, 1, "lines starting with a time of day cannot say which of several meters they are calls of: print grant lines\nstdout:\n%s", out)
		name, _, _ := strings.Cut(h.meters[0], "=")
		calls[name] = append(calls[name], clock...)
	}
	for _, m := range h.meters {
		name, spec, _ := strings.Cut(m, "=")
		lim := parseLimits(t, spec)
		if len(lim.windows) == 0 {
			continue // nothing to space; concurrency is the recipe's own check
		}
		total := d.status(t, name)["grants_total"]
		require.Equal(t, total, strconv.Itoa(len(calls[name])),
			"the recipe printed %d calls of %s, the meter counted %s grants: print one line per call (see exampleHeader)\nstdout:\n%s",
			len(calls[name]), name, total, out)
		checkSpacing(t, calls[name], lim, fmt.Sprintf("meter %s=%s", name, spec))
		t.Logf("meter %s: %d calls at %v", name, len(calls[name]), relTimes(sorted(calls[name])))
	}
}

// clockTime is the local time of day hh:mm:ss.mmm (as strings) on the day
// of start, or the next day if it lies well before start (the recipe ran
// across midnight).
func clockTime(t *testing.T, start time.Time, hmsm []string) time.Time {
	t.Helper()
	var n [4]int
	for i, s := range hmsm {
		v, err := strconv.Atoi(s)
		require.NoError(t, err)
		n[i] = v
	}
	y, mo, day := start.Date()
	at := time.Date(y, mo, day, n[0], n[1], n[2], n[3]*int(time.Millisecond), start.Location())
	if at.Before(start.Add(-time.Hour)) {
		at = at.AddDate(0, 0, 1)
	}
	return at
}
