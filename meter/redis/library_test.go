package redis

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Library-level tests of rlfs.lua: its steps through real FCALLs on a
// real server, with a test clock (librig_test.go).

// The fast paths: an acquire on a meter nobody waits on, with nothing to
// age, reads the hot state and the host's lease entry and writes the call
// (its record, the open set, the host's set) and the hot state; a release
// reads and deletes its call and writes the ledger (or, without windows,
// appends to the history). Neither reads the meter's calls, waiters, hosts or history.
func TestLibraryFastPaths(t *testing.T) {
	l := newLib(t)
	for _, tc := range []struct {
		spec             string
		acquire, release map[string]int
	}{
		{spec: "1000/1h,concurrency=0",
			acquire: map[string]int{"fcall": 1, "get": 1, "hget": 1, "hset": 1, "zadd": 1, "set": 1},
			release: map[string]int{"fcall": 1, "get": 1, "hget": 1, "hdel": 1, "zrem": 1, "zadd": 1, "set": 1}},
		{spec: "concurrency=5000", // without windows, straight into the history (appended)
			acquire: map[string]int{"fcall": 1, "get": 1, "hget": 1, "hset": 1, "zadd": 1, "set": 1},
			release: map[string]int{"fcall": 1, "get": 1, "hget": 1, "hdel": 1, "zrem": 1, "append": 1, "set": 1}},
		{spec: "1000/1h,concurrency=0,max_hold=1m", // the open set too, in grant order
			acquire: map[string]int{"fcall": 1, "get": 1, "hget": 1, "hset": 1, "zadd": 2, "set": 1},
			release: map[string]int{"fcall": 1, "get": 1, "hget": 1, "hdel": 1, "zrem": 2, "zadd": 1, "set": 1}},
	} {
		name := "m" + strconv.Itoa(len(tc.spec))
		l.create(name, tc.spec)
		l.release(name, l.grant(name, 1, 1)) // the host's lease entry, the spec in the library's cache
		var id uint64
		got := l.commandsOf(func() { id = l.grant(name, 2, 1) })
		require.Equal(t, tc.acquire, got, "commands of an acquire on %q (fast path)", tc.spec)
		l.advance(time.Millisecond)
		got = l.commandsOf(func() { l.release(name, id) })
		require.Equal(t, tc.release, got, "commands of a release on %q (nobody waits)", tc.spec)
	}
}

