package meter_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

// restartRig stores meter "m" with spec and calls as a previous daemon left
// them, then opens a registry on it at t0+openAt.
func restartRig(t *testing.T, specText string, tat time.Time, calls []meter.Call, openAt time.Duration) *rig {
	t.Helper()
	r := &rig{t: t, clk: metertest.NewClock(), store: metertest.NewMemStore()}
	require.NoError(t, r.store.CreateMeter("m", mustSpec(t, specText), meter.DefaultAttr()))
	for _, c := range calls {
		require.NoError(t, r.store.Grant("m", meter.Call{ID: c.ID, GrantedAt: c.GrantedAt, Holder: c.Holder}, tat, time.Time{}))
		if !c.DoneAt.IsZero() {
			require.NoError(t, r.store.Complete("m", c))
		}
	}
	r.clk.Set(t0.Add(openAt))
	r.open()
	require.NotNil(t, r.m, "Get(%q) after Open", "m")
	return r
}

func TestRestartRemembersTheLastCall(t *testing.T) {
	// 1/5s; the last call completed at T=t0+10s; the daemon restarts at T+2s.
	r := restartRig(t, "1/5s", time.Time{}, []meter.Call{
		{ID: 6, GrantedAt: t0.Add(9 * s), DoneAt: t0.Add(10 * s)},
	}, 12*s)
	tk := r.enqueue()
	r.waiting(tk)
	require.Equal(t, 15*s, r.nextTimer(), "the next caller waits until T+5s")
	r.at(15 * s)
	c := r.granted(tk, 15*s)
	require.Equal(t, uint64(7), c.ID, "IDs continue after a restart")
	require.Equal(t, uint64(2), r.m.Snapshot().Grants, "grants_total continues")
}

func TestRestartCompletesCallsInProgress(t *testing.T) {
	// A call granted at t0+10s was in progress when the daemon died; it
	// restarts at t0+12s: the call counts as completed then.
	r := restartRig(t, "1/5s,concurrency=1", time.Time{}, []meter.Call{
		{ID: 1, GrantedAt: t0.Add(10 * s), Holder: meter.Holder{PID: 99}},
	}, 12*s)
	snap := r.m.Snapshot()
	require.Empty(t, snap.Holders, "holders after a restart")
	require.Equal(t, 1, snap.Usage[0].Used)
	tk := r.enqueue()
	require.Equal(t, 17*s, r.nextTimer(), "the call counts until restart+PER")
	r.at(17 * s)
	r.granted(tk, 17*s)
	stored, err := r.store.Load()
	require.NoError(t, err)
	require.Equal(t, t0.Add(12*s), stored[0].State.Calls[0].DoneAt, "the completion is persisted")
}

func TestRestartClampsFutureTimes(t *testing.T) {
	// The clock was set back by an hour: stored times lie in the future.
	// No wait may be longer than its PER.
	future := t0.Add(time.Hour)
	tests := []struct {
		name  string
		spec  string
		tat   time.Time
		calls []meter.Call
		want  time.Duration // the first waiter's grant, from the restart at t0
	}{
		{"completion", "1/5s", time.Time{}, []meter.Call{{ID: 1, GrantedAt: future.Add(-s), DoneAt: future}}, 5 * s},
		{"grant", "1/5s,count=grant", time.Time{}, []meter.Call{{ID: 1, GrantedAt: future, DoneAt: future}}, 5 * s},
		{"in progress", "1/5s", time.Time{}, []meter.Call{{ID: 1, GrantedAt: future}}, 5 * s},
		{"bucket", "rate=1/5s", future, []meter.Call{{ID: 1, GrantedAt: t0.Add(-s), DoneAt: t0.Add(-s)}}, 5 * s},
		{"bucket with burst", "rate=1/5s,burst=3", future, []meter.Call{{ID: 1, GrantedAt: t0.Add(-s), DoneAt: t0.Add(-s)}}, 5 * s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := restartRig(t, tt.spec, tt.tat, tt.calls, 0)
			tk := r.enqueue()
			r.waiting(tk)
			require.Equal(t, tt.want, r.nextTimer(), "the first waiter's timer")
			r.at(tt.want)
			r.granted(tk, tt.want)
		})
	}
}

