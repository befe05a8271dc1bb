package redis

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"
)

// The pause in the library (design §10): kept with the meter, a later
// pause extends it, an earlier one does not shorten it, a lift ends it;
// nothing is granted while it holds, waiters keep their places and go in
// order at its end, every host with waiters hears the new wake instant.
func TestLibraryPause(t *testing.T) {
	l := newLib(t)
	l.create("m", "concurrency=0")
	msgs := l.listen("a", "b")
	l.run("m", []libStep{
		{0, "acquire 1", "granted 1"},
		{0, "pause 2s", "set until +2s"},
		{0, "paused", "until +2s by pid 7 on a from the test; next +2s"},
		{0, "acquire 2", "refused busy"},
		{0, "acquire 3 block", "queued 1 wake +2s"},
		{0, "acquire 4 block host b", "queued 2 wake +2s"},
		{0, "release 1", "wake +2s"}, // a release grants nothing while it holds
		{ms(500), "pause 1s", "kept until +2s"},
		{ms(500), "pause 3s", "set until +3.5s"},
		{ms(3499), "acquire 5", "refused busy"},
		{ms(3500), "acquire 5", "granted 4"}, // after the waiters: calls 2 and 3
		{ms(3500), "paused", "until +3.5s by pid 7 on a from the test; next none"},
		{ms(4000), "pause 1h", "set until +1h0m4s"},
		{ms(4000), "acquire 6 block host b", "queued 3 wake +1h0m4s"},
		{ms(4001), "lift", "kept until none"},
		{ms(4001), "paused", "until none by  from ; next none"},
	})
	// What the hosts with waiters heard: each step's wake instant (the
	// pause's end; the head, ticket 3, is a's), the extension's, the
	// grants at its end, the grant of the lift, at once.
	start := l.now - ms(4001).Microseconds()
	want := []string{
		"a n,+2s,+0s,a",                  // acquire 4 dispatches first: only a has a waiter
		"a n,+2s,+0s,a", "b n,+2s,+0s,a", // release 1
		"a n,+2s,+500ms,a", "b n,+2s,+500ms,a", // the earlier pause, kept
		"a n,+3.5s,+500ms,a", "b n,+3.5s,+500ms,a", // the later one
		"a n,+3.5s,+3.499s,a", "b n,+3.5s,+3.499s,a",
		"a g,3,2,+3.5s", "b g,4,3,+3.5s",
		"b g,6,5,+4.001s",
	}
	require.Equal(t, want, msgs.take(t, len(want), start))
}

// TestLibraryPauseFastPath: the pause costs the fast path no command: an
// acquire reads the hot state, the host's lease and the clock, and writes
// the call and the hot state, paused before or not, after a minute alone
// too (a restart of the server is looked for once per meter, by the first
// step the library's instance runs on it).
func TestLibraryPauseFastPath(t *testing.T) {
	l := newLib(t)
	l.create("m", "concurrency=0")
	l.release("m", l.grant("m", 1, 1))
	fast := map[string]int{"fcall": 1, "get": 1, "hget": 1, "hset": 1, "zadd": 1, "set": 1}
	require.Equal(t, fast, l.commandsOf(func() { l.grant("m", 2, 1) }), "an acquire never paused")
	l.run("m", []libStep{{0, "pause 1s", "set until +1s"}})
	l.advance(time.Minute) // idle: the server's run id was read once, by the first step (INFO)
	require.Equal(t, fast, l.commandsOf(func() { l.grant("m", 3, 1) }), "an acquire after a pause ended")
	l.run("m", []libStep{{0, "pause 1s", "set until +1s"}})
	require.Equal(t, map[string]int{"fcall": 1, "get": 1, "hget": 1, "set": 1},
		l.commandsOf(func() { require.EqualValues(t, admRefused, l.acquire("m", 4, 1).kind) }), "an acquire while paused")
}

// listener collects the messages published to hosts' channels.
type listener struct {
	ch chan string
}

