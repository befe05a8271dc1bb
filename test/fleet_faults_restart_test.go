package test

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// probe is one O_NONBLOCK open a prober made.
type probe struct {
	host string
	at   time.Time
	err  error
}

// prober keeps making O_NONBLOCK opens of one meter on several hosts, every
// 10 ms, until stopped: a fail-closed meter answers EAGAIN, and a grant is a
// call the meter admitted.
type prober struct {
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	got   []probe
}

func startProber(ds []*daemon, meterName string) *prober {
	p := &prober{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			for _, d := range ds {
				err := openNonblock(d.path(meterName, "acquire"))
				p.mu.Lock()
				p.got = append(p.got, probe{host: d.host(), at: time.Now(), err: err})
				p.mu.Unlock()
			}
			select {
			case <-p.stopc:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return p
}

// stop ends the probes and returns them.
func (p *prober) stop() []probe {
	close(p.stopc)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got
}

// summary counts the probes by host and answer.
func summary(ps []probe) string {
	n := map[string]int{}
	for _, p := range ps {
		what := "granted"
		var no syscall.Errno
		if errors.As(p.err, &no) {
			what = no.Error()
		} else if p.err != nil {
			what = p.err.Error()
		}
		n[p.host+": "+what]++
	}
	var out []string
	for k, v := range n {
		out = append(out, fmt.Sprintf("%s ×%d", k, v))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// TestFleetFaultRedisRestartEmpty: Redis dies and comes back empty (no
// persistence). The hosts notice that the store lost its data (its epoch)
// and put back their meters, their calls in progress and the calls that
// still count, and their waiters:
//
//   - win=2/1m was used twice before the loss (once per host): after it,
//     a third call is refused on both hosts, and an O_NONBLOCK open made
//     every 10 ms on each host from the loss on is never granted;
//   - conc=concurrency=1 is held on h1 across the loss: h2 still lists the
//     holder and refuses a second call, h2's waiter queued before the loss
//     is queued again, and is granted when h1's holder releases;
//   - free=concurrency=0: an open made right after the restart waits (a
//     meter put back grants nothing for one lease, until every live host
//     had the time to put its calls back), then is granted.
func TestFleetFaultRedisRestartEmpty(t *testing.T) {
	t.Parallel()
	const lease = 3 * time.Second
	srv, ds := fleet(t, 2, []string{"--lease", lease.String()}, "win=2/1m", "conc=concurrency=1", "free=concurrency=0")
	h1, h2 := ds[0], ds[1]
	require.NoError(t, openNonblock(h1.path("win", "acquire")))
	waitGrant(t, h2.path("win", "acquire")) // once h1's release reached the store
	h1.waitStatus(t, "win", "window 2/1m", "2 used, 0 free")
	holder := pyHold(t, h1.path("conc", "acquire"))
	holder.waitOutput(t, "held")
	waiter := startWaiters(t, h2.path("conc", "acquire"), 1)
	h1.waitEntries(t, "conc", "waiters", 1)

	probes := startProber(ds, "win")
	// The hosts may put the meters back before Restart sees the server
	// answer (it polls): the quiet time is judged from the kill.
	killed := time.Now()
	srv.Restart()
	restarted := time.Now()
	opener := pyOpen(t, h2.path("free", "acquire"), 1, false)
	for _, d := range ds {
		d.waitStatus(t, "win", "window 2/1m", "2 used, 0 free")
		d.waitStatus(t, "win", "store", "ok")
	}
	reasserted := time.Since(restarted)
	h2.waitEntries(t, "conc", "holders", 1)
	h1.waitEntries(t, "conc", "waiters", 1)
	requeued := time.Since(restarted)
	require.ErrorIs(t, openNonblock(h2.path("conc", "acquire")), syscall.EAGAIN, "h2 while h1's call from before the loss is in progress")
	// Probe on until the hosts' quiet time after the loss is surely over.
	time.Sleep(time.Until(restarted.Add(lease + time.Second)))
	got := probes.stop()
	for _, p := range got {
		require.ErrorIs(t, p.err, syscall.EAGAIN, "O_NONBLOCK open of win=2/1m on %s at %s after the restart: probes %s",
			p.host, fmtMS(p.at.Sub(restarted)), summary(got))
	}
	// An open of an unlimited meter, made right after the restart, waited
	// (nothing is granted on a meter put back for one lease), then went.
	opener.requireSuccess(t, pollTimeout)
	require.Regexp(t, `^ok \S+ granted `, opener.stdout.String(), "a blocking open right after the restart")
	quiet := opener.endAt.Sub(killed)
	require.Greater(t, quiet, lease-tolerance(lease), "the open right after the restart was granted before the quiet time (one lease from the put-back, after the kill) ended")
	for _, d := range ds {
		require.ErrorIs(t, openNonblock(d.path("win", "acquire")), syscall.EAGAIN, "the third call of the minute on %s", d.host())
	}

	released := holder.release(t)
	require.NoError(t, waiter.wait(t, pollTimeout))
	res := waitersResults(t, waiter)
	require.Len(t, res, 1)
	require.True(t, res[0].ok, "h2's waiter queued before the loss: %q", waiter.stdout.String())
	require.True(t, res[0].when.After(released), "h2's waiter was granted before h1's holder released")
	handoff := res[0].when.Sub(released)
	t.Logf("FIGURE fleet-restart-empty: Redis restarted empty; both hosts showed the 2 calls of win=2/1m again after %s, "+
		"h1's holder and h2's waiter back after %s; probes from the loss on: %s; a blocking open made after the restart waited %s "+
		"(quiet for the lease, %v); h2's waiter granted %s after h1's release",
		fmtMS(reasserted), fmtMS(requeued), summary(got), fmtMS(quiet), lease, fmtMS(handoff))
}
