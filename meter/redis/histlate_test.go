package redis

import (
	"context"
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A release on a meter without windows that comes late (another host's,
// completed later, came first) joins the history at the newest group's
// completion, appended: the history stays ordered by completion, every call
// in it once, each group's first completion its call's own (what status
// shows as "since"), and a late call's done moved later, never earlier.
func TestHistoryLateReleasesStayInOrder(t *testing.T) {
	l := newLib(t)
	l.create("m", "concurrency=0") // no window: a release retires at once
	const n = 60
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = l.grant("m", uint64(i+1), 1)
	}
	base := l.now
	l.advance(time.Second)
	// Completions 1..n µs after base, released in an order where some come
	// after later ones: 0..39 in order, then 50..59, then 40..49 late and
	// backwards (each late by 10 to 19 groups: more than one chunk read).
	order := []int{}
	for i := range 40 {
		order = append(order, i)
	}
	for i := 50; i < n; i++ {
		order = append(order, i)
	}
	for i := 49; i >= 40; i-- {
		order = append(order, i)
	}
	for _, i := range order {
		var r stepReply
		l.step(&r, "rlfs2_release", "m", u64(ids[i]), strconv.FormatInt(base+int64(i)+1, 10))
	}
	raw, err := l.c.Do(context.Background(), l.c.B().Get().Key(keysOf(libPrefix, "m")[8]).Build()).ToString()
	require.NoError(t, err)
	require.Zero(t, len(raw)%40, "the history is whole groups of 40 bytes")
	var dones, firsts []int64
	calls := int64(0)
	for g := 0; g < len(raw)/40; g++ {
		f := func(k int) int64 {
			return int64(math.Float64frombits(binary.LittleEndian.Uint64([]byte(raw[g*40+8*k : g*40+8*k+8]))))
		}
		calls += f(0)
		firsts = append(firsts, f(1))
		dones = append(dones, f(3))
	}
	require.EqualValues(t, n, calls, "calls in the history")
	require.True(t, slices.IsSorted(dones), "groups by completion: %v", dones)
	require.Equal(t, base+1, dones[0], "the oldest completion")
	require.Equal(t, base+n, dones[len(dones)-1], "the newest completion")
	for g, first := range firsts {
		i := int(first - base - 1) // the call's index: its completion is base+i+1
		require.True(t, i >= 0 && i < n, "group %d: first %d is a call's completion", g, first)
		if i >= 40 && i < 50 {
			require.Equal(t, base+n, dones[g], "call %d came late: it is done at the newest completion then", i)
		} else {
			require.Equal(t, first, dones[g], "call %d came in order: done at its completion", i)
		}
	}
	slices.Sort(firsts)
	require.Equal(t, base+1, firsts[0], "every call's own completion kept as its group's first")
	require.Len(t, slices.Compact(firsts), n, "every call once")
	require.EqualValues(t, len(dones), l.ledger("m").history, "the hot state's count of groups")
}
