package meter

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// quoted is strconv.Quote without its quotes and with '"' unescaped: what
// Escape documents that it gives.
func quoted(s string) string {
	q := strconv.Quote(s)
	return strings.ReplaceAll(q[1:len(q)-1], `\"`, `"`)
}

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"bash /tmp/job.sh", "bash /tmp/job.sh"},
		{`say "hi"`, `say "hi"`},
		{"x\npid: 1\nuid: 0", `x\npid: 1\nuid: 0`},
		{"a\tb\rc", `a\tb\rc`},
		{"\x1b[31mred", `\x1b[31mred`},
		{`back\slash`, `back\\slash`},
		{"nul\x00del\x7f", `nul\x00del\x7f`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"c1\u0085ls\u2028rlo\u202e", `c1\u0085ls\u2028rlo\u202e`},
		{"café ✓ 日本", "café ✓ 日本"},
		{"\U000e0001tag", `\U000e0001tag`},
	} {
		got := Escape(tc.in)
		require.Equal(t, tc.want, got, "Escape(%q)", tc.in)
		require.Equal(t, quoted(tc.in), got, "Escape(%q) against strconv.Quote", tc.in)
	}
}

// FuzzEscape: Escape is strconv.Quote without the quotes (and '"' as it
// is), and what it gives has no control character, so it stays one line.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "x\ny", "\x1b[0m", `\`, "\xff\xfe", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Escape(s)
		if got != quoted(s) {
			t.Fatalf("Escape(%q) = %q, want %q", s, got, quoted(s))
		}
		for _, r := range got {
			if r < ' ' || r == 0x7f {
				t.Fatalf("Escape(%q) = %q holds control %U", s, got, r)
			}
		}
	})
}
