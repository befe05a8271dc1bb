package main

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rlfs/rlfs/meter"
)

// segStyle is how the terminal shows a piece of a frame; plain text
// ignores it.
type segStyle int

const (
	stPlain segStyle = iota
	stTitle
	stHeader
	stSorted // the header of the column the rows are sorted by
	stLow    // a bar under half its limit
	stMid    // a bar from half to 90 %
	stHigh   // a bar at 90 % or more
	stWarn   // a pause, an unreachable store, an error
	stDim
)

// topSeg is a piece of a line of a frame, in one style.
type topSeg struct {
	text  string
	style segStyle
}

// topLine is one line of a frame.
type topLine []topSeg

// String is the line as plain text, without trailing spaces.
func (l topLine) String() string {
	var b strings.Builder
	for _, s := range l {
		b.WriteString(s.text)
	}
	return strings.TrimRight(b.String(), " ")
}

// barWidth is how many characters a bar has between its brackets.
const barWidth = 20

// frameInput is what a frame shows.
type frameInput struct {
	mnt         string
	interval    time.Duration
	view        topView
	prev, cur   *topSample // cur nil: nothing read yet
	err         error      // the last reading failed
	interactive bool       // show the keys and the filter being typed
	typing      bool       // the filter is being typed
}

// buildFrame lays out one frame: a title, the fleet line on a fleet, a
// count of meters, then the table of meters (one line per limit, the
// meter-wide columns on its first line), then the meters this user may not
// read.
func buildFrame(in frameInput) []topLine {
	at := "not read yet"
	if in.cur != nil {
		at = meter.FormatTime(in.cur.at)
	}
	filter := "none"
	if in.view.filter != "" || in.typing {
		filter = strconv.Quote(in.view.filter)
	}
	order := topSorts[in.view.sort].name
	if in.view.reverse {
		order += ", reversed"
	}
	lines := []topLine{{{fmt.Sprintf("rlfs top %s at %s, every %s; sorted by %s; filter: %s", in.mnt, at, in.interval, order, filter), stTitle}}}
	if in.interactive {
		keys := "keys: u use, n name, w waiting, g grants/s, r reverse, / filter, q quit"
		if in.typing {
			keys = "filter: type a part of the meters' names; Enter keeps it, Esc clears it"
		}
		lines = append(lines, topLine{{keys, stDim}})
	}
	if in.err != nil {
		lines = append(lines, topLine{{"rlfs top: " + in.err.Error(), stWarn}})
	}
	if in.cur == nil {
		return lines
	}
	var fleet bytes.Buffer
	printFleet(&fleet, reportsOf(in.cur.meters))
	if s := strings.TrimSuffix(fleet.String(), "\n"); s != "" {
		style := stPlain
		if strings.Contains(s, "UNREACHABLE") {
			style = stWarn
		}
		lines = append(lines, topLine{{s, style}})
	}
	rows, hidden := in.view.arrange(topRows(in.prev, *in.cur))
	unreadable := in.view.filterUnreadable(in.cur.unreadable)
	lines = append(lines, topLine{{countLine(len(rows), len(unreadable), hidden+len(in.cur.unreadable)-len(unreadable)), stPlain}}, nil)
	return append(lines, table(rows, unreadable, in)...)
}

// reportsOf is the reports of ms, for printFleet.
func reportsOf(ms []topMeter) []meter.Report {
	out := make([]meter.Report, len(ms))
	for i, m := range ms {
		out[i] = m.Report
	}
	return out
}

