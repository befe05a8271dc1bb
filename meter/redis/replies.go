package redis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/rlfs/rlfs/meter"
)

// Typed replies: each kind of the library's replies is decoded once, here,
// into a struct; nothing else reads a reply by position. Instants are the
// store's microseconds.

// reply is a struct a function's reply decodes into.
type reply interface {
	decode(m rueidis.RedisMessage) error
}

var errShape = errors.New("reply of an unexpected shape")

// isMore reports a MORE status: a bounded step did part of the work it
// had to do before deciding, changed nothing else, and must be sent again.
func isMore(m rueidis.RedisMessage) bool {
	if !m.IsString() {
		return false
	}
	s, err := m.ToString()
	return err == nil && s == "MORE"
}

// fields reads an array reply of at least n items.
type fields struct {
	a   []rueidis.RedisMessage
	err error
}

func fieldsOf(m rueidis.RedisMessage, n int) *fields {
	a, err := m.ToArray()
	if err == nil && len(a) < n {
		err = fmt.Errorf("%w: %d items, want %d", errShape, len(a), n)
	}
	return &fields{a: a, err: err}
}

// int reads item i: an integer, or a decimal string.
func (f *fields) int(i int) int64 {
	if f.err != nil || i >= len(f.a) {
		return 0
	}
	m := f.a[i]
	if n, err := m.AsInt64(); err == nil {
		return n
	}
	s, err := m.ToString()
	if err != nil {
		f.err = err
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil && s != "" {
		f.err = fmt.Errorf("%w: item %d is %q", errShape, i, s)
	}
	return n
}

// str reads item i: a string, or an integer as a decimal.
func (f *fields) str(i int) string {
	if f.err != nil || i >= len(f.a) {
		return ""
	}
	m := f.a[i]
	if s, err := m.ToString(); err == nil {
		return s
	}
	n, err := m.AsInt64()
	if err != nil {
		f.err = err
	}
	return strconv.FormatInt(n, 10)
}

// list reads item i, an array.
func (f *fields) list(i int) *fields {
	if f.err != nil {
		return &fields{err: f.err}
	}
	return fieldsOf(f.a[i], 0)
}

// admission kinds (rlfs.lua, "Admission replies").
const (
	admRefused = 0
	admGranted = 1
	admQueued  = 2
	admLeft    = 3
	admGone    = 4
)

// why a call was refused (admRefused).
const (
	refusedBusy    = 1
	refusedWaiters = 2
	refusedTooBig  = 3
)

// admissionReply is the reply of rlfs2_acquire and rlfs2_cancel.
type admissionReply struct {
	kind  int64
	id    uint64 // the call (admGranted), the seq (admQueued), why (admRefused)
	at    int64  // its grant (admGranted), when to dispatch (admQueued, admLeft)
	now   int64
	head  string // the host of the queue's head ("": none)
	ops   uint64
	lease int64 // the caller's lease expiry
	// rlfs2_acquire's only (0 from a library without them): how many
	// riding releases it took, how many wait in the queue
	rode, queue int64
}

func (r *admissionReply) decode(m rueidis.RedisMessage) error {
	f := fieldsOf(m, 7)
	*r = admissionReply{kind: f.int(0), id: uint64(f.int(1)), at: f.int(2), now: f.int(3), head: f.str(4),
		ops: uint64(f.int(5)), lease: f.int(6), rode: f.int(7), queue: f.int(8)}
	return f.err
}

// stepReply is the reply of the steps that may dispatch: {wake, now, head
// host, ops}.
type stepReply struct {
	wake, now int64
	head      string
	ops       uint64
}

func (r *stepReply) decode(m rueidis.RedisMessage) error {
	f := fieldsOf(m, 4)
	*r = stepReply{wake: f.int(0), now: f.int(1), head: f.str(2), ops: uint64(f.int(3))}
	return f.err
}

// missedGrant is a call of this host that a renewal found.
type missedGrant struct {
	id, ticket uint64
	granted    int64
}

// renewReply is the reply of rlfs2_renew.
type renewReply struct {
	now, lease int64
	wake       int64
	head       string
	ops        uint64
	complete   bool  // every grant since was looked at
	last       int64 // else, the last grant instant looked at
	grants     []missedGrant
	gen        int64 // the meter's generation (reconcile.go)
	quietEnd   int64 // the end of its quiet time after it was unsettled (0: never)
}

func (r *renewReply) decode(m rueidis.RedisMessage) error {
	f := fieldsOf(m, 7)
	*r = renewReply{now: f.int(0), lease: f.int(1), wake: f.int(2), head: f.str(3), ops: uint64(f.int(4)),
		complete: f.int(5) == 1, last: f.int(6)}
	n := len(f.a)
	if (n-7)%3 == 2 { // the generation and the quiet time's end come last (an older library sends neither)
		n -= 2
		r.gen, r.quietEnd = f.int(n), f.int(n+1)
	}
	for i := 7; i+2 < n; i += 3 {
		r.grants = append(r.grants, missedGrant{id: uint64(f.int(i)), ticket: uint64(f.int(i + 1)), granted: f.int(i + 2)})
	}
	return f.err
}

// mineReply is the reply of rlfs2_mine: what the store shows of this
// host's on a meter, its calls (waiters false) or its waiters, with the
// meter's generation. waiters is set before the call.
type mineReply struct {
	waiters                  bool
	now, gen, rcid, quietEnd int64
	complete                 bool  // every entry was read
	last                     int64 // else, the score to read on from
	calls                    []storeCall
	queued                   []storeWaiter
}

// storeCall is a call of this host as the store shows it.
type storeCall struct {
	id, ticket    uint64
	granted, held int64
}

// storeWaiter is a waiter of this host as the store shows it.
type storeWaiter struct{ seq, ticket uint64 }

func (r *mineReply) decode(m rueidis.RedisMessage) error {
	f := fieldsOf(m, 6)
	*r = mineReply{waiters: r.waiters, now: f.int(0), gen: f.int(1), rcid: f.int(2), quietEnd: f.int(3), complete: f.int(4) == 1, last: f.int(5)}
	if r.waiters {
		for i := 6; i+1 < len(f.a); i += 2 {
			r.queued = append(r.queued, storeWaiter{seq: uint64(f.int(i)), ticket: uint64(f.int(i + 1))})
		}
		return f.err
	}
	for i := 6; i+3 < len(f.a); i += 4 {
		r.calls = append(r.calls, storeCall{id: uint64(f.int(i)), ticket: uint64(f.int(i + 1)), granted: f.int(i + 2), held: f.int(i + 3)})
	}
	return f.err
}

// startReply is the reply of rlfs2_start.
type startReply struct {
	now, ended int64
	more       bool
}

func (r *startReply) decode(m rueidis.RedisMessage) error {
	f := fieldsOf(m, 3)
	*r = startReply{now: f.int(0), ended: f.int(1), more: f.int(2) == 1}
	return f.err
}

// viewReply is the reply of rlfs2_view.
type viewReply struct {
	now                    int64
	spec, mode, uid, gid   string
	grants, version        int64
	tat, utat              int64
	usage                  []int64
	nextOK                 bool
	nextAt, wake           int64
	hosts                  []string
	holders, held, waiters int64
	retired, retiredSince  int64
	call, waiter           string // records ("": none)
	place                  int64
	pause                  pauseReply // until, by, from (until 0: none)
}

func (r *viewReply) decode(m rueidis.RedisMessage) error {
	f := fieldsOf(m, 25)
	*r = viewReply{now: f.int(0), spec: f.str(1), mode: f.str(2), uid: f.str(3), gid: f.str(4), grants: f.int(5),
		version: f.int(6), tat: f.int(7), utat: f.int(8), nextOK: f.int(10) == 1, nextAt: f.int(11), wake: f.int(12),
		holders: f.int(14), held: f.int(15), waiters: f.int(16), retired: f.int(17), retiredSince: f.int(18),
		call: f.str(19), waiter: f.str(20), place: f.int(21),
		pause: pauseReply{until: f.int(22), now: f.int(0), by: f.str(23), from: f.str(24)}}
	u := f.list(9)
	for i := range u.a {
		r.usage = append(r.usage, u.int(i))
	}
	h := f.list(13)
	for i := range h.a {
		r.hosts = append(r.hosts, h.str(i))
	}
	return errors.Join(f.err, u.err, h.err)
}

// pauseReply is the reply of rlfs2_pause: the pause in force (until 0:
// none), and whether it is the one asked for (set).
type pauseReply struct {
	until, now int64
	set        bool
	by, from   string
}

func (r *pauseReply) decode(m rueidis.RedisMessage) error {
	f := fieldsOf(m, 5)
	*r = pauseReply{until: f.int(0), now: f.int(1), set: f.int(2) == 1, by: f.str(3), from: f.str(4)}
	return f.err
}

// listReply is the reply of rlfs2_list: a cursor ("0": done) and records
// by key (call id, or seq).
type listReply struct {
	cursor string
	keys   []string
	recs   []string
}

func (r *listReply) decode(m rueidis.RedisMessage) error {
	f := fieldsOf(m, 1)
	*r = listReply{cursor: f.str(0)}
	for i := 1; i+1 < len(f.a); i += 2 {
		r.keys = append(r.keys, f.str(i))
		r.recs = append(r.recs, f.str(i+1))
	}
	return f.err
}

// reassertReply is the reply of rlfs2_reassert: the ids the calls put
// back have now.
type reassertReply struct {
	now int64
	ids [][2]uint64 // old, new
}

func (r *reassertReply) decode(m rueidis.RedisMessage) error {
	f := fieldsOf(m, 1)
	*r = reassertReply{now: f.int(0)}
	for i := 1; i+1 < len(f.a); i += 2 {
		r.ids = append(r.ids, [2]uint64{uint64(f.int(i)), uint64(f.int(i + 1))})
	}
	return f.err
}

// defReply is the reply of rlfs2_def: a meter's definition.
type defReply struct {
	name, spec, mode, uid, gid string
	grants, version            int64
}

func (r *defReply) decode(m rueidis.RedisMessage) error {
	f := fieldsOf(m, 7)
	*r = defReply{name: f.str(0), spec: f.str(1), mode: f.str(2), uid: f.str(3), gid: f.str(4), grants: f.int(5), version: f.int(6)}
	return f.err
}

// intReply is the reply of the functions that answer one integer.
type intReply int64

func (r *intReply) decode(m rueidis.RedisMessage) error {
	n, err := m.AsInt64()
	*r = intReply(n)
	return err
}

// dataReply is the reply of rlfs2_data_read: ok is false without the file.
type dataReply struct {
	ok            bool
	content, meta string
}

func (r *dataReply) decode(m rueidis.RedisMessage) error {
	f := fieldsOf(m, 0)
	*r = dataReply{}
	if len(f.a) >= 2 {
		*r = dataReply{ok: true, content: f.str(0), meta: f.str(1)}
	}
	return f.err
}

// Records: the library's call and waiter records (rlfs.lua's header),
// decoded once, here.

// callRecord is a call's record: byte 1, then six little-endian doubles
// (granted, cost, actual, absorbed, held, tix) and four NUL-terminated
// strings (ticket, host, incarnation, "pid,uid,gid"): struct
// '<ddddddssss' in rlfs.lua.
type callRecord struct {
	granted, cost, actual, absorbed, held int64
	ticket                                uint64
	holder                                meter.Holder
}

func parseCallRecord(s string) (callRecord, bool) {
	if len(s) < 1+6*8 || s[0] != 1 {
		return callRecord{}, false
	}
	var n [6]int64
	for i := range n {
		n[i] = int64(math.Float64frombits(binary.LittleEndian.Uint64([]byte(s[1+8*i : 9+8*i]))))
	}
	str := strings.Split(s[1+6*8:], "\x00")
	if len(str) != 5 || str[4] != "" {
		return callRecord{}, false
	}
	who := strings.Split(str[3], ",")
	if len(who) != 3 {
		return callRecord{}, false
	}
	ticket, _ := strconv.ParseUint(str[0], 10, 64)
	return callRecord{granted: n[0], cost: n[1], actual: n[2], absorbed: n[3], held: n[4], ticket: ticket,
		holder: holderOf(str[1], who[0], who[1], who[2])}, true
}

// call is the record as the engine's meter.Call of id; local converts the
// store's instants.
func (r callRecord) call(id uint64, local func(int64) time.Time) meter.Call {
	c := meter.Call{ID: id, GrantedAt: local(r.granted), Holder: r.holder, Cost: r.cost, Absorbed: r.absorbed, Expired: r.held > 0}
	if r.actual >= 0 {
		c.Actual, c.Settled = r.actual, true
	}
	return c
}

// waiterRecord is "host,inc,ticket,since,cost,pid,uid,gid".
type waiterRecord struct {
	since, cost int64
	holder      meter.Holder
}

func parseWaiterRecord(s string) (waiterRecord, bool) {
	f := strings.Split(s, ",")
	if len(f) != 8 {
		return waiterRecord{}, false
	}
	return waiterRecord{since: atoi(f[3]), cost: atoi(f[4]), holder: holderOf(f[0], f[5], f[6], f[7])}, true
}

func (r waiterRecord) waiter(seq uint64, local func(int64) time.Time) meter.Waiter {
	return meter.Waiter{Seq: seq, Holder: r.holder, Since: local(r.since), Cost: r.cost}
}

func holderOf(host, pid, uid, gid string) meter.Holder {
	return meter.Holder{Host: host, PID: int(atoi(pid)), UID: uint32(atoi(uid)), GID: uint32(atoi(gid))}
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
