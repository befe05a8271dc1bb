package meter_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

// TestSpecCanonical pins a bug: docs/semantics.md called the stored spec
// canonical, but "1/s,75/h" and "75/h,1/s" were stored as different
// strings, so Equal called them different limits (and the daemon logged a
// difference for a --meter that only reordered them). Windows now sort by
// PER, shortest first, whatever order they are written in.
func TestSpecCanonical(t *testing.T) {
	orders := []string{
		"1/s,75/h,1000/d,concurrency=2",
		"75/h,1/s,1000/d,concurrency=2",
		"concurrency=2,1000/d,75/h,1/s",
		"1000/1d\n75/1h\n1/1s\nconcurrency=2\n",
	}
	want := "1/1s,75/1h,1000/1d,concurrency=2"
	first, err := meter.ParseSpec(orders[0])
	require.NoError(t, err)
	for _, text := range orders {
		s, err := meter.ParseSpec(text)
		require.NoError(t, err, "ParseSpec(%q)", text)
		require.Equal(t, want, s.String(), "ParseSpec(%q).String()", text)
		require.Equal(t, first, s, "ParseSpec(%q)", text)
		require.True(t, first.Equal(s), "ParseSpec(%q).Equal(ParseSpec(%q))", orders[0], text)
	}

	// A Spec built by hand in any order has the same canonical form, and
	// Items does not reorder the caller's slice.
	byHand := meter.Spec{Windows: []meter.Window{{N: 1000, Per: 24 * time.Hour}, {N: 1, Per: time.Second}, {N: 75, Per: time.Hour}}, Concurrency: 2}
	require.Equal(t, want, byHand.String())
	require.True(t, byHand.Equal(first))
	require.Equal(t, meter.Window{N: 1000, Per: 24 * time.Hour}, byHand.Windows[0], "Items sorted the caller's windows")

	// Specs that differ in meaning still differ.
	other, err := meter.ParseSpec("1/s,76/h,1000/d,concurrency=2")
	require.NoError(t, err)
	require.False(t, other.Equal(first))
}