// listen subscribes to the channels of hosts and returns what they hear,
// as "HOST MESSAGE".
func (l *lib) listen(hosts ...string) *listener {
	l.t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{l.srv.Addr()}, DisableCache: true})
	require.NoError(l.t, err)
	ls := &listener{ch: make(chan string, 100)}
	var chans []string
	for _, h := range hosts {
		chans = append(chans, hostChannel(libPrefix, h))
	}
	ctx, cancel := context.WithCancel(context.Background())
	subscribed := make(chan struct{}, len(chans))
	ctx = rueidis.WithOnSubscriptionHook(ctx, func(rueidis.PubSubSubscription) { subscribed <- struct{}{} })
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Receive(ctx, c.B().Subscribe().Channel(chans...).Build(), func(m rueidis.PubSubMessage) {
			ls.ch <- strings.TrimPrefix(m.Channel, libPrefix+":h:") + " " + m.Message
		})
	}()
	for range chans {
		<-subscribed
	}
	l.t.Cleanup(func() { cancel(); <-done; c.Close() })
	return ls
}

// take returns the next n messages, their instants (µs) written relative
// to start and their meter name cut: "HOST KIND,...".
func (ls *listener) take(t *testing.T, n int, start int64) []string {
	t.Helper()
	var out []string
	for len(out) < n {
		select {
		case m := <-ls.ch:
			host, text, _ := strings.Cut(m, " ")
			msg, ok := parseHostMessage(text)
			require.True(t, ok, "message %q", m)
			if msg.kind == "q" {
				continue // a waiter came to an empty queue: about releases, not asked for here
			}
			rel := func(us int64) string { return "+" + (time.Duration(us-start) * time.Microsecond).String() }
			switch msg.kind {
			case "n":
				out = append(out, host+" n,"+rel(msg.at)+","+rel(msg.now)+","+msg.head)
			case "g":
				out = append(out, host+" g,"+u64(msg.ticket)+","+u64(msg.id)+","+rel(msg.grant))
			default:
				out = append(out, m)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d messages after 5s, want %d: %v", len(out), n, out)
		}
	}
	return out
}

// A meter of the hot state's layout 2 (24 numbers before the windows',
// the history a sorted set, as the library wrote it before the pause) is
// read as it was: its windows, its history, its counters; the first step
// writes it in this layout (26 numbers, the history a string).
func TestLibraryLayout2(t *testing.T) {
	l := newLib(t)
	l.create("m", "2/1s,units:10/1s,concurrency=0")
	l.release("m", l.grant("m", 1, 3))
	l.grant("m", 2, 4)
	k := keysOf(libPrefix, "m")
	ctx := context.Background()
	b, err := l.c.Do(ctx, l.c.B().Get().Key(k[14]).Build()).AsBytes()
	require.NoError(t, err)
	require.Len(t, b, 8*(26+3*2), "the hot state: 26 numbers, then 3 a window")
	old := append(append([]byte{}, b[:8*24]...), b[8*26:]...)      // without qend and pld
	binary.LittleEndian.PutUint64(old[8*2:], math.Float64bits(2))  // layout 2
	binary.LittleEndian.PutUint64(old[8*20:], math.Float64bits(2)) // pn: two groups
	binary.LittleEndian.PutUint64(old[8*22:], math.Float64bits(float64(l.now-5000)))
	require.NoError(t, l.c.Do(ctx, l.c.B().Set().Key(k[14]).Value(string(old)).Build()).Error())
	require.NoError(t, l.c.Do(ctx, l.c.B().Zadd().Key(k[8]).ScoreMember().
		ScoreMember(float64(l.now-5000), fmt.Sprintf("000000000001:3:%d:%d:%d:5", l.now-6000, l.now-7000, l.now-5000)).
		ScoreMember(float64(l.now-4000), fmt.Sprintf("000000000002:1:%d:%d:%d:1", l.now-4000, l.now-4500, l.now-4000)).Build()).Error())
	v := l.view("m")
	require.Equal(t, []int64{2, 7}, v.usage, "usage read from a state of layout 2")
	require.Equal(t, int64(4), v.retired, "its history's calls")
	require.Equal(t, l.now-6000, v.retiredSince, "its history's earliest completion")
	l.run("m", []libStep{{0, "pause 1s", "set until +1s"}, {0, "acquire 3", "refused busy"}})
	b, err = l.c.Do(ctx, l.c.B().Get().Key(k[14]).Build()).AsBytes()
	require.NoError(t, err)
	require.Len(t, b, 8*(26+3*2), "written back in this layout")
	typ, err := l.c.Do(ctx, l.c.B().Type().Key(k[8]).Build()).ToString()
	require.NoError(t, err)
	require.Equal(t, "string", typ, "the history converted")
	require.Equal(t, int64(2), l.ledger("m").history, "its two groups")
}
