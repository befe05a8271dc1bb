package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Filling a meter for the size sweeps: held calls (s1) through a holder
// process, completed calls in a window (s2) through fillProcs looping
// processes; both in chunks, under a time budget per level (fillPlan).

// fillPlan paces the filling of a meter from one level to the next. Each
// chunk is a fifth of the way (at least 100 calls), and no longer than a
// third of the budget at the pace of the chunk before (the time of one
// call, as the clients timed it). After each chunk it projects the rest at
// that pace, a lower bound when a call costs more the more the meter holds
// (and about right when it does not): if the budget would not suffice, it
// says stop. Before the first chunk it says stop only when the pace of the
// level before projects twice the budget: that projection is of smaller
// sizes, but one noisy chunk of the machine's other work must not stop a fill.
type fillPlan struct {
	budget   time.Duration
	from, to int
	spent    time.Duration
	last     *time.Duration // the time of one call in the last chunk, kept from level to level
}

// newFillPlan plans the fill from from to to, at the pace last (0: none
// known yet; it is updated).
func newFillPlan(budget time.Duration, from, to int, last *time.Duration) *fillPlan {
	return &fillPlan{budget: budget, from: from, to: to, last: last}
}

// hopeless says why the fill should not even start ("": it may).
func (p *fillPlan) hopeless() string {
	left := p.to - p.from
	if rest := *p.last * time.Duration(left); *p.last > 0 && rest > 2*p.budget {
		return fmt.Sprintf("not tried: at %s a call (the pace at %d), the %d to add need %s or more, over twice the budget of %s",
			us(p.last.Seconds()*1e6), p.from, left, rest.Round(time.Second), p.budget)
	}
	return ""
}

// chunk is how many calls to add next, holding have.
func (p *fillPlan) chunk(have int) int {
	n := max((p.to-p.from)/5, 100)
	if *p.last > 0 {
		n = min(n, max(int(p.budget/3 / *p.last), 100))
	}
	return min(n, p.to-have)
}

// after records a chunk of n calls that took wall (paced: the time the
// calls themselves took), leaving have; it returns why the fill stops, or
// "" to go on.
func (p *fillPlan) after(n int, wall, paced time.Duration, have int) string {
	p.spent += wall
	*p.last = paced / time.Duration(max(n, 1))
	left := p.to - have
	if left <= 0 {
		return ""
	}
	if rest := *p.last * time.Duration(left); p.spent+rest > p.budget {
		return fmt.Sprintf("stopped at %d after %s: at %s a call (the last %d), the %d left need %s or more, over the budget of %s for %d→%d",
			have, p.spent.Round(100*time.Millisecond), us(p.last.Seconds()*1e6), n, left, rest.Round(time.Second), p.budget, p.from, p.to)
	}
	return ""
}

// holder drives a `bench client hold` process.
type holder struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr bytes.Buffer
	count  int    // calls it holds
	errs   string // errors of its last target
}

func startHolder(self, path string) (*holder, error) {
	h := &holder{cmd: exec.Command(self, "client", "hold", "-path", path)}
	h.cmd.Env = clientEnv
	h.cmd.Stderr = &h.stderr
	var err error
	if h.in, err = h.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := h.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	h.out = bufio.NewScanner(out)
	return h, h.cmd.Start()
}

// to makes the holder hold n calls and returns how long the new opens took.
func (h *holder) to(n int) (time.Duration, error) {
	if _, err := fmt.Fprintln(h.in, n); err != nil {
		return 0, fmt.Errorf("holder: %w (%s)", err, strings.TrimSpace(h.stderr.String()))
	}
	type answer struct {
		line string
		ok   bool
	}
	got := make(chan answer, 1)
	go func() { ok := h.out.Scan(); got <- answer{h.out.Text(), ok} }()
	var a answer
	select {
	case a = <-got:
	case <-time.After(clientTimeout):
		_ = h.cmd.Process.Kill()
		return 0, fmt.Errorf("holder: no answer for %d calls within %s", n, clientTimeout)
	}
	f := strings.Fields(a.line)
	if !a.ok || len(f) != 4 || f[0] != "held" {
		return 0, fmt.Errorf("holder said %q (%s)", a.line, strings.TrimSpace(h.stderr.String()))
	}
	h.count, _ = strconv.Atoi(f[1])
	ns, _ := strconv.ParseInt(f[2], 10, 64)
	h.errs = f[3]
	return time.Duration(ns), nil
}