// Releases ride an acquire (rlfs2_acquire's pairs from ARGV 11): they end
// first, in the same function, as if rlfs2_release had come just before;
// the reply says how many pairs it took and how many wait. A call the
// store no longer has is skipped; a waiter queued before keeps its place.
func TestLibraryRidingReleases(t *testing.T) {
	l := newLib(t)
	ride := func(name, host string, ticket uint64, nonblock bool, pairs ...string) admissionReply {
		t.Helper()
		how := "f"
		if nonblock {
			how = "nf"
		}
		var r admissionReply
		args := append([]string{host, "i", strconv.FormatInt(libLease, 10), u64(ticket), "1", how, "7,1000,1000", ""}, pairs...)
		l.step(&r, "rlfs2_acquire", name, args...)
		return r
	}
	l.create("one", "concurrency=1")
	id := l.grant("one", 1, 1)
	require.EqualValues(t, admRefused, l.acquire("one", 2, 1).kind, "held: a second call is refused")
	l.advance(time.Millisecond)
	done := l.now
	l.advance(time.Millisecond)
	r := ride("one", "a", 3, true, u64(id), strconv.FormatInt(done, 10))
	require.EqualValues(t, admGranted, r.kind, "the riding release ended the call first: %+v", r)
	require.EqualValues(t, 1, r.rode, "pairs taken")
	require.Zero(t, r.queue, "nobody waits")
	v := l.view("one")
	require.EqualValues(t, 1, v.holders, "the new call only")
	require.EqualValues(t, 1, v.retired, "the released call is in the history")
	require.Equal(t, done, v.retiredSince, "completed when its host said, not when it arrived")

	// the same release again (a retry): skipped, nothing ends twice
	r = ride("one", "a", 4, true, u64(id), strconv.FormatInt(done, 10))
	require.EqualValues(t, admRefused, r.kind, "the new call still holds")
	require.EqualValues(t, 1, r.rode)
	require.EqualValues(t, 1, l.view("one").retired, "no call ended twice")

	// a waiter of host b queued before keeps its place: the holder's
	// release, riding host a's acquire, hands the meter to b's waiter,
	// and a's new ticket queues behind it
	q := l.acquireAs("one", "b", libLease, 5, 1, false)
	require.EqualValues(t, admQueued, q.kind)
	holders := func() map[string]string { // id -> host
		var lst listReply
		l.step(&lst, "rlfs2_list", "one", "c", "0")
		out := map[string]string{}
		for i, k := range lst.keys {
			rec, ok := parseCallRecord(lst.recs[i])
			require.True(t, ok, "record of call %s", k)
			out[k] = rec.holder.Host
		}
		return out
	}
	before := holders()
	require.Len(t, before, 1)
	var holder string
	for k := range before {
		holder = k
	}
	r = ride("one", "a", 6, false, holder, "0")
	require.EqualValues(t, admQueued, r.kind, "a's ticket queues behind b's waiter: %+v", r)
	require.EqualValues(t, 1, r.rode)
	require.EqualValues(t, 1, r.queue, "a's own ticket waits")
	after := holders()
	require.Len(t, after, 1)
	for k, h := range after {
		require.NotEqual(t, holder, k, "the released call is gone")
		require.Equal(t, "b", h, "b's waiter, queued first, was granted (FIFO)")
	}

	// the commands of a riding acquire: one function, both steps' commands
	l.create("many", "concurrency=5000")
	l.release("many", l.grant("many", 1, 1))
	id = l.grant("many", 2, 1)
	l.advance(time.Millisecond)
	got := l.commandsOf(func() { ride("many", "a", 3, true, u64(id), "0") })
	require.Equal(t, map[string]int{"fcall": 1, "get": 1, "hget": 2, "hdel": 1, "zrem": 1, "append": 1, "hset": 1, "zadd": 1, "set": 1}, got,
		"commands of an acquire carrying a release")
}

// libStep is one step of a table: at an instant (from the start), an
// operation, and its reply as text.
type libStep struct {
	at   time.Duration
	op   string
	want string
}

