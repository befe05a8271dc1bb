package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

func intp(n int) *int { return &n }

// topFixture is two readings of a fleet's meters, a second apart: a
// meter over its units limit, a paused one, a full serial one with
// waiters, an idle one, and one this user may not read.
func topFixture() (prev, cur topSample) {
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	mk := func(grants uint64) []topMeter {
		return []topMeter{
			{Report: meter.Report{Name: "llm", Windows: []meter.WindowReport{{Limit: "60/1m", Used: 30, Free: 30}, {Limit: "units:1000/1m", Used: 1200, Free: 0}},
				InProgress: 2, Waiting: intp(1), NextGrant: "2026-12-07T10:00:12.000Z (in 11s)", Counters: map[string]uint64{"grants_total": grants}, Host: "h1", Hosts: []string{"h1", "h2"}}},
			{Report: meter.Report{Name: "api", Windows: []meter.WindowReport{}, Buckets: []meter.BucketUsage{{Item: "rate=10/1s", Free: 4, Burst: 5}}, Concurrency: 4, InProgress: 1,
				Waiting: intp(0), NextGrant: "now", Counters: map[string]uint64{"grants_total": grants * 2}, Host: "h1", Hosts: []string{"h2"}},
				Pause: &topPause{Until: "2026-12-07T10:00:31Z", By: "uid 0", From: "the pause file"}},
			{Report: meter.Report{Name: "backup", Windows: []meter.WindowReport{}, Concurrency: 1, InProgress: 1, Waiting: intp(3),
				NextGrant: "after a release", Counters: map[string]uint64{"grants_total": 7}, Host: "h1", Hosts: []string{"h1"}}},
			{Report: meter.Report{Name: "idle", Windows: []meter.WindowReport{{Limit: "75/1h", Used: 1, Free: 74}}, Concurrency: 1, Waiting: intp(0),
				NextGrant: "now", Counters: map[string]uint64{"grants_total": 1}, Host: "h1", Hosts: []string{"h1"}}},
		}
	}
	prev = topSample{at: t0, meters: mk(100)}
	cur = topSample{at: t0.Add(time.Second), meters: mk(104), unreadable: []unreadableMeter{{Name: "priv", Error: "not readable by this user (uid 1000): permission denied"}}}
	return prev, cur
}

func frameText(in frameInput) string {
	var b strings.Builder
	for _, l := range buildFrame(in) {
		b.WriteString(l.String() + "\n")
	}
	return b.String()
}

// TestTopFrame pins the plain frame of rlfs top --once: the order (the
// fullest bar first: a units window in debt at 120 %, then the paused
// meter and the full serial one at 100 %, the one with waiters first),
// the bars and their numbers with units, the meter-wide columns on each
// meter's first line, grants/s from the two readings, the pause, the
// hosts, and the unreadable meter last.
func TestTopFrame(t *testing.T) {
	prev, cur := topFixture()
	got := frameText(frameInput{mnt: "/mnt/rl", interval: time.Second, prev: &prev, cur: &cur})
	want := `rlfs top /mnt/rl at 2026-12-07T10:00:01.000Z, every 1s; sorted by use (closest to a limit first); filter: none
host h1, in a fleet with h1, h2; the shared store answers
4 meters shown, 1 meter not readable by this user

METER   LIMIT               USE                          USED                IN PROGRESS  WAITING  GRANTS/S  NEXT GRANT       PAUSE                                           HOSTS
llm     60/1m               [##########..........]  50%  30 of 60 calls      2            1        4.0       in 11s           -                                               h1,h2
        units:1000/1m       [####################] 120%  1200 of 1000 units
backup  concurrency=1       [####################] 100%  1 of 1 calls        1            3        0.0       after a release  -                                               h1
api     rate=10/1s,burst=5  [####................]  20%  1 of 5 calls        1            0        8.0       now              paused 30s more, by uid 0, from the pause file  h2
        concurrency=4       [#####...............]  25%  1 of 4 calls
idle    75/1h               [#...................]   1%  1 of 75 calls       0            0        0.0       now              -                                               h1
        concurrency=1       [....................]   0%  0 of 1 calls
priv    not readable by this user (uid 1000): permission denied
`
	require.Equal(t, want, got)
}

