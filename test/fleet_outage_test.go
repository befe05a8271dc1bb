package test

import (
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// The fleet's store-outage must-show. Two hosts on a redis-server with its
// AOF; h1 holds m (concurrency=1) and h2's waiter W1 is queued behind it.
// Then Redis is killed. While it is down nothing is granted anywhere: an
// O_NONBLOCK open of a meter nobody holds gets EAGAIN on every host, a
// blocking open (W2, on h1) waits, an open of a meter with max_wait fails
// with ETIMEDOUT after max_wait, and status on every host says since when
// the store is unreachable. h1's holder completes during the outage. Redis
// restarts from its AOF: W1 is granted within a few seconds, which proves
// the completion was delivered (its call stopped counting), and counted at
// the instant it happened, not when delivered; then W2, in arrival order.
// The outage outlasts the hosts' lease: the store's own downtime lapses
// nobody's lease (W1 stays queued).
func TestFleetRedisOutage(t *testing.T) {
	t.Parallel()
	const lease = 2 * time.Second
	srv := startRedis(t, "--appendonly", "yes")
	ds := fleetOn(t, srv, 2, []string{"--lease", lease.String()}, "m=10/1h,concurrency=1", "idle=concurrency=0", "mw=max_wait=500ms")
	h1, h2 := ds[0], ds[1]
	holder := pyHold(t, h1.path("m", "acquire"))
	holder.waitOutput(t, "held ")
	logs := t.TempDir()
	w1 := startClient(t, h2.path("m", "acquire"), logs, client{kind: "go", id: "w1-h2", calls: 1})
	h1.waitStatus(t, "m", "waiting", "1")

	down := time.Now() // before the kill: a daemon may notice it while it happens
	srv.Kill()
	for _, d := range ds {
		err := openNonblock(d.path("idle", "acquire"))
		require.ErrorIs(t, err, syscall.EAGAIN, "O_NONBLOCK open of a free meter on %s while the store is down: %s", d.host(), errString(err))
		requireStoreDown(t, d, "idle", down)
	}
	w2 := startClient(t, h1.path("m", "acquire"), logs, client{kind: "go", id: "w2-h1", calls: 1})
	requireMaxWaitWhileDown(t, h2.path("mw", "acquire"), 500*time.Millisecond)
	h1.waitStatus(t, "m", "waiting", "1") // W2, as h1 knows it while the store is down
	released := holder.release(t)
	requireStoreDown(t, h1, "m", down)

	// The length of the fault, not a synchronization: Redis stays down
	// longer than the lease.
	time.Sleep(time.Until(down.Add(lease + lease/2)))
	require.False(t, w1.exited() || w2.exited(), "a waiter was granted while the store was down")
	restarted := time.Now()
	srv.Restart()
	w1.requireSuccess(t, pollTimeout)
	w2.requireSuccess(t, pollTimeout)
	calls := readCalls(t, logs)
	require.Len(t, calls, 2)
	require.Empty(t, fifoViolation(calls, []string{"w1-h2", "w2-h1"}), "calls:\n%s", formatCalls(calls))
	require.False(t, calls[0].grant.Before(restarted), "W1 granted %v before Redis restarted", restarted.Sub(calls[0].grant))
	recovery := calls[0].grant.Sub(restarted)
	t.Logf("FIGURE fleet redis outage: down %s; W1 granted %s after Redis restarted (AOF), W2 %s after",
		fmtMS(restarted.Sub(down)), fmtMS(recovery), fmtMS(calls[1].grant.Sub(restarted)))
	require.Less(t, recovery, 5*time.Second, "W1 granted too long after Redis restarted")

	done := storedDone(t, srv, "m", callOf(t, holder.stdout.String()))
	require.WithinRange(t, done, released.Add(-tolerance(0)), restarted, "the completion made during the outage counts from when it happened")
	for _, d := range ds {
		d.waitStatus(t, "m", "in_progress", "0 of 1")
		st := d.status(t, "m")
		require.Equal(t, "ok", st["store"], "status on %s after the outage", d.host())
		require.Equal(t, "3 used, 7 free", st["window 10/1h"], "status on %s: each call counted once", d.host())
	}
}

var storeDownRE = regexp.MustCompile(`^unreachable since (\S+) \(`)

// requireStoreDown requires that the status of meterName on d says the
// store is unreachable since an instant between down and now, what waiters
// get meanwhile, and claims nothing the host cannot know (issue 15, item
// 9b: hosts: listed only itself, next_grant: said "after a release"); and
// that status.json and rlfs status say the same.
func requireStoreDown(t *testing.T, d *daemon, meterName string, down time.Time) {
	t.Helper()
	st := d.status(t, meterName)
	m := storeDownRE.FindStringSubmatch(st["store"])
	require.NotNil(t, m, "status of %s on %s while the store is down: store: %q", meterName, d.host(), st["store"])
	since, err := time.Parse(time.RFC3339Nano, m[1])
	require.NoError(t, err, "store: %q", st["store"])
	require.WithinRange(t, since, down.Add(-time.Millisecond), time.Now(), "unreachable since (on %s)", d.host())
	require.True(t, strings.HasSuffix(st["store"], " ago); nothing is granted until it is back: waiters keep waiting (max_wait still applies), O_NONBLOCK opens get EAGAIN"),
		"store: %q on %s", st["store"], d.host())
	require.Equal(t, "unknown while the store is unreachable (this host: "+d.host()+")", st["hosts"], "status on %s", d.host())
	require.Equal(t, "when the store is back", st["next_grant"], "status on %s", d.host())

	b, err := os.ReadFile(d.path(meterName, "status.json"))
	require.NoError(t, err)
	var r map[string]any
	require.NoError(t, json.Unmarshal(b, &r), "status.json:\n%s", b)
	require.NotContains(t, r, "hosts", "status.json on %s while the store is down:\n%s", d.host(), b)
	require.Equal(t, "when the store is back", r["next_grant"], "status.json on %s:\n%s", d.host(), b)
	require.Equal(t, d.host(), r["host"], "status.json on %s:\n%s", d.host(), b)
	require.NotEmpty(t, r["store_unreachable_since"], "status.json on %s:\n%s", d.host(), b)

	out, errOut, code := rlfsStatus(t, d.path(meterName))
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `^host `+d.host()+`, in a fleet whose hosts are unknown while the store is unreachable; the shared store is UNREACHABLE since \S+: nothing is granted until it is back; waiters keep waiting \(max_wait still applies\), O_NONBLOCK opens get EAGAIN\n`, out)
	require.Regexp(t, `(?m)^`+meterName+`\s.*\swhen the store is back$`, out)
}

