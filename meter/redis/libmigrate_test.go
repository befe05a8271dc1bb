package redis

import (
	"context"
	_ "embed"
	"strconv"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

// testdata/rlfs1.lua is the library of the daemons before layout 2
// (rlfs1, as of commit 7e338e8), kept to write meters as they wrote them.
//
//go:embed testdata/rlfs1.lua
var libraryV1 string

// v1 calls function fn of the rlfs1 library on meter name, with its 9 keys.
func (l *lib) v1(fn, name string, args ...string) (rueidis.RedisMessage, error) {
	k := keysOf(libPrefix, name)
	tag := k[0][:len(k[0])-1]
	keys := []string{tag + "m", tag + "c", tag + "q", tag + "w", tag + "h", tag + "d", tag + "t", tag + "dm", tag + "p"}
	a := append([]string{libPrefix, strconv.FormatInt(l.now, 10)}, args...)
	return l.c.Do(context.Background(), l.c.B().Fcall().Function(fn).Numkeys(9).Key(keys...).Arg(a...).Build()).ToMessage()
}

// v1call is v1 for a call that must succeed; it returns the reply's
// first two integers.
func (l *lib) v1call(fn, name string, args ...string) (int64, int64) {
	l.t.Helper()
	m, err := l.v1(fn, name, args...)
	require.NoError(l.t, err, "%s %v", fn, args)
	f := fieldsOf(m, 2)
	a, b := f.int(0), f.int(1)
	require.NoError(l.t, f.err)
	return a, b
}

// A meter written by rlfs1 is migrated by the first step that touches it:
// its calls in progress, its completed calls that still count, its queue,
// its history and its counters carry over; the fence makes rlfs1's
// functions refuse with a message that names the fix.
func TestLibraryMigratesLayout1(t *testing.T) {
	l := newLib(t)
	ctx := context.Background()
	require.NoError(t, l.c.Do(ctx, l.c.B().FunctionLoad().Replace().FunctionCode(libraryV1).Build()).Error())
	spec := mustSpecT(t, "3/100ms,concurrency=2")
	args := append([]string{"m"}, specFields(spec, meter.DefaultHistory)...)
	_, err := l.v1("rlfs1_create", "m", append(args, attrFields(meter.DefaultAttr())...)...)
	require.NoError(t, err)
	lease := strconv.FormatInt(libLease, 10)
	acquire := func(host string, ticket int, nonblock string) (int64, int64) {
		return l.v1call("rlfs1_acquire", "m", host, "i", lease, strconv.Itoa(ticket), "1", nonblock, "7", "1000", "1000")
	}
	start := l.now
	at := func(d time.Duration) { l.now = start + d.Microseconds() }
	kind, id := acquire("a", 1, "1")
	require.Equal(t, []int64{1, 1}, []int64{kind, id}, "rlfs1: call 1 granted")
	_, id = acquire("a", 2, "1")
	l.v1call("rlfs1_release", "m", "a", "i", lease, strconv.FormatInt(id, 10), "0")
	at(10 * time.Millisecond)
	_, id3 := acquire("a", 4, "1")
	at(20 * time.Millisecond)
	kind, _ = acquire("b", 5, "0")
	require.EqualValues(t, 2, kind, "rlfs1: ticket 5 queued")
	at(200 * time.Millisecond)
	l.v1call("rlfs1_release", "m", "a", "i", lease, strconv.FormatInt(id3, 10), "0") // grants ticket 5: call 4; retires call 2
	at(210 * time.Millisecond)
	kind, _ = acquire("b", 7, "0")
	require.EqualValues(t, 2, kind, "rlfs1: ticket 7 queued")

	require.NoError(t, l.c.Do(ctx, l.c.B().FunctionLoad().Replace().FunctionCode(library).Build()).Error())
	require.NoError(t, l.c.Do(ctx, l.c.B().FunctionLoad().Replace().FunctionCode(fence).Build()).Error())
	at(250 * time.Millisecond)
	v := l.view("m")
	require.Equal(t, int64(2), v.holders, "holders after the migration: calls 1 and 4")
	require.Equal(t, int64(1), v.waiters, "waiters after the migration: ticket 7")
	require.Equal(t, []int64{3}, v.usage, "usage: call 3 (completed at +200ms) and calls 1 and 4 in progress")
	require.Equal(t, int64(1), v.retired, "the history: call 2")
	require.Equal(t, int64(4), v.grants, "grants")
	require.Equal(t, "3/100ms,concurrency=2", v.spec)

	rep := l.release("m", 1) // ticket 7 waits for call 3 to leave the window
	require.Equal(t, start+300_000, rep.wake, "when ticket 7 may go")
	at(300 * time.Millisecond)
	l.release("m", 1) // its release again changes nothing
	var d stepReply
	l.step(&d, "rlfs2_dispatch", "m", "a", "i", lease)
	require.Equal(t, int64(0), d.wake, "the queue is empty after the dispatch")
	v = l.view("m")
	require.Equal(t, []int64{2, 0}, []int64{v.holders, v.waiters}, "holders and waiters after call 1's release")
	require.Equal(t, int64(5), v.grants, "grants: ticket 7's is call 5")
	var lst listReply
	l.step(&lst, "rlfs2_list", "m", "c", "0")
	require.ElementsMatch(t, []string{"4", "5"}, lst.keys, "the calls in progress, as listed")

	_, err = l.v1("rlfs1_acquire", "m", "a", "i", lease, "9", "1", "1", "7", "1000", "1000")
	require.ErrorContains(t, err, "RLFS_UPGRADED", "an rlfs1 daemon after the upgrade")
	require.ErrorContains(t, err, "stop this daemon and start the newer version")
}