// stop ends the holder: end of its stdin, then SIGKILL if it lingers.
func (h *holder) stop() {
	h.in.Close()
	done := make(chan struct{})
	go func() { _ = h.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(stopTimeout):
		_ = h.cmd.Process.Kill()
		<-done
	}
}

// windowKey is the status line of the s2 meter's window.
var windowKey = "window " + strings.Split(windowSpec, ",")[0]

// fillWindow fills meter name of t until its window holds level calls.
func (b *bench) fillWindow(t *sizeTarget, name string, level int) error {
	status := filepath.Join(t.dir(name), "status")
	have, err := waitStatusValue(status, windowKey, 0, time.Second)
	if err != nil {
		return err
	}
	plan := newFillPlan(b.cfg.fillBudget, have, level, &t.pace)
	if why := plan.hopeless(); why != "" {
		t.stopAt(level, why)
		return nil
	}
	procs := b.cfg.fillProcs
	for have < level {
		n := plan.chunk(have)
		per := (n + procs - 1) / procs
		start := time.Now()
		outs, err := runClients(procs, b.self, "client", "fill", "-path", filepath.Join(t.dir(name), "acquire"), "-n", strconv.Itoa(per))
		if err != nil {
			return err
		}
		made, paced := 0, time.Duration(0)
		for _, o := range outs {
			f := strings.Fields(o)
			if len(f) != 3 {
				return fmt.Errorf("fill client said %q", o)
			}
			b.clientErrors("size sweep fill", f[2])
			k, _ := strconv.Atoi(f[0])
			ns, _ := strconv.ParseInt(f[1], 10, 64)
			made, paced = made+k, max(paced, time.Duration(ns))
		}
		took := time.Since(start)
		t.fillSecs += took.Seconds()
		if have, err = waitStatusValue(status, windowKey, have+made, 30*time.Second); err != nil {
			return err
		}
		if made == 0 {
			t.stopAt(level, "the fill clients made no call (see the client errors)")
			return nil
		}
		if why := plan.after(made, took, paced, have); why != "" {
			t.stopAt(level, why)
			return nil
		}
	}
	b.s.add(t.key("s2f", level, ""), t.fillSecs)
	return nil
}

// waitStatusValue polls the status file until the leading number of line
// key is at least want, and returns it; an error after timeout.
func waitStatusValue(path, key string, want int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		data, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		got := statusInt(string(data), key)
		if got >= want {
			return got, nil
		}
		if time.Now().After(deadline) {
			return got, fmt.Errorf("%s: %s is %d after %s, want %d", path, key, got, timeout, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sweepWindow is step s2 on each store.
func (b *bench) sweepWindow() error {
	for _, st := range sizeStores {
		if err := b.sweepWindowOn(st.id); err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
	}
	return nil
}

// sweepWindowOn runs s2 on one store: each round fills a fresh meter
// level by level, measuring at each level beside a fresh reference.
func (b *bench) sweepWindowOn(store string) error {
	ts, err := b.startSizeTargets("s2", store)
	defer b.stopSizeTargets(ts)
	if err != nil {
		return err
	}
	b.sized = append(b.sized, ts...)
	for r := range b.cfg.sizeRounds {
		name := fmt.Sprintf("w%d", r+1)
		for _, t := range ts {
			t.fillSecs, t.pace = 0, 0
			if err := b.freshMeter(t, name); err != nil {
				return err
			}
		}
		for li, level := range b.cfg.s2Sizes {
			for _, t := range ts {
				if level > 0 && t.reaches(level) {
					b.progress("s2 %s%s round %d/%d: fill the window to %d", storeName(store), t.bin, r+1, b.cfg.sizeRounds, level)
					if err := b.fillWindow(t, name, level); err != nil {
						return err
					}
				}
			}
			sized := func(t *sizeTarget) (string, error) {
				n, err := waitStatusValue(filepath.Join(t.dir(name), "status"), windowKey, level, 30*time.Second)
				b.s.add(t.key("s2n", level, ""), float64(n))
				return name, err
			}
			if err := b.measurePairs("s2", ts, level, li+r, b.cfg.s2Cycles, sized); err != nil {
				return err
			}
		}
		for _, t := range ts {
			if err := removeMeter(t.dir(name)); err != nil {
				b.suspect("s2: %v", err)
			}
		}
	}
	return nil
}
