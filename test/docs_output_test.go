package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// docNormalizers replace what differs from run to run in a console
// block's output, in what the doc shows and in what the run printed alike.
var docNormalizers = []struct {
	re *regexp.Regexp
	to string
}{
	{regexp.MustCompile(`^bash: line \d+: `), "bash: "},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`), "<TIME>"},
	{regexp.MustCompile(`(waited:? |held: |\(in )(\d+(\.\d+)?(ns|µs|us|ms|s|m|h))+`), "${1}<DUR>"},
	{regexp.MustCompile(`\b(pid:? )\d+`), "${1}<PID>"},
	{regexp.MustCompile(`\b(call )\d+( pid)`), "${1}<N>${2}"},
	{regexp.MustCompile(`\b(\d{6})\.\d+\b`), "${1}.<PID>"},
	{regexp.MustCompile(`\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d (\d\d:\d\d|\d{4})\b`), "<DATE>"},
}

// normalizeDocLines normalizes output lines and drops trailing blanks.
func normalizeDocLines(lines []string) []string {
	var out []string
	for _, l := range lines {
		l = strings.TrimRight(l, " \t\r")
		for _, n := range docNormalizers {
			l = n.re.ReplaceAllString(l, n.to)
		}
		out = append(out, l)
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// matchDocLines reports whether got matches want, where a want line "..."
// stands for any number of lines.
func matchDocLines(want, got []string) bool {
	if len(want) == 0 {
		return len(got) == 0
	}
	if want[0] == "..." {
		for i := 0; i <= len(got); i++ {
			if matchDocLines(want[1:], got[i:]) {
				return true
			}
		}
		return false
	}
	return len(got) > 0 && want[0] == got[0] && matchDocLines(want[1:], got[1:])
}

// checkDocOutput requires that a console block printed what it shows.
func checkDocOutput(t *testing.T, b docBlock, want []string, out string) {
	t.Helper()
	w := normalizeDocLines(want)
	g := normalizeDocLines(strings.Split(out, "\n"))
	if !matchDocLines(w, g) {
		t.Fatalf("%s printed what the doc does not show.\nthe doc (normalized):\n%s\n\nthe run (normalized):\n%s\n\nthe run:\n%s",
			b, strings.Join(w, "\n"), strings.Join(g, "\n"), out)
	}
}

// The normalizers and the "..." lines, on the README's own examples.
func TestDocOutputMatching(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		want, got string
		ok        bool
	}{
		{"granted 2026-11-27T04:19:29.031Z waited 361µs meter demo call 1 pid 28397",
			"granted 2026-12-07T10:00:00.000Z waited 1.000902s meter demo call 2 pid 4", true},
		{"next_grant: 2026-11-27T04:19:32.033Z (in 997ms)", "next_grant: 2026-12-07T10:00:00.100Z (in 1m2.5s)", true},
		{"next_grant: 2026-11-27T04:19:32.033Z (in 997ms)", "next_grant: now", false},
		{"-r--r--r-- 1 root root 0 Nov 27 04:19 000007.28420", "-r--r--r-- 1 root root 0 Dec  7 10:00 000007.1234", true},
		{"-r--r--r-- 1 root root 0 Nov 27 04:19 000007.28420", "-r--r--r-- 1 root root 0 Dec  7 10:00 000008.1234", false},
		{"bash: echo: write error: Invalid argument", "bash: line 5: echo: write error: Invalid argument", true},
		{"call: 7\nheld: 5ms", "call: 7\nheld: 1.2s", true},
		{"call: 7", "call: 8", false},
		{"meter: demo\n...\ngrants_total: 6", "meter: demo\nlimits: 2/1s\nwaiting: 0\ngrants_total: 6", true},
		{"meter: demo\n...\ngrants_total: 6", "meter: demo\ngrants_total: 7", false},
		{"a\n...", "a", true},
		{"a", "a\nb", false},
		{"124", "124\n\n", true},
	} {
		got := matchDocLines(normalizeDocLines(strings.Split(tc.want, "\n")), normalizeDocLines(strings.Split(tc.got, "\n")))
		require.Equal(t, tc.ok, got, "want %q, got %q", tc.want, tc.got)
	}
}

// The parser finds what TestDocsBlocksAreMarked refuses: a shell block
// without a marker (reported there), an indented code block, a fence
// without a language, a marker that says neither run nor skip, a skip
// without a reason; and reads the markers it knows.
func TestDocParser(t *testing.T) {
	t.Parallel()
	doc := filepath.Join(t.TempDir(), "doc.md")
	write := func(s string) {
		t.Helper()
		require.NoError(t, os.WriteFile(doc, []byte(s), 0o644))
	}
	write("# x\n\n```sh\nls\n```\n\n- a list\n\n    continued, not code\n\n<!-- doc-test: run meters=\"a=1/s b=2/1s,concurrency=0\" mount=\"/tmp/rl\" -->\n\n```console\n# ls\n```\n")
	blocks, err := parseDoc(doc, "doc.md")
	require.NoError(t, err)
	require.Len(t, blocks, 2)
	require.Nil(t, blocks[0].marker, "an unmarked sh block")
	require.Equal(t, &docMarker{run: true, meters: []string{"a=1/s", "b=2/1s,concurrency=0"}, mount: "/tmp/rl"}, blocks[1].marker)
	for body, want := range map[string]string{
		"text\n\n    rlfs mount /mnt/rl\n": "doc.md:3: an indented code block",
		"```\nls\n```\n":                   "doc.md:1: a fence without a language",
		"<!-- doc-test: expect-output -->\n```console\n# ls\n```\n":     "say run or skip",
		"<!-- doc-test: skip -->\n```sh\nls\n```\n":                     "skip needs reason=",
		"<!-- doc-test: run sometimes -->\n```sh\nls\n```\n":            `unknown words "sometimes"`,
		"<!-- doc-test: run background -->\n```sh\nrlfs mount x\n```\n": "background needs ready=",
		"```sh\nls\n": "never closed",
	} {
		write(body)
		_, err := parseDoc(doc, "doc.md")
		require.ErrorContains(t, err, want, "%q", body)
	}
}
