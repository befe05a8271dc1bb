package test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// tmuxTool is tmux, which runs a terminal program in a pseudo-terminal
// of its own and shows its screen as text (capture-pane).
var (
	tmuxTool     = &interpreter{name: "tmux"}
	tmuxResolved sync.Once
)

// tmuxSession is one tmux server with one window, on a socket of the
// test's; cleanup kills the server and what runs in it.
type tmuxSession struct {
	tmux, sock string
}

// startTmux runs argv in a new tmux window of width × height.
func startTmux(t *testing.T, width, height string, argv ...string) *tmuxSession {
	t.Helper()
	tmuxResolved.Do(tmuxTool.resolveByLookPath)
	s := &tmuxSession{tmux: tmuxTool.need(t), sock: filepath.Join(t.TempDir(), "tmux.sock")}
	out, err := exec.Command(s.tmux, append([]string{"-S", s.sock, "-f", "/dev/null", "new-session", "-d", "-x", width, "-y", height, "--"}, argv...)...).CombinedOutput()
	require.NoError(t, err, "tmux new-session: %s", out)
	t.Cleanup(func() {
		if out, err := exec.Command(s.tmux, "-S", s.sock, "kill-server").CombinedOutput(); err != nil && !strings.Contains(string(out), "no server") {
			t.Logf("tmux kill-server: %v: %s", err, out)
		}
	})
	return s
}

// screen is what the window shows now; "" once the program exited.
func (s *tmuxSession) screen() string {
	out, err := exec.Command(s.tmux, "-S", s.sock, "capture-pane", "-p", "-t", "0").Output()
	if err != nil {
		return ""
	}
	return string(out)
}

// keys types keys (tmux's names: "n", "/", "Enter", "Escape") into the
// window.
func (s *tmuxSession) keys(t *testing.T, keys ...string) {
	t.Helper()
	out, err := exec.Command(s.tmux, append([]string{"-S", s.sock, "send-keys", "-t", "0"}, keys...)...).CombinedOutput()
	require.NoError(t, err, "tmux send-keys %q: %s", keys, out)
}

// waitScreen polls the window until cond holds for what it shows.
func (s *tmuxSession) waitScreen(t *testing.T, what string, cond func(string) bool) string {
	t.Helper()
	var last string
	waitFor(t, "the terminal shows "+what, func() bool {
		last = s.screen()
		return cond(last)
	}, func() string { return "the terminal showed:\n" + last })
	return last
}

// firstMeter is the name on the first row under the table's header.
func firstMeter(screen string) string {
	lines := strings.Split(screen, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "METER ") && i+1 < len(lines) {
			if f := strings.Fields(lines[i+1]); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}

// TestTopLive drives the live view of rlfs top in a real terminal (tmux):
// it sorts by use, n sorts by name, / with a text filters the meters, q
// quits; each frame is read off the screen, waiting until it shows what a
// key must change, so a slow machine only delays it.
func TestTopLive(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "alpha=5/1h", "omega=concurrency=1", "mid=10/1h,concurrency=0")
	shHold(t, d.path("omega", "acquire"))
	for range 4 {
		require.NoError(t, openNonblock(d.path("mid", "acquire")))
	}
	s := startTmux(t, "160", "30", rlfsBin, "top", "--interval", "200ms", d.mnt)

	screen := s.waitScreen(t, "the meters sorted by use", func(sc string) bool {
		return strings.Contains(sc, "sorted by use (closest to a limit first)") && firstMeter(sc) == "omega"
	})
	require.Contains(t, screen, "keys: u use, n name, w waiting, g grants/s, r reverse, / filter, q quit")
	require.Regexp(t, `(?m)^omega\s+concurrency=1\s+\[#{20}\] 100%\s+1 of 1 calls\s+1\s+0\s`, screen)
	require.Regexp(t, `(?m)^mid\s+10/1h\s+\[#{8}\.{12}\]  40%\s+4 of 10 calls\s`, screen)

	s.keys(t, "n")
	screen = s.waitScreen(t, "the meters sorted by name", func(sc string) bool {
		return strings.Contains(sc, "; sorted by name;") && firstMeter(sc) == "alpha"
	})
	require.Less(t, strings.Index(screen, "\nmid "), strings.Index(screen, "\nomega "), "mid before omega by name:\n%s", screen)

	s.keys(t, "/", "m", "e", "g", "Enter")
	screen = s.waitScreen(t, `the filter "meg"`, func(sc string) bool {
		return strings.Contains(sc, `filter: "meg"`) && strings.Contains(sc, "1 meter shown, 2 meters left out by the filter")
	})
	require.Equal(t, "omega", firstMeter(screen))
	require.NotContains(t, screen, "\nalpha ")

	s.keys(t, "/", "Escape")
	s.waitScreen(t, "the filter cleared", func(sc string) bool {
		return strings.Contains(sc, "filter: none") && strings.Contains(sc, "3 meters shown")
	})

	s.keys(t, "q")
	s.waitScreen(t, "rlfs top gone", func(sc string) bool { return !strings.Contains(sc, "rlfs top ") })
}