// TestTopViews: the sort keys and the filter change the rows and say so
// in the title; the first frame has no grant rates yet.
func TestTopViews(t *testing.T) {
	prev, cur := topFixture()
	names := func(v topView, prev *topSample) []string {
		rows, _ := v.arrange(topRows(prev, cur))
		var out []string
		for _, r := range rows {
			out = append(out, r.Name)
		}
		return out
	}
	byName, _ := sortKey("name")
	byWaiting, _ := sortKey("waiting")
	byGrants, _ := sortKey("grants")
	require.Equal(t, []string{"llm", "backup", "api", "idle"}, names(topView{}, &prev))
	require.Equal(t, []string{"api", "backup", "idle", "llm"}, names(topView{sort: byName}, &prev))
	require.Equal(t, []string{"llm", "idle", "backup", "api"}, names(topView{sort: byName, reverse: true}, &prev))
	require.Equal(t, []string{"backup", "llm", "api", "idle"}, names(topView{sort: byWaiting}, &prev))
	require.Equal(t, []string{"api", "llm", "backup", "idle"}, names(topView{sort: byGrants}, &prev))
	require.Equal(t, []string{"backup"}, names(topView{filter: "UP"}, &prev))

	text := frameText(frameInput{mnt: "/mnt/rl", interval: time.Second, view: topView{sort: byName, filter: "i"}, cur: &cur})
	require.Contains(t, text, `; sorted by name; filter: "i"`)
	require.Contains(t, text, "2 meters shown, 1 meter not readable by this user, 2 meters left out by the filter")
	require.Regexp(t, `(?m)^api\s+rate=10/1s,burst=5 .* 1 of 5 calls\s+1\s+0\s+-\s+now `, text, "no rate before a second reading")
	require.NotContains(t, text, "backup")
}

// TestTopLiveKeys drives the live view on a simulated terminal: a sort
// key and the filter change the frame, q quits.
func TestTopLiveKeys(t *testing.T) {
	scr := &shownScreen{SimulationScreen: tcell.NewSimulationScreen("UTF-8")}
	require.NoError(t, scr.Init())
	scr.SetSize(200, 30)
	_, cur := topFixture()
	done := make(chan error, 1)
	go func() {
		done <- topLive(context.Background(), scr, topConfig{path: "/mnt/rl", interval: time.Hour}, cur)
	}()
	screen := func() string {
		scr.mu.Lock()
		defer scr.mu.Unlock()
		return scr.text
	}
	waitScreen := func(what string, cond func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond(screen()) {
			if time.Now().After(deadline) {
				t.Fatalf("the screen never showed %s:\n%s", what, screen())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	firstRow := func(s string) string {
		lines := strings.Split(s, "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "METER") && i+1 < len(lines) {
				return strings.Fields(lines[i+1])[0]
			}
		}
		return ""
	}
	waitScreen("llm first, sorted by use", func(s string) bool { return firstRow(s) == "llm" && strings.Contains(s, "sorted by use") })
	scr.InjectKey(tcell.KeyRune, 'n', tcell.ModNone)
	waitScreen("api first, sorted by name", func(s string) bool { return firstRow(s) == "api" && strings.Contains(s, "sorted by name;") })
	for _, r := range "/ba" {
		scr.InjectKey(tcell.KeyRune, r, tcell.ModNone)
	}
	scr.InjectKey(tcell.KeyEnter, 0, tcell.ModNone)
	waitScreen("the filter ba", func(s string) bool {
		return strings.Contains(s, `filter: "ba"`) && firstRow(s) == "backup" && !strings.Contains(s, "llm ")
	})
	scr.InjectKey(tcell.KeyRune, 'q', tcell.ModNone)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("q did not quit")
	}
}

// shownScreen is a simulated terminal that keeps, as text, what the last
// Show put on it: the test reads that while the view draws the next.
type shownScreen struct {
	tcell.SimulationScreen
	mu   sync.Mutex
	text string
}

func (s *shownScreen) Show() {
	s.SimulationScreen.Show()
	cells, w, _ := s.GetContents()
	var b strings.Builder
	for i, c := range cells {
		if len(c.Runes) > 0 {
			b.WriteRune(c.Runes[0])
		} else {
			b.WriteByte(' ')
		}
		if (i+1)%w == 0 {
			b.WriteByte('\n')
		}
	}
	s.mu.Lock()
	s.text = b.String()
	s.mu.Unlock()
}