// run plays steps on meter name. Operations: "acquire TICKET [COST] [block]
// [host H]", "release ID", "settle ID ACTUAL", "revoke ID", "peek COST",
// "view", "pause D", "lift", "paused". Replies: "granted ID", "queued SEQ
// wake W", "refused busy|waiters|toobig"; a step reply "wake W"; "ok" or
// "at W" or "after a release" (peek); "used U... holders H held X waiters
// N" (view); "set|kept until W" (pause, lift); "until W by B from F; next
// W" (paused: the view's pause and next grant); W is an instant as
// +DURATION from the start, or "none".
func (l *lib) run(name string, steps []libStep) {
	l.t.Helper()
	start := l.now
	rel := func(us int64) string {
		if us == 0 {
			return "none"
		}
		return "+" + (time.Duration(us-start) * time.Microsecond).String()
	}
	for i, s := range steps {
		l.now = start + s.at.Microseconds()
		f := strings.Fields(s.op)
		arg := func(j int) int64 { n, _ := strconv.ParseInt(f[j], 10, 64); return n }
		var got string
		switch f[0] {
		case "acquire":
			cost, block, host := int64(1), false, "a"
			for j := 2; j < len(f); j++ {
				switch {
				case f[j] == "block":
					block = true
				case f[j] == "host":
					host = f[j+1]
					j++
				default:
					cost = arg(j)
				}
			}
			r := l.acquireAs(name, host, libLease, uint64(arg(1)), cost, !block)
			switch r.kind {
			case admGranted:
				got = fmt.Sprintf("granted %d", r.id)
			case admQueued:
				got = fmt.Sprintf("queued %d wake %s", r.id, rel(r.at))
			default:
				got = "refused " + map[uint64]string{refusedBusy: "busy", refusedWaiters: "waiters", refusedTooBig: "toobig"}[r.id]
			}
		case "release":
			got = "wake " + rel(l.release(name, uint64(arg(1))).wake)
		case "settle":
			l.settle(name, uint64(arg(1)), arg(2))
		case "revoke":
			got = l.revoke(name, uint64(arg(1)))
		case "peek":
			switch ok, at := l.peek(name, arg(1)); {
			case ok:
				got = "ok"
			case at == 0:
				got = "after a release"
			default:
				got = "at " + rel(at)
			}
		case "view":
			v := l.view(name)
			got = fmt.Sprintf("used %v holders %d held %d waiters %d", v.usage, v.holders, v.held, v.waiters)
		case "pause", "lift":
			d := "lift"
			if f[0] == "pause" {
				pd, err := time.ParseDuration(f[1])
				require.NoError(l.t, err, "step %d: %s", i, s.op)
				d = strconv.FormatInt(pd.Microseconds(), 10)
			}
			var r pauseReply
			l.step(&r, "rlfs2_pause", name, d, "pid 7 on a", "the test")
			got = map[bool]string{true: "set", false: "kept"}[r.set] + " until " + rel(r.until)
		case "paused":
			v := l.view(name)
			got = fmt.Sprintf("until %s by %s from %s; next %s", rel(v.pause.until), v.pause.by, v.pause.from, rel(v.nextAt))
		}
		require.Equal(l.t, s.want, got, "step %d at +%v: %s", i, s.at, s.op)
	}
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// The rule on counters, step by step: concurrency with and without
// max_hold, call and units windows, the k-th end in the ledger and in the
// calls in progress, count=grant, settlement, revocation, FIFO.
func TestLibrarySteps(t *testing.T) {
	for _, tc := range []struct {
		spec  string
		steps []libStep
	}{
		{"concurrency=1,max_hold=2s", []libStep{
			{0, "acquire 1", "granted 1"},
			{0, "acquire 2 block", "queued 1 wake +2s"}, // call 1's hold ends
			{0, "acquire 3", "refused busy"},
			{ms(1000), "release 1", "wake none"}, // ticket 2 granted: call 2
			{ms(1000), "view", "used [] holders 1 held 0 waiters 0"},
			{ms(2999), "peek 1", "at +3s"},
			{ms(3000), "peek 1", "ok"}, // max_hold ended call 2
			{ms(3000), "view", "used [] holders 0 held 1 waiters 0"},
			{ms(3000), "revoke 2", "RLFS_HELD"}, // it counts as completed: kept, to be released
			{ms(3000), "revoke 9", "RLFS_NOCALL"},
			{ms(3000), "view", "used [] holders 0 held 1 waiters 0"},
		}},
		{"concurrency=1", []libStep{
			{0, "acquire 1", "granted 1"},
			{0, "peek 1", "after a release"},
			{0, "acquire 2 block", fmt.Sprintf("queued 1 wake +%v", time.Duration(libLease)*time.Microsecond)}, // the lease
		}},
		{"2/1s,concurrency=0", []libStep{
			{0, "acquire 1", "granted 1"},
			{0, "release 1", "wake none"},
			{ms(100), "acquire 2", "granted 2"},
			{ms(200), "release 2", "wake none"},
			{ms(300), "peek 1", "at +1s"},
			{ms(300), "view", "used [2] holders 0 held 0 waiters 0"},
			{ms(999), "peek 1", "at +1s"},
			{ms(1000), "peek 1", "ok"},
			{ms(1000), "view", "used [1] holders 0 held 0 waiters 0"},
			{ms(1000), "acquire 3", "granted 3"},
			{ms(1000), "peek 1", "at +1.2s"}, // call 2's end; call 3 counts in progress
		}},
		{"units:10/1s,concurrency=0", []libStep{
			{0, "acquire 1 4", "granted 1"},
			{0, "release 1", "wake none"},
			{ms(100), "acquire 2 4", "granted 2"},
			{ms(100), "release 2", "wake none"},
			{ms(200), "acquire 3 2", "granted 3"},
			{ms(200), "release 3", "wake none"},
			{ms(300), "peek 5", "at +1.1s"}, // the 5th unit: call 2's
			{ms(300), "peek 3", "at +1s"},
			{ms(300), "peek 11", "after a release"}, // never: beyond the window
			{ms(300), "acquire 4 11", "refused toobig"},
			{ms(1000), "peek 5", "at +1.1s"},
			{ms(1100), "peek 5", "ok"},
		}},
		{"2/1s,concurrency=0,max_hold=500ms", []libStep{
			{0, "acquire 1", "granted 1"},
			{ms(100), "acquire 2", "granted 2"},
			{ms(200), "peek 1", "at +1.5s"}, // in the calls in progress: grant + max_hold + PER
			{ms(550), "peek 1", "at +1.5s"}, // call 1's hold ended: in the ledger now
			{ms(550), "view", "used [2] holders 1 held 1 waiters 0"},
			{ms(600), "view", "used [2] holders 0 held 2 waiters 0"},
			{ms(700), "release 1", "wake none"}, // counts from its hold's end still
			{ms(700), "peek 1", "at +1.5s"},
		}},
		{"2/1s,concurrency=0", []libStep{
			{0, "acquire 1", "granted 1"},
			{ms(100), "acquire 2", "granted 2"},
			{ms(200), "peek 1", "after a release"}, // ends unknown
			{ms(300), "release 2", "wake none"},
			{ms(300), "peek 1", "at +1.3s"},
		}},
		{"2/1s,count=grant,concurrency=0", []libStep{
			{0, "acquire 1", "granted 1"},
			{ms(100), "acquire 2", "granted 2"},
			{ms(200), "peek 1", "at +1s"}, // counted from the grant, in progress or not
			{ms(500), "release 1", "wake none"},
			{ms(1000), "peek 1", "ok"},
			{ms(1000), "view", "used [1] holders 1 held 0 waiters 0"},
		}},
		{"units:10/1s,concurrency=0,max_hold=500ms", []libStep{
			{0, "acquire 1 6", "granted 1"},
			{ms(100), "acquire 2 4", "granted 2"},
			{ms(200), "peek 3", "at +1.5s"}, // call 1's 6 units, in progress: its hold's end + PER
			{ms(200), "settle 1 1", ""},     // it costs 1: 5 free
			{ms(200), "peek 3", "ok"},
			{ms(200), "peek 6", "at +1.5s"},
		}},
		{"units:10/1s,concurrency=0", []libStep{
			{0, "acquire 1 6", "granted 1"},
			{0, "revoke 1", ""}, // nothing of it counts
			{0, "peek 10", "ok"},
			{0, "acquire 2 10", "granted 2"},
			{0, "acquire 3 1 block", "queued 1 wake +1000h0m0s"}, // only a release: the earliest lease lapse
			{0, "acquire 4 1 block host b", "queued 2 wake +1000h0m0s"},
			{0, "acquire 5 1", "refused busy"}, // FIFO: nonblocking with waiters
			{ms(10), "release 2", "wake +1.01s"},
			{ms(1009), "acquire 6 1", "refused busy"},
			{ms(1010), "acquire 6 1", "granted 5"}, // after the waiters: calls 3 and 4
			{ms(1010), "view", "used [3] holders 3 held 0 waiters 0"},
		}},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			l := newLib(t)
			l.create("m", tc.spec)
			l.run("m", tc.steps)
		})
	}
}
