package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := Run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "missing command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"mount"}, "missing MOUNTPOINT"},
		{[]string{"mount", "a", "b"}, "one MOUNTPOINT expected"},
		{[]string{"mount", "--meter", "x=0/s", "/tmp/x"}, `"0/s"`},
		{[]string{"mount", "--meter", "x", "/tmp/x"}, "want NAME=SPEC"},
		{[]string{"mount", "--meter", ".x=1/s", "/tmp/x"}, "starts with '.'"},
		{[]string{"mount", "--meter", "x=1/s", "--meter", "x=2/s", "/tmp/x"}, "declared twice"},
		{[]string{"mount", "--sync", "sometimes", "/tmp/x"}, "want normal or full"},
		{[]string{"mount", "--history", "0s", "/tmp/x"}, `--history "0s": must be longer than zero`},
		{[]string{"mount", "--history", "a week", "/tmp/x"}, `--history "a week": bad duration`},
		{[]string{"run", "/tmp/x"}, "want METER_DIR -- CMD"},
		{[]string{"run", "--wait", "1s", "--nonblock", "/tmp/x", "--", "true"}, "exclude each other"},
		{[]string{"status"}, "give either MOUNTPOINT or --db"},
	} {
		_, _, err := run(t, tc.args...)
		require.Error(t, err, "rlfs %v", tc.args)
		require.Contains(t, err.Error(), tc.want, "rlfs %v", tc.args)
		var stderr bytes.Buffer
		require.Equal(t, 2, exitCode(err, &stderr), "exit code of rlfs %v", tc.args)
		require.Contains(t, stderr.String(), "Try: rlfs", "rlfs %v gives a hint", tc.args)
	}
}

