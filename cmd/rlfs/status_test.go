package main

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

// TestStatusTableShortensLongNames pins a bug: one meter with a 255-byte
// name padded every row of rlfs status's table to 255 columns. Names past
// 40 characters are shortened in the middle, keeping both ends.
func TestStatusTableShortensLongNames(t *testing.T) {
	long := strings.Repeat("a", 120) + "-tail"
	wide := strings.Repeat("é", 255/2) // 127 two-byte characters
	reports := []meter.Report{
		{Name: "email", Limits: "1/1s,concurrency=1", NextGrant: "now"},
		{Name: long, Limits: "1/1s,concurrency=1", NextGrant: "now"},
		{Name: wide, Limits: "1/1s,concurrency=1", NextGrant: "now"},
	}
	var out bytes.Buffer
	require.NoError(t, printTable(&out, reports))
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 4, "table:\n%s", out.String())
	for _, l := range lines {
		require.LessOrEqual(t, utf8.RuneCountInString(l), 110, "a line of the table is too wide:\n%s", out.String())
	}
	require.True(t, strings.HasPrefix(lines[1], "email  "), "row %q", lines[1])
	require.Less(t, strings.Index(lines[1], "1/1s"), 45, "the email row is padded past the name column:\n%s", out.String())
	require.Contains(t, lines[2], strings.Repeat("a", 19)+"…"+strings.Repeat("a", 15)+"-tail  ", "the long name keeps its start and end")
	require.Contains(t, lines[3], "…")

	require.Equal(t, "email", shorten("email", 40))
	require.Equal(t, strings.Repeat("x", 40), shorten(strings.Repeat("x", 40), 40))
	require.Equal(t, 40, utf8.RuneCountInString(shorten(strings.Repeat("x", 41), 40)))
	require.Equal(t, 40, utf8.RuneCountInString(shorten(wide, 40)))
	require.True(t, utf8.ValidString(shorten(wide, 40)), "shortened in the middle of a character")
}

// TestStatusTableShowsBuckets: the table's USAGE column shows token
// buckets, the call bucket and the units bucket of weighted calls, as the
// tokens taken of their burst (it showed "-" for a meter with buckets only).
func TestStatusTableShowsBuckets(t *testing.T) {
	reports := []meter.Report{{
		Name: "llm", Limits: "60/1m,rate=10/1s,burst=20,units:rate=100/1h,units:burst=100", NextGrant: "now",
		Windows: []meter.WindowReport{{Limit: "60/1m", Used: 3, Free: 57}},
		Buckets: []meter.BucketUsage{{Item: "rate=10/1s", Free: 20, Burst: 20}, {Item: "units:rate=100/1h", Free: 40, Burst: 100}},
	}, {Name: "tokens", Limits: "units:rate=100/1h,units:burst=100", NextGrant: "now",
		Buckets: []meter.BucketUsage{{Item: "units:rate=100/1h", Free: 100, Burst: 100}},
	}}
	var out bytes.Buffer
	require.NoError(t, printTable(&out, reports))
	require.Contains(t, out.String(), "  3 of 60/1m, 0 of burst=20, 60 of units:burst=100  ", "table:\n%s", out.String())
	require.Contains(t, out.String(), "  0 of units:burst=100  ", "table:\n%s", out.String())
}
