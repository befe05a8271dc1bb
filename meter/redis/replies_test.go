package redis

import (
	"context"
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// The decoders of replies.go, on replies of every shape a server sends
// (made by EVAL of a Lua expression: real RESP3 messages).

func replyOf(t *testing.T, c rueidis.Client, lua string) rueidis.RedisMessage {
	t.Helper()
	m, err := c.Do(context.Background(), c.B().Eval().Script("return "+lua).Numkeys(0).Build()).ToMessage()
	require.NoError(t, err, "EVAL return %s", lua)
	return m
}

func TestDecoders(t *testing.T) {
	c := rawClient(t, redistest.Start(t))
	for _, tc := range []struct {
		lua  string
		into reply
		want reply // nil: an error
	}{
		{"{1, 17, 1700000000000001, 1700000000000002, '', 0, 1700000000000003}", &admissionReply{},
			&admissionReply{kind: admGranted, id: 17, at: 1700000000000001, now: 1700000000000002, lease: 1700000000000003}},
		{"{2, 4, 0, '1700000000000002', 'b', 9, 5}", &admissionReply{}, // numbers as strings decode too
			&admissionReply{kind: admQueued, id: 4, now: 1700000000000002, head: "b", ops: 9, lease: 5}},
		{"{1, 17, 1}", &admissionReply{}, nil},               // too short
		{"{1, 'x', 1, 1, '', 0, 1}", &admissionReply{}, nil}, // not a number
		{"'a string'", &admissionReply{}, nil},
		{"{0, 5, '', 0}", &stepReply{}, &stepReply{now: 5}},
		{"{5, 6, 10, 'a', 3, 0, 99, 1, 2, 3, 4, 5, 6, 2, 77}", &renewReply{},
			&renewReply{now: 5, lease: 6, wake: 10, head: "a", ops: 3, last: 99,
				grants: []missedGrant{{id: 1, ticket: 2, granted: 3}, {id: 4, ticket: 5, granted: 6}}, gen: 2, quietEnd: 77}},
		{"{5, 6, 10, 'a', 3, 1, 0, 0, 0}", &renewReply{}, &renewReply{now: 5, lease: 6, wake: 10, head: "a", ops: 3, complete: true}},
		{"{5, 6, 10, 'a', 3, 1, 0, 1, 2, 3}", &renewReply{}, &renewReply{now: 5, lease: 6, wake: 10, head: "a", ops: 3, complete: true,
			grants: []missedGrant{{id: 1, ticket: 2, granted: 3}}}}, // no generation: an older library
		{"{5, 2, 3, 77, 0, 40, 7, '8', 40, 0}", &mineReply{}, &mineReply{now: 5, gen: 2, rcid: 3, quietEnd: 77, last: 40,
			calls: []storeCall{{id: 7, ticket: 8, granted: 40}}}},
		{"{5, 2, 3, 77, 1, 0, 4, '9'}", &mineReply{waiters: true}, &mineReply{waiters: true, now: 5, gen: 2, rcid: 3, quietEnd: 77,
			complete: true, queued: []storeWaiter{{seq: 4, ticket: 9}}}},
		{"{5, 3, 1}", &startReply{}, &startReply{now: 5, ended: 3, more: true}},
		{"{5, '1/s', '493', '0', '0', 7, 8, 9, 10, {1, 2}, 0, 11, 12, {'a', 'b'}, 1, 2, 3, 4, 13, '', 'w', 2, 14, 'pid 1', 'f'}", &viewReply{},
			&viewReply{now: 5, spec: "1/s", mode: "493", uid: "0", gid: "0", grants: 7, version: 8, tat: 9, utat: 10,
				usage: []int64{1, 2}, nextAt: 11, wake: 12, hosts: []string{"a", "b"}, holders: 1, held: 2, waiters: 3,
				retired: 4, retiredSince: 13, waiter: "w", place: 2, pause: pauseReply{until: 14, now: 5, by: "pid 1", from: "f"}}},
		{"{5, '1/s', '493', '0', '0', 7, 8, 9, 10, 'not a list', 0, 11, 12, {}, 1, 2, 3, 4, 13, '', '', 0, 0, '', ''}", &viewReply{}, nil},
		{"{5, '1/s', '493', '0', '0', 7, 8, 9, 10, {}, 0, 11, 12, {}, 1, 2, 3, 4, 13, '', '', 0}", &viewReply{}, nil}, // no pause: an older library
		{"{14, 5, 1, 'pid 1 on a', 'the pause file'}", &pauseReply{}, &pauseReply{until: 14, now: 5, set: true, by: "pid 1 on a", from: "the pause file"}},
		{"{0, 5, 0, '', ''}", &pauseReply{}, &pauseReply{now: 5}},
		{"{0, 5}", &pauseReply{}, nil},
		{"{'0', '3', 'r3', '4', 'r4'}", &listReply{}, &listReply{cursor: "0", keys: []string{"3", "4"}, recs: []string{"r3", "r4"}}},
		{"{5, 1, 1, 2, 9}", &reassertReply{}, &reassertReply{now: 5, ids: [][2]uint64{{1, 1}, {2, 9}}}},
		{"{'m', '1/s', '493', '0', '0', '12', '99'}", &defReply{}, &defReply{name: "m", spec: "1/s", mode: "493", uid: "0", gid: "0", grants: 12, version: 99}},
		{"1", new(intReply), func() *intReply { r := intReply(1); return &r }()},
		{"'x'", new(intReply), nil},
		{"{}", &dataReply{}, &dataReply{}},
		{"{'abc', '3,17'}", &dataReply{}, &dataReply{ok: true, content: "abc", meta: "3,17"}},
	} {
		err := tc.into.decode(replyOf(t, c, tc.lua))
		if tc.want == nil {
			require.Error(t, err, "decode %s into %T", tc.lua, tc.into)
			continue
		}
		require.NoError(t, err, "decode %s into %T", tc.lua, tc.into)
		require.Equal(t, tc.want, tc.into, "decode %s", tc.lua)
	}
	require.True(t, isMore(replyOf(t, c, "{ok = 'MORE'}")), "a MORE status")
	require.False(t, isMore(replyOf(t, c, "{1, 2}")), "an array")
	require.False(t, isMore(replyOf(t, c, "{ok = 'OK'}")), "another status")
}

func TestHostMessages(t *testing.T) {
	for _, tc := range []struct {
		text string
		want hostMessage
		ok   bool
	}{
		{"g,5,7,100,200,300,meter,with,commas", hostMessage{kind: "g", ticket: 5, id: 7, grant: 100, now: 200, lease: 300, meter: "meter,with,commas"}, true},
		{"r,5,0,0,200,m", hostMessage{kind: "r", ticket: 5, now: 200, meter: "m"}, true},
		{"n,150,200,b,42,m", hostMessage{kind: "n", at: 150, now: 200, head: "b", ops: 42, meter: "m"}, true},
		{"n,0,200,,42,m", hostMessage{kind: "n", now: 200, ops: 42, meter: "m"}, true},
		{"g,5,7,100,200,m", hostMessage{}, false}, // a grant without the lease (rlfs1's)
		{"x,1,2,3,4,m", hostMessage{}, false},
		{"", hostMessage{}, false},
	} {
		got, ok := parseHostMessage(tc.text)
		require.Equal(t, tc.ok, ok, "parseHostMessage(%q)", tc.text)
		require.Equal(t, tc.want, got, "parseHostMessage(%q)", tc.text)
	}
}

func TestRecords(t *testing.T) {
	local := func(us int64) time.Time { return time.UnixMicro(us) }
	rec := func(n [6]float64, strs ...string) string {
		b := []byte{1}
		for _, x := range n {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		}
		for _, s := range strs {
			b = append(append(b, s...), 0)
		}
		return string(b)
	}
	r, ok := parseCallRecord(rec([6]float64{100, 3, -1, 0, 0, 1}, "7", "web1", "inc", "42,1000,100"))
	require.True(t, ok)
	require.Equal(t, meter.Call{ID: 9, GrantedAt: time.UnixMicro(100), Cost: 3,
		Holder: meter.Holder{Host: "web1", PID: 42, UID: 1000, GID: 100}}, r.call(9, local))
	require.Equal(t, uint64(7), r.ticket)
	r, ok = parseCallRecord(rec([6]float64{100, 3, 2, 1, 250, 0}, "7", "web1", "inc", "42,1000,100"))
	require.True(t, ok)
	require.Equal(t, meter.Call{ID: 9, GrantedAt: time.UnixMicro(100), Cost: 3, Actual: 2, Settled: true, Absorbed: 1, Expired: true,
		Holder: meter.Holder{Host: "web1", PID: 42, UID: 1000, GID: 100}}, r.call(9, local))
	_, ok = parseCallRecord("100,0,0,7,3,-1,web1,inc,42,1000,100,0,0") // rlfs1's
	require.False(t, ok)
	_, ok = parseCallRecord(rec([6]float64{100, 3, 2, 1, 250, 0}, "7", "web1")) // cut short
	require.False(t, ok)
	w, ok := parseWaiterRecord("web2,inc,5,300,4,43,1001,101")
	require.True(t, ok)
	require.Equal(t, meter.Waiter{Seq: 2, Since: time.UnixMicro(300), Cost: 4, Holder: meter.Holder{Host: "web2", PID: 43, UID: 1001, GID: 101}},
		w.waiter(2, local))
	_, ok = parseWaiterRecord("web2,inc,5")
	require.False(t, ok)
}
