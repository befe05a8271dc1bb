package test

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// forgedArgs are arguments a caller controls, made to forge lines of its
// holders/ and waiters/ entries (issue 15, item 3): a newline and then
// lines of their own, a tab, an ESC sequence (a terminal colour) and a
// backslash.
var forgedArgs = []string{"x\npid: 1\nuid: 0\nstate: expired\ncall: 999\nhost: evil", "tab\there", "\x1b[31mred\x1b[0m", `back\slash`}

// forgedScript opens $1 (acquire) on descriptor 3, says "held" and holds
// the call until its stdin closes; its other arguments are forgedArgs.
const forgedScript = `exec 3<"$1" && echo held && { read x || :; }`

// startForged starts a shell running forgedScript on acq with forgedArgs,
// and returns it with the command line its entry must show (escaped).
func startForged(t *testing.T, acq string) (*proc, string) {
	t.Helper()
	argv := append([]string{posixSh.need(t), "-c", forgedScript, "sh", acq}, forgedArgs...)
	return startProc(t, argv[0], argv[1:]...), escaped(strings.Join(argv, " "))
}

// escaped is the escaping docs/semantics.md documents: Go's strconv.Quote
// without the quotes, '"' left as it is.
func escaped(s string) string {
	q := strconv.Quote(s)
	return strings.ReplaceAll(q[1:len(q)-1], `\"`, `"`)
}

var entryLineRE = regexp.MustCompile(`^[a-z_]+: `)

// requireOneLinePerKey requires that text is `key: value` lines only, each
// key once, and returns them.
func requireOneLinePerKey(t *testing.T, what, text string) map[string]string {
	t.Helper()
	require.True(t, strings.HasSuffix(text, "\n"), "%s does not end with a newline:\n%s", what, text)
	kv := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		require.Regexp(t, entryLineRE, line, "a line of %s:\n%s", what, text)
		k, v, _ := strings.Cut(line, ": ")
		_, dup := kv[k]
		require.False(t, dup, "key %q twice in %s:\n%s", k, what, text)
		kv[k] = v
	}
	return kv
}

// requireForgedEntry reads the only entry of meterName's dir (holders or
// waiters) on d and requires one line per key, the process's pid, the
// state, and cmd: wantCmd.
func requireForgedEntry(t *testing.T, d *daemon, meterName, dir string, pid int, state, wantCmd string) {
	t.Helper()
	names := d.waitEntries(t, meterName, dir, 1)
	b, err := os.ReadFile(d.path(meterName, dir, names[0]))
	require.NoError(t, err)
	what := dir + "/" + names[0] + " on " + d.mnt
	kv := requireOneLinePerKey(t, what, string(b))
	require.Equal(t, strconv.Itoa(pid), kv["pid"], what)
	require.Equal(t, state, kv["state"], what)
	require.Equal(t, wantCmd, kv["cmd"], what)
	if h := d.host(); h != "" {
		require.Contains(t, []string{"h1", "h2"}, kv["host"], what)
	}
}

// TestEntriesCannotBeForged pins issue 15's item 3: a process whose argv
// held "x\npid: 1\nuid: 0\nstate: expired\ncall: 999\nhost: evil" made its
// holders/ entry show those lines before the real ones. Its command line
// is now escaped: one line per key, in holders/ and waiters/; the log line
// that names it (an O_NOFOLLOW open) stays one line too.
func TestEntriesCannotBeForged(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	acq := d.path("m", "acquire")
	holder, cmd := startForged(t, acq)
	holder.waitOutput(t, "held")
	waiter, waiterCmd := startForged(t, acq)
	requireForgedEntry(t, d, "m", "holders", holder.pid(), "holding", cmd)
	requireForgedEntry(t, d, "m", "waiters", waiter.pid(), "waiting", waiterCmd)
	b, err := os.ReadFile(d.path("m", "status"))
	require.NoError(t, err)
	requireOneLinePerKey(t, "status", string(b))

	// The log: a refused O_NOFOLLOW open names the caller's command line.
	nofollow := `import os, sys
try:
    os.open(sys.argv[1], os.O_RDONLY | os.O_NOFOLLOW)
    print("opened")
except OSError as e:
    print("errno", e.errno)
`
	py := startProc(t, python3.need(t), append([]string{"-c", nofollow, acq}, forgedArgs...)...)
	py.requireSuccess(t, pollTimeout)
	require.Equal(t, "errno "+strconv.Itoa(int(syscall.EPERM))+"\n", py.stdout.String())
	d.waitLog(t, "O_NOFOLLOW refused")
	for _, line := range strings.Split(strings.TrimSuffix(d.log.String(), "\n"), "\n") {
		require.Regexp(t, `^(time=|--- run )`, line, "a line of the daemon's log:\n%s", d.log.String())
	}
	require.Contains(t, d.log.String(), `\npid: 1\nuid: 0\nstate: expired\ncall: 999\nhost: evil tab\there \x1b[31mred\x1b[0m back\\slash"`,
		"the log quotes the command line")

	require.NoError(t, holder.stdin.Close())
	waiter.waitOutput(t, "held")
	require.NoError(t, waiter.stdin.Close())
}

// TestFleetEntriesCannotBeForged is TestEntriesCannotBeForged on a fleet:
// h1 holds, h2 waits; each host's entries are one line per key, with the
// command line (escaped) on the process's own host and "-" on the other.
func TestFleetEntriesCannotBeForged(t *testing.T) {
	t.Parallel()
	_, ds := fleet(t, 2, nil, "m=concurrency=1")
	h1, h2 := ds[0], ds[1]
	holder, holderCmd := startForged(t, h1.path("m", "acquire"))
	holder.waitOutput(t, "held")
	waiter, waiterCmd := startForged(t, h2.path("m", "acquire"))
	for _, d := range ds {
		want := map[*daemon][2]string{h1: {holderCmd, "-"}, h2: {"-", waiterCmd}}[d]
		requireForgedEntry(t, d, "m", "holders", holder.pid(), "holding", want[0])
		requireForgedEntry(t, d, "m", "waiters", waiter.pid(), "waiting", want[1])
		b, err := os.ReadFile(d.path("m", "status"))
		require.NoError(t, err)
		requireOneLinePerKey(t, "status on "+d.host(), string(b))
	}
	require.NoError(t, holder.stdin.Close())
	waiter.waitOutput(t, "held")
	require.NoError(t, waiter.stdin.Close())
}