func TestSnapshot(t *testing.T) {
	r := newRig(t, "1/1s,3/1m,concurrency=2")
	a := r.call2() // PID 7
	r.at(500 * ms)
	r.release(a) // counts until 1.5s
	r.at(1500 * ms)
	b := r.call2()
	r.at(2 * s)
	w, err := r.m.Enqueue(meter.Holder{PID: 300, UID: 1000, Cmd: "curl x"}, false)
	require.NoError(t, err)

	snap := r.m.Snapshot()
	require.Equal(t, "m", snap.Name)
	require.Equal(t, t0.Add(2*s), snap.Now)
	require.Equal(t, []uint64{b.ID}, ids(snap.Holders), "Holders")
	require.Equal(t, 7, snap.Holders[0].Holder.PID)
	require.Equal(t, []meter.Waiter{{Seq: w.Seq, Holder: meter.Holder{PID: 300, UID: 1000, Cmd: "curl x"}, Since: t0.Add(2 * s), Cost: 1}}, snap.Waiters)
	require.Equal(t, []meter.WindowUsage{{Window: meter.Window{N: 1, Per: s}, Used: 1}, {Window: meter.Window{N: 3, Per: time.Minute}, Used: 2}}, snap.Usage)
	require.Equal(t, meter.Decision{}, snap.Next, "Next: after a release")
	text := parseText(t, snap.Text())
	require.Equal(t, map[string]string{
		"meter":                    "m",
		"limits":                   "1/1s,3/1m,concurrency=2",
		"window 1/1s":              "1 used, 0 free",
		"window 3/1m":              "2 used, 1 free",
		"in_progress":              "1 of 2",
		"expired_holds":            "0",
		"waiting":                  "1",
		"next_grant":               "after a release",
		"pause":                    "not paused",
		"history":                  "0 calls",
		"grants_total":             "2",
		"grants_since_start":       "2",
		"releases_since_start":     "1",
		"timeouts_since_start":     "0",
		"interrupts_since_start":   "0",
		"expired_since_start":      "0",
		"rejected_since_start":     "0",
		"revoked_since_start":      "0",
		"store_errors_since_start": "0",
		"pauses_since_start":       "0",
	}, text)

	r.at(2500 * ms)
	r.release(b) // counts until 3.5s
	text = parseText(t, r.m.Snapshot().Text())
	require.Equal(t, "2026-01-01T00:00:03.500Z (in 1s)", text["next_grant"])
	require.Equal(t, "0 of 2", text["in_progress"])
	require.Equal(t, "1", text["waiting"])

	r.at(3500 * ms)
	r.granted(w, 3500*ms)
	snap = r.m.Snapshot()
	text = parseText(t, snap.Text())
	require.Equal(t, "1 of 2", text["in_progress"])
	require.Equal(t, "0", text["waiting"])
	require.Equal(t, "3 used, 0 free", text["window 3/1m"])
	require.Equal(t, "after a release", text["next_grant"])

	// Idle, with room: "now".
	r = newRig(t, "concurrency=0")
	text = parseText(t, r.m.Snapshot().Text())
	require.Equal(t, "now", text["next_grant"])
	require.Equal(t, "0 of unlimited", text["in_progress"])
}

func TestSnapshotNextGrantBehindWaiters(t *testing.T) {
	r := newRig(t, "2/10s,count=grant,concurrency=0")
	r.call()
	r.call()
	r.enqueue()
	snap := r.m.Snapshot()
	require.Equal(t, t0.Add(10*s), snap.Next.At)
	text := parseText(t, snap.Text())
	require.Equal(t, "2026-01-01T00:00:10.000Z (in 10s)", text["next_grant"])
	require.Equal(t, "2 used, 0 free", text["window 2/10s"])
}

// parseText splits a status text into its `key: value` lines, each key once.
func parseText(t *testing.T, text string) map[string]string {
	t.Helper()
	require.True(t, strings.HasSuffix(text, "\n"), "Text() ends with a newline")
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		require.True(t, ok, "line %q is not `key: value`", line)
		_, dup := out[k]
		require.False(t, dup, "key %q twice", k)
		out[k] = v
	}
	return out
}

func TestRegistry(t *testing.T) {
	r := newRig(t, "concurrency=1")
	_, err := r.reg.Create("m", meter.DefaultSpec(), meter.DefaultAttr())
	require.ErrorIs(t, err, meter.ErrExist)
	for _, bad := range []string{"", ".hidden", "a/b", "tab\there", " lead", "trail ", strings.Repeat("x", 256)} {
		_, err := r.reg.Create(bad, meter.DefaultSpec(), meter.DefaultAttr())
		require.Error(t, err, "Create(%q)", bad)
	}
	_, err = r.reg.Create("api", mustSpec(t, "rate=10/s,burst=20"), meter.Attr{Mode: 0o750, UID: 5, GID: 6})
	require.NoError(t, err)
	require.Equal(t, []string{"api", "m"}, r.reg.Names())

	d, err := r.reg.Declare("api", mustSpec(t, "rate=10/s"), false)
	require.NoError(t, err)
	require.Equal(t, meter.Declared{Stored: mustSpec(t, "rate=10/s,burst=20"), Differed: true}, d, "Declare without --reconfigure")
	d, err = r.reg.Declare("api", mustSpec(t, "rate=10/s"), true)
	require.NoError(t, err)
	require.True(t, d.Changed, "Declare with --reconfigure")
	d, err = r.reg.Declare("new", mustSpec(t, "1/s"), false)
	require.NoError(t, err)
	require.True(t, d.Created)

	require.NoError(t, r.reg.Get("api").SetAttr(meter.Attr{Mode: 0o700, UID: 1}))
	r.open() // a restart keeps spec and attr
	require.Equal(t, []string{"api", "m", "new"}, r.reg.Names())
	require.Equal(t, "concurrency=1,rate=10/1s,burst=1", r.reg.Get("api").Spec().String())
	require.Equal(t, meter.Attr{Mode: 0o700, UID: 1}, r.reg.Get("api").Attr())
}
