package main

import (
	"context"
	"fmt"
	"time"

	"github.com/gdamore/tcell/v2"
)

// newTopScreen opens the terminal for the live view.
func newTopScreen() (tcell.Screen, error) {
	scr, err := tcell.NewScreen()
	if err == nil {
		err = scr.Init()
	}
	if err != nil {
		return nil, fmt.Errorf("open the terminal for rlfs top: %w; set TERM to your terminal's type (such as xterm-256color), or pass --once for plain text", err)
	}
	return scr, nil
}

// topRead is a reading posted to the screen's event loop.
type topRead struct {
	s   topSample
	err error
}

// topState is the live view: the readings and what the user chose.
type topState struct {
	in frameInput
}

// topLive runs the live view on scr (initialised; topLive finishes it)
// until the user quits or ctx ends. The meters are read in a goroutine
// every interval; keys redraw the frame at once from the last reading.
func topLive(ctx context.Context, scr tcell.Screen, c topConfig, first topSample) error {
	defer scr.Fini()
	st := &topState{in: frameInput{mnt: c.path, interval: c.interval, view: c.view, cur: &first, interactive: true}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		t := time.NewTicker(c.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				_ = scr.PostEvent(tcell.NewEventInterrupt(nil))
				return
			case <-t.C:
			}
			s, err := readTopSample(c.path)
			if ctx.Err() == nil {
				_ = scr.PostEvent(tcell.NewEventInterrupt(topRead{s, err}))
			}
		}
	}()
	st.draw(scr)
	for {
		switch ev := scr.PollEvent().(type) {
		case nil:
			return nil // the screen was finished
		case *tcell.EventResize:
			scr.Sync()
		case *tcell.EventInterrupt:
			r, ok := ev.Data().(topRead)
			if !ok {
				return nil // ctx ended
			}
			st.read(r)
		case *tcell.EventKey:
			if st.key(ev) {
				return nil
			}
		}
		st.draw(scr)
	}
}

// read takes a new reading; a failed one keeps the last frame and shows
// the error above it.
func (st *topState) read(r topRead) {
	st.in.err = r.err
	if r.err != nil {
		return
	}
	st.in.prev, st.in.cur = st.in.cur, &r.s
}

// key acts on a key; it reports whether the user quit.
func (st *topState) key(ev *tcell.EventKey) bool {
	v := &st.in.view
	if st.in.typing {
		switch ev.Key() {
		case tcell.KeyEnter:
			st.in.typing = false
		case tcell.KeyEscape:
			st.in.typing, v.filter = false, ""
		case tcell.KeyBackspace, tcell.KeyBackspace2:
			if r := []rune(v.filter); len(r) > 0 {
				v.filter = string(r[:len(r)-1])
			}
		case tcell.KeyCtrlC:
			return true
		case tcell.KeyRune:
			v.filter += string(ev.Rune())
		}
		return false
	}
	switch ev.Key() {
	case tcell.KeyEscape, tcell.KeyCtrlC:
		return true
	case tcell.KeyRune:
	default:
		return false
	}
	switch r := ev.Rune(); r {
	case 'q':
		return true
	case 'r':
		v.reverse = !v.reverse
	case '/':
		st.in.typing = true
	default:
		if i, ok := sortKey(string(r)); ok {
			v.sort = i
		}
	}
	return false
}

// topStyles maps a frame's styles to the terminal's.
var topStyles = map[segStyle]tcell.Style{
	stPlain:  tcell.StyleDefault,
	stTitle:  tcell.StyleDefault.Bold(true),
	stHeader: tcell.StyleDefault.Bold(true),
	stSorted: tcell.StyleDefault.Bold(true).Underline(true),
	stLow:    tcell.StyleDefault.Foreground(tcell.ColorGreen),
	stMid:    tcell.StyleDefault.Foreground(tcell.ColorYellow),
	stHigh:   tcell.StyleDefault.Foreground(tcell.ColorRed).Bold(true),
	stWarn:   tcell.StyleDefault.Foreground(tcell.ColorRed).Bold(true),
	stDim:    tcell.StyleDefault.Dim(true),
}

// draw shows the frame, cut to the screen; lines that do not fit are
// counted on the last line.
func (st *topState) draw(scr tcell.Screen) {
	scr.Clear()
	lines := buildFrame(st.in)
	w, h := scr.Size()
	if len(lines) > h && h > 0 {
		more := len(lines) - h + 1
		lines = append(lines[:h-1], topLine{{fmt.Sprintf("… %d more lines: make the terminal taller, or filter with /", more), stDim}})
	}
	for y, l := range lines {
		x := 0
		for _, seg := range l {
			for _, r := range seg.text {
				if x >= w {
					break
				}
				scr.SetContent(x, y, r, nil, topStyles[seg.style])
				x++
			}
		}
	}
	if st.in.typing {
		scr.ShowCursor(len([]rune(lines[0].String()))-1, 0) // on the filter's closing quote
	} else {
		scr.HideCursor()
	}
	scr.Show()
}
