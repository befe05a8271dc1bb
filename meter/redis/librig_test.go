package redis

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// lib drives the library alone, by raw FCALLs on a real server, with a
// test clock (ARGV 2): the library-level tests of rlfs.lua. Safe for one
// test goroutine.
type lib struct {
	t   *testing.T
	srv *redistest.Server
	c   rueidis.Client
	now int64 // the test clock, µs since the Unix epoch
	// mores counts the MORE replies of the last step.
	mores int
}

const (
	libPrefix = "rlfs"
	libLease  = int64(1000 * time.Hour / time.Microsecond)
)

func newLib(t *testing.T) *lib {
	srv := redistest.Start(t)
	return &lib{t: t, srv: srv, c: rawClient(t, srv), now: metertest.Epoch.UnixMicro()}
}

// advance moves the test clock.
func (l *lib) advance(d time.Duration) { l.now += d.Microseconds() }

// send is one FCALL of fn on meter name: its reply, or its error.
func (l *lib) send(fn, name string, args ...string) (rueidis.RedisMessage, error) {
	a := append([]string{libPrefix, strconv.FormatInt(l.now, 10)}, args...)
	k := keysOf(libPrefix, name)
	return l.c.Do(context.Background(), l.c.B().Fcall().Function(fn).Numkeys(1).Key(k[0]).Arg(a...).Build()).ToMessage()
}

// step sends fn until it stops replying MORE (counted in l.mores) and
// decodes its reply into out.
func (l *lib) step(out reply, fn, name string, args ...string) {
	l.t.Helper()
	l.mores = 0
	for {
		m, err := l.send(fn, name, args...)
		require.NoError(l.t, err, "%s %s %v at %d", fn, name, args, l.now)
		if isMore(m) {
			l.mores++
			require.Less(l.t, l.mores, 100_000, "%s kept replying MORE", fn)
			continue
		}
		require.NoError(l.t, out.decode(m), "%s %s reply", fn, name)
		return
	}
}

func (l *lib) create(name, spec string) {
	l.t.Helper()
	l.createHistory(name, spec, meter.DefaultHistory)
}

func (l *lib) createHistory(name, spec string, history time.Duration) {
	l.t.Helper()
	args := append([]string{name}, specFields(mustSpecT(l.t, spec), history)...)
	args = append(args, attrFields(meter.DefaultAttr())...)
	var ok intReply
	l.step(&ok, "rlfs2_create", name, args...)
	require.EqualValues(l.t, 1, ok, "create %s", name)
}

func (l *lib) setSpec(name, spec string) {
	l.t.Helper()
	l.setSpecHistory(name, spec, meter.DefaultHistory)
}

func (l *lib) setSpecHistory(name, spec string, history time.Duration) {
	l.t.Helper()
	var ok intReply
	l.step(&ok, "rlfs2_setspec", name, append([]string{name}, specFields(mustSpecT(l.t, spec), history)...)...)
}

// acquire asks for a call of cost for ticket of host (incarnation "i"),
// with lease (µs).
func (l *lib) acquireAs(name, host string, lease int64, ticket uint64, cost int64, nonblock bool) admissionReply {
	l.t.Helper()
	how := "f"
	if nonblock {
		how = "nf"
	}
	var r admissionReply
	l.step(&r, "rlfs2_acquire", name, host, "i", strconv.FormatInt(lease, 10), u64(ticket), strconv.FormatInt(cost, 10), how, "7,1000,1000", "0")
	return r
}

func (l *lib) acquire(name string, ticket uint64, cost int64) admissionReply {
	l.t.Helper()
	return l.acquireAs(name, "a", libLease, ticket, cost, true)
}

// grant acquires a call that must be granted at once, and returns its id.
func (l *lib) grant(name string, ticket uint64, cost int64) uint64 {
	l.t.Helper()
	r := l.acquire(name, ticket, cost)
	require.EqualValues(l.t, admGranted, r.kind, "acquire ticket %d of cost %d at %d: %+v", ticket, cost, l.now, r)
	return r.id
}

func (l *lib) release(name string, id uint64) stepReply {
	l.t.Helper()
	var r stepReply
	l.step(&r, "rlfs2_release", name, u64(id), "0")
	return r
}

func (l *lib) settle(name string, id uint64, actual int64) {
	l.t.Helper()
	var r stepReply
	l.step(&r, "rlfs2_settle", name, u64(id), strconv.FormatInt(actual, 10))
}

// revoke takes back call id: "" when it did, else the library's refusal
// (RLFS_HELD: max_hold ended it; RLFS_NOCALL: no such call).
func (l *lib) revoke(name string, id uint64) string {
	l.t.Helper()
	m, err := l.send("rlfs2_revoke", name, u64(id))
	if re, ok := rueidis.IsRedisErr(err); ok {
		word, _, _ := strings.Cut(re.Error(), " ")
		return word
	}
	require.NoError(l.t, err, "rlfs2_revoke %s %d", name, id)
	var r stepReply
	require.NoError(l.t, r.decode(m), "rlfs2_revoke reply")
	return ""
}

// peek is the rule's answer for a call of cost now: ok, or when (µs; 0
// after a release).
func (l *lib) peek(name string, cost int64) (bool, int64) {
	l.t.Helper()
	var r peekReply
	l.step(&r, "rlfs2_peek", name, strconv.FormatInt(cost, 10))
	return r.ok, r.at
}

func (l *lib) view(name string) viewReply {
	l.t.Helper()
	var r viewReply
	l.step(&r, "rlfs2_view", name, "", "")
	return r
}

func (l *lib) ledger(name string) ledgerReply {
	l.t.Helper()
	var r ledgerReply
	l.step(&r, "rlfs2_ledger", name)
	return r
}

// peekReply is the reply of rlfs2_peek.
type peekReply struct {
	ok bool
	at int64
}

func (r *peekReply) decode(m rueidis.RedisMessage) error {
	f := fieldsOf(m, 2)
	*r = peekReply{ok: f.int(0) == 1, at: f.int(1)}
	return f.err
}

// ledgerReply is the reply of rlfs2_ledger.
type ledgerReply struct {
	now, on, openUnits, held, nx int64
	start, sum                   []int64 // per window
	ledger, parked, history      int64
}

func (r *ledgerReply) decode(m rueidis.RedisMessage) error {
	f := fieldsOf(m, 8)
	*r = ledgerReply{now: f.int(0), on: f.int(1), openUnits: f.int(2), held: f.int(3), nx: f.int(4)}
	n := len(f.a)
	for i := 5; i < n-3; i++ {
		w := f.list(i)
		r.start, r.sum = append(r.start, w.int(0)), append(r.sum, w.int(1))
		if w.err != nil {
			return w.err
		}
	}
	r.ledger, r.parked, r.history = f.int(n-3), f.int(n-2), f.int(n-1)
	return f.err
}

// commandsOf runs f and returns the commands the server ran meanwhile
// (INFO commandstats: name -> calls), inner commands of functions too.
func (l *lib) commandsOf(f func()) map[string]int {
	l.t.Helper()
	require.Equal(l.t, "+OK", redistest.Command(l.srv.Addr(), "CONFIG", "RESETSTAT"))
	f()
	out := map[string]int{}
	for _, line := range strings.Split(redistest.Command(l.srv.Addr(), "INFO", "commandstats"), "\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":calls=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
		out[name] = n
	}
	for _, k := range []string{"config|resetstat", "info", "hello", "client|setname", "ping"} {
		delete(out, k) // the test's, or a client's connecting
	}
	return out
}