// countLine says how many meters the frame shows, and how many it does
// not and why.
func countLine(shown, unreadable, filtered int) string {
	s := plural(shown, "meter") + " shown"
	if unreadable > 0 {
		s += ", " + plural(unreadable, "meter") + " not readable by this user"
	}
	if filtered > 0 {
		s += ", " + plural(filtered, "meter") + " left out by the filter"
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// The table's columns; HOSTS only on a fleet.
var topColumns = []string{"METER", "LIMIT", "USE", "USED", "IN PROGRESS", "WAITING", "GRANTS/S", "NEXT GRANT", "PAUSE", "HOSTS"}

// sortColumn is the column of each order of topSorts.
var sortColumn = map[rune]string{'u': "USE", 'n': "METER", 'w': "WAITING", 'g': "GRANTS/S"}

// table lays out the rows as aligned columns.
func table(rows []topRow, unreadable []unreadableMeter, in frameInput) []topLine {
	cols := topColumns
	fleet := false
	for _, r := range in.cur.meters {
		fleet = fleet || r.Host != ""
	}
	if !fleet {
		cols = cols[:len(cols)-1]
	}
	var cells [][][]topSeg
	head := make([][]topSeg, len(cols))
	for i, c := range cols {
		style := stHeader
		if c == sortColumn[topSorts[in.view.sort].key] {
			style = stSorted
		}
		head[i] = []topSeg{{c, style}}
	}
	cells = append(cells, head)
	for _, r := range rows {
		cells = append(cells, rowCells(r, in.cur.at, len(cols))...)
	}
	for _, u := range unreadable {
		line := make([][]topSeg, len(cols))
		line[0] = []topSeg{{shorten(u.Name, nameColumn), stPlain}}
		line[1] = []topSeg{{u.Error, stDim}}
		cells = append(cells, line)
	}
	return align(cells, len(unreadable))
}

// align pads every cell to its column's width. The last n lines (the
// unreadable meters) span the columns after the first, so they do not
// widen them.
func align(cells [][][]topSeg, n int) []topLine {
	width := make([]int, len(cells[0]))
	for _, line := range cells[:len(cells)-n] {
		for c, cell := range line {
			width[c] = max(width[c], segsLen(cell))
		}
	}
	var out []topLine
	for i, line := range cells {
		var l topLine
		for c, cell := range line {
			l = append(l, cell...)
			if c < len(line)-1 && (i < len(cells)-n || c == 0) {
				l = append(l, topSeg{strings.Repeat(" ", width[c]-segsLen(cell)+2), stPlain})
			}
		}
		out = append(out, l)
	}
	return out
}

func segsLen(segs []topSeg) int {
	n := 0
	for _, s := range segs {
		n += utf8.RuneCountInString(s.text)
	}
	return n
}

// rowCells are the table lines of one meter: one per limit (one with no
// limit columns for a meter with none), the meter-wide columns on the
// first.
func rowCells(r topRow, now time.Time, ncols int) [][][]topSeg {
	n := max(1, len(r.limits))
	lines := make([][][]topSeg, n)
	for i := range lines {
		lines[i] = make([][]topSeg, ncols)
	}
	for i, l := range r.limits {
		lines[i][1] = []topSeg{{l.item, stPlain}}
		lines[i][2] = barSegs(l)
		lines[i][3] = []topSeg{{fmt.Sprintf("%d of %d %s", l.used, l.limit, l.unit), stPlain}}
	}
	if len(r.limits) == 0 {
		lines[0][1] = []topSeg{{"none", stDim}}
	}
	first := lines[0]
	first[0] = []topSeg{{shorten(r.Name, nameColumn), stPlain}}
	first[4] = []topSeg{{strconv.Itoa(r.InProgress), stPlain}}
	first[5] = []topSeg{{"-", stPlain}}
	if w := r.waiting(); w >= 0 {
		first[5][0].text = strconv.Itoa(w)
	}
	first[6] = []topSeg{{"-", stPlain}}
	if !math.IsNaN(r.rate) {
		first[6][0].text = strconv.FormatFloat(r.rate, 'f', 1, 64)
	}
	first[7] = []topSeg{{nextGrantCell(r.NextGrant), stPlain}}
	first[8] = pauseCell(r.Pause, now)
	if ncols > 9 {
		hosts := make([]string, len(r.Hosts))
		for i, h := range r.Hosts {
			hosts[i] = meter.Escape(h)
		}
		slices.Sort(hosts)
		first[9] = []topSeg{{strings.Join(hosts, ","), stPlain}}
		if len(hosts) == 0 {
			first[9][0].text = "-"
		}
	}
	return lines
}

// barSegs draws how much of l is used: "[#####...............]  25%".
// A limit used at all shows at least one mark; the percentage is rounded
// down, so that 100% means at the limit.
func barSegs(l topLimit) []topSeg {
	ratio := l.ratio()
	filled := min(barWidth, int(math.Ceil(ratio*barWidth)))
	style := stLow
	switch {
	case ratio >= 0.9:
		style = stHigh
	case ratio >= 0.5:
		style = stMid
	}
	return []topSeg{
		{"[", stPlain},
		{strings.Repeat("#", filled), style},
		{strings.Repeat(".", barWidth-filled), stDim},
		{fmt.Sprintf("] %3d%%", int(math.Floor(ratio*100+1e-9))), stPlain},
	}
}

// nextGrantCell shortens the status's next grant: "in 840ms" for a time
// with its distance; "now", "after a release" and "when the store is
// back" as they are.
func nextGrantCell(s string) string {
	if i := strings.Index(s, " (in "); i >= 0 && strings.HasSuffix(s, ")") {
		return s[i+2 : len(s)-1]
	}
	return s
}

// pauseCell says how long the meter stays paused, by whom and how: "29s
// more, by root, from the pause file"; "-" when not paused.
func pauseCell(p *topPause, now time.Time) []topSeg {
	if p == nil {
		return []topSeg{{"-", stPlain}}
	}
	left := p.Until
	if until, err := time.Parse(time.RFC3339Nano, p.Until); err == nil {
		left = max(0, until.Sub(now)).Round(time.Second).String() + " more"
	}
	s := "paused " + left
	if p.By != "" {
		s += ", by " + p.By
	}
	if p.From != "" {
		s += ", from " + p.From
	}
	return []topSeg{{s, stWarn}}
}
