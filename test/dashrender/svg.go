package main

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// The layout: panels in two columns, each a plot with its title above and
// its legend below, on Grafana's dark colours.
const (
	panelW, panelH = 640, 300
	plotL, plotR   = 64, 16 // plot margins inside a panel
	plotT, plotB   = 36, 92
	gap            = 12
)

var palette = []string{"#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#705da0", "#37872d", "#fade2a", "#447ebc", "#c15c17"}

// drawSVG writes the panels as one SVG image.
func drawSVG(w io.Writer, panels []panel, times []time.Time, note string) error {
	from, to := times[0], times[len(times)-1]
	bw := bufio.NewWriter(w)
	notes := wrap(note, 170)
	header := 44 + 16*len(notes)
	rows := (len(panels) + 1) / 2
	width, height := 2*panelW+3*gap, header+rows*(panelH+gap)+gap
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="DejaVu Sans, sans-serif">`+"\n", width, height)
	fmt.Fprintf(bw, `<rect width="%d" height="%d" fill="#111217"/>`+"\n", width, height)
	fmt.Fprintf(bw, `<text x="%d" y="28" fill="#d8d9da" font-size="18">rlfs meters: the panels of docs/grafana/rlfs.json, %s to %s UTC</text>`+"\n",
		gap, from.UTC().Format("2006-01-02 15:04:05"), to.UTC().Format("15:04:05"))
	for i, l := range notes {
		fmt.Fprintf(bw, `<text x="%d" y="%d" fill="#8e8e8e" font-size="12">%s</text>`+"\n", gap, 50+16*i, html.EscapeString(l))
	}
	for i, p := range panels {
		x := gap + (i%2)*(panelW+gap)
		y := header + (i/2)*(panelH+gap)
		drawPanel(bw, p, x, y, times)
	}
	fmt.Fprintln(bw, "</svg>")
	return bw.Flush()
}

func drawPanel(w io.Writer, p panel, x, y int, times []time.Time) {
	from, to := times[0], times[len(times)-1]
	fmt.Fprintf(w, `<g transform="translate(%d,%d)">`+"\n", x, y)
	fmt.Fprintf(w, `<rect width="%d" height="%d" rx="3" fill="#181b1f" stroke="#2a2d33"/>`+"\n", panelW, panelH)
	fmt.Fprintf(w, `<text x="10" y="22" fill="#d8d9da" font-size="14" font-weight="bold">%s</text>`+"\n", html.EscapeString(p.title))
	pw, ph := panelW-plotL-plotR, panelH-plotT-plotB
	top, points := p.ymax, 0
	for _, s := range p.lines {
		for _, v := range s.pts {
			if !math.IsNaN(v) {
				top, points = max(top, v), points+1
			}
		}
	}
	if points == 0 {
		msg := "no data"
		if len(p.lines) == 0 && p.empty != "" {
			msg = p.empty
		}
		fmt.Fprintf(w, `<text x="%d" y="%d" fill="#8e8e8e" font-size="13" text-anchor="middle">%s</text>`+"\n", panelW/2, panelH/2, html.EscapeString(msg))
		fmt.Fprintln(w, "</g>")
		return
	}
	if top == 0 {
		top = 1 // all zero: a flat line at the bottom
	}
	top = niceTop(top)
	for i := 0; i <= 4; i++ { // the y axis: 5 lines
		v := top * float64(i) / 4
		yy := plotT + ph - int(float64(ph)*float64(i)/4)
		fmt.Fprintf(w, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#2a2d33"/>`+"\n", plotL, plotL+pw, yy, yy)
		fmt.Fprintf(w, `<text x="%d" y="%d" fill="#8e8e8e" font-size="11" text-anchor="end">%s</text>`+"\n", plotL-6, yy+4, formatValue(v, p.unit))
	}
	span := to.Sub(from)
	for i := 0; i <= 4; i++ { // the x axis: times
		t := from.Add(span * time.Duration(i) / 4)
		xx := plotL + pw*i/4
		fmt.Fprintf(w, `<text x="%d" y="%d" fill="#8e8e8e" font-size="11" text-anchor="middle">%s</text>`+"\n", xx, plotT+ph+16, t.UTC().Format("15:04:05"))
	}
	for i, s := range p.lines {
		color := palette[i%len(palette)]
		fmt.Fprintf(w, `<path fill="none" stroke="%s" stroke-width="1.6" d="%s"/>`+"\n", color, path(s.pts, times, pw, ph, top))
		lx, ly := 10+(i%3)*(panelW/3), plotT+ph+34+(i/3)*16
		fmt.Fprintf(w, `<rect x="%d" y="%d" width="12" height="4" fill="%s"/>`+"\n", lx, ly-5, color)
		fmt.Fprintf(w, `<text x="%d" y="%d" fill="#ccccdc" font-size="11">%s</text>`+"\n", lx+16, ly, html.EscapeString(shorten(s.name, 32)))
	}
	fmt.Fprintln(w, "</g>")
}

// path is an SVG path through the points, at their scrapes' times,
// broken where they are NaN.
func path(pts []float64, times []time.Time, pw, ph int, top float64) string {
	span := times[len(times)-1].Sub(times[0]).Seconds()
	var b strings.Builder
	pen := false
	for i, v := range pts {
		if math.IsNaN(v) {
			pen = false
			continue
		}
		x := float64(plotL) + float64(pw)*times[i].Sub(times[0]).Seconds()/max(span, 1e-9)
		y := float64(plotT+ph) - float64(ph)*math.Min(v, top)/top
		cmd := "L"
		if !pen {
			cmd = "M"
		}
		fmt.Fprintf(&b, "%s%.1f %.1f ", cmd, x, y)
		pen = true
	}
	return b.String()
}

// niceTop rounds v up to 1, 2 or 5 times a power of ten.
func niceTop(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p*1.0000001 {
			return m * p
		}
	}
	return 10 * p
}

// formatValue shows an axis value in the panel's unit.
func formatValue(v float64, unit string) string {
	switch unit {
	case "%":
		return strconv.Itoa(int(math.Round(v*100))) + "%"
	case "s":
		switch {
		case v == 0:
			return "0"
		case v < 1:
			return strconv.FormatFloat(v*1000, 'g', 3, 64) + " ms"
		}
		return strconv.FormatFloat(v, 'g', 3, 64) + " s"
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + unit
}

func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// wrap cuts s into lines of at most n characters, between words.
func wrap(s string, n int) []string {
	var out []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > n {
			out = append(out, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		out = append(out, line)
	}
	return out
}