func TestHistoryFlag(t *testing.T) {
	c, err := parseMount([]string{"/tmp/x"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, meter.DefaultHistory, c.history, "history without --history")
	c, err = parseMount([]string{"--history", "7d", "/tmp/x"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, 7*24*time.Hour, c.history, "--history 7d")
	cfg := filepath.Join(t.TempDir(), "rlfs.toml")
	require.NoError(t, os.WriteFile(cfg, []byte("history = \"36h\"\n"), 0o644))
	c, err = parseMount([]string{"--config", cfg, "/tmp/x"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, 36*time.Hour, c.history, "history from --config")
	c, err = parseMount([]string{"--config", cfg, "--history", "2h", "/tmp/x"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, 2*time.Hour, c.history, "--history wins over --config")
}

func TestHelpHasSynopsisFlagsAndExamples(t *testing.T) {
	for _, cmd := range []string{"mount", "status", "run"} {
		out, _, err := run(t, cmd, "--help")
		require.ErrorContains(t, err, "help requested")
		require.Equal(t, 0, exitCode(err, &bytes.Buffer{}))
		for _, section := range []string{"SYNOPSIS", "FLAGS", "EXAMPLES"} {
			require.Contains(t, out, section, "rlfs %s --help", cmd)
		}
		require.GreaterOrEqual(t, strings.Count(out, "(default"), 2, "rlfs %s --help names the defaults", cmd)
	}
	out, _, err := run(t, "--help")
	require.NoError(t, err)
	require.Contains(t, out, "rlfs mount")
}

func TestVersion(t *testing.T) {
	out, _, err := run(t, "version")
	require.NoError(t, err)
	require.Regexp(t, `^rlfs \S+ go\S+ linux/\S+\n$`, out)
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rlfs.toml")
	require.NoError(t, os.WriteFile(path, []byte(`
db = "/tmp/x.db"
sync = "full"
[meters]
email = "1/s,75/h"
[meters.api]
limits = ["10/s", "1000/h"]
concurrency = 4
max_wait = "30s"
max_pause = "10m"
`), 0o644))
	c, err := parseMount([]string{"--config", path, "/mnt/rl"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, "/tmp/x.db", c.db)
	require.Equal(t, "full", c.sync)
	require.Len(t, c.meters, 2)
	require.Equal(t, "api", c.meters[0].name)
	require.Equal(t, "10/1s,1000/1h,concurrency=4,max_wait=30s,max_pause=10m", c.meters[0].spec.String())
	require.Equal(t, "1/1s,75/1h,concurrency=1", c.meters[1].spec.String())

	// Flags win over the file.
	c, err = parseMount([]string{"--config", path, "--db", "/tmp/y.db", "--sync", "normal", "/mnt/rl"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, "/tmp/y.db", c.db)
	require.Equal(t, "normal", c.sync)

	// A meter in both is an error, not a silent pick.
	_, err = parseMount([]string{"--config", path, "--meter", "email=2/s", "/mnt/rl"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.ErrorContains(t, err, "declared twice")

	for name, body := range map[string]string{
		"unknown top key":  "dbb = \"x\"\n",
		"unknown item":     "[meters.api]\nlimitz = [\"1/s\"]\n",
		"bad spec":         "[meters]\nemail = \"0/s\"\n",
		"bad name":         "[meters]\n\".hidden\" = \"1/s\"\n",
		"not TOML":         "[meters\n",
		"wrong value type": "[meters]\nemail = 5\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".toml")
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		_, err := parseMount([]string{"--config", p, "/mnt/rl"}, &bytes.Buffer{}, &bytes.Buffer{})
		require.Error(t, err, name)
		require.Contains(t, err.Error(), p, "%s: the error names the file", name)
	}
	_, err = parseMount([]string{"--config", filepath.Join(dir, "missing.toml"), "/mnt/rl"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.ErrorContains(t, err, "does not exist")
}

func TestMetricsLint(t *testing.T) {
	clk := metertest.NewClock()
	met := newMetrics()
	reg, err := meter.OpenLocal(metertest.NewMemStore(), meter.Options{Clock: clk, OnGrant: met.observe, OnRelease: met.observeHold})
	require.NoError(t, err)
	met.reg = reg
	spec, _ := meter.ParseSpec("1/s")
	_, err = reg.Create("email", spec, meter.DefaultAttr())
	require.NoError(t, err)
	tk, err := reg.Get("email").Enqueue(meter.Holder{}, false)
	require.NoError(t, err)
	clk.Advance(time.Second)
	c, err := tk.Result()
	require.NoError(t, err)
	require.NoError(t, reg.Get("email").Release(c.ID))
	problems, err := testutil.GatherAndLint(met.pr)
	require.NoError(t, err)
	require.Empty(t, problems, "metric names and help follow Prometheus conventions")
	n, err := testutil.GatherAndCount(met.pr, "rlfs_grants_total", "rlfs_waiters", "rlfs_holders", "rlfs_wait_seconds", "rlfs_hold_seconds")
	require.NoError(t, err)
	require.Equal(t, 5, n)
}

// The config file takes the fleet's keys, journal among them, with the
// meaning of the flags of the same names; flags win.
func TestConfigFleetKeys(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "rlfs.toml")
	require.NoError(t, os.WriteFile(cfg, []byte(`store = "redis://10.0.0.5:6379"
host = "web1"
lease = "20s"
store_prefix = "team-a"
journal = "/srv/rlfs/web1.journal"
`), 0o644))
	c, err := parseMount([]string{"--config", cfg, "/mnt/rl"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, fleetConfig{store: "redis://10.0.0.5:6379", host: "web1", lease: 20 * time.Second, prefix: "team-a", journal: "/srv/rlfs/web1.journal"}, c.fleet)
	c, err = parseMount([]string{"--config", cfg, "--journal", "/tmp/j", "/mnt/rl"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, "/tmp/j", c.fleet.journal, "--journal wins over the file")
}

// rlfs mount --help names every spec item and every config key.
func TestMountHelpNamesItemsAndKeys(t *testing.T) {
	out, _, _ := run(t, "mount", "--help")
	for _, s := range []string{"units:N/PER", "units:rate=N/PER", "units:burst=B", "max_waiters=N",
		"history", "store_prefix", "journal", "--journal PATH", "rlfs wait"} {
		require.Contains(t, out, s)
	}
}

// The config file shown in docs/operations.md loads as it is.
func TestDocConfigSampleLoads(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(b), "```toml\n")
	require.True(t, ok, "docs/operations.md has a ```toml block")
	sample, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	path := filepath.Join(t.TempDir(), "rlfs.toml")
	require.NoError(t, os.WriteFile(path, []byte(sample), 0o644))
	fc, ms, err := loadConfig(path)
	require.NoError(t, err, "the sample:\n%s", sample)
	require.Equal(t, "1d", fc.History)
	require.Len(t, ms, 2, "the sample's meters")
}