// requireMaxWaitWhileDown requires that a blocking open of acq, on a free
// meter with max_wait, fails with ETIMEDOUT after max_wait (not before)
// while the store is down.
func requireMaxWaitWhileDown(t *testing.T, acq string, maxWait time.Duration) {
	t.Helper()
	py := pyOpen(t, acq, 1, false)
	py.requireSuccess(t, pollTimeout)
	out := strings.Fields(py.stdout.String())
	require.Len(t, out, 5, "client.py open printed %q", py.stdout.String())
	require.Equal(t, []string{"err", "110", "ETIMEDOUT", "TimeoutError"}, out[:4])
	waited, err := strconv.ParseFloat(out[4], 64)
	require.NoError(t, err)
	require.GreaterOrEqual(t, waited, (maxWait - tolerance(0)).Seconds(), "waited %.3fs before ETIMEDOUT", waited)
	require.Less(t, waited, loaded(maxWait).Seconds(), "waited %.3fs before ETIMEDOUT", waited)
}

var callRE = regexp.MustCompile(` call (\d+)`)

// callOf is the call id in a grant line.
func callOf(t *testing.T, line string) uint64 {
	t.Helper()
	m := callRE.FindStringSubmatch(line)
	require.NotNil(t, m, "no call id in %q", line)
	id, err := strconv.ParseUint(m[1], 10, 64)
	require.NoError(t, err)
	return id
}

// storedDone is when call id of meterName completed, as the store has it.
func storedDone(t *testing.T, srv *redistest.Server, meterName string, id uint64) time.Time {
	t.Helper()
	// A completed call lives in the meter's ledger, as the member
	// "ID:UNITS:GRANTED:DONE" (docs/engine.md, "Redis: keys of one meter").
	const find = `for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
	  if string.sub(m, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then return m end
	end
	return 'none'`
	v := storeCommand(t, srv, "EVAL", find, "1", "{rlfs:"+meterName+"}:l", strconv.FormatUint(id, 10))
	f := strings.Split(v, ":")
	require.Len(t, f, 4, "call %d of %s in the store's ledger: %q", id, meterName, v)
	us, err := strconv.ParseInt(f[3], 10, 64)
	require.NoError(t, err, "call %d of %s in the store's ledger: %q", id, meterName, v)
	require.NotZero(t, us, "call %d of %s is still in progress in the store: %q", id, meterName, v)
	return time.UnixMicro(us)
}
