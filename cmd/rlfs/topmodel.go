package main

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// topMeter is one meter as rlfs top reads it: its status.json (the same
// reading as rlfs status), with the pause the daemon reports while the
// meter is paused.
type topMeter struct {
	meter.Report
	Pause *topPause `json:"pause,omitempty"`
}

// topPause is the "pause" of a status.json: until when, who set it, and
// how (the pause file, an acquire descriptor, rlfs run).
type topPause struct {
	Until string `json:"until"`
	By    string `json:"by"`
	From  string `json:"from"`
}

// topSample is one reading of a mount's meters.
type topSample struct {
	at         time.Time
	meters     []topMeter
	unreadable []unreadableMeter
}

// topLimit is one limit of a meter and how much of it is used now: a
// window (calls or units counting), a bucket (tokens taken of its burst)
// or the concurrency (calls in progress).
type topLimit struct {
	item        string // as in the spec: "75/1h", "units:100/1m", "rate=10/1s,burst=5", "concurrency=4"
	used, limit int64
	unit        string // "calls" or "units"
}

// ratio is how much of the limit is used: 1 at the limit, more for a
// units window in debt.
func (l topLimit) ratio() float64 {
	if l.limit <= 0 {
		return 0
	}
	return float64(l.used) / float64(l.limit)
}

// topRow is one meter of a frame, with what top works out from two
// samples.
type topRow struct {
	topMeter
	limits []topLimit
	rate   float64 // grants per second, fleet-wide; NaN: not known yet
	near   float64 // closeness to a limit: the largest ratio, 1 while paused
}

// limitsOf lists the limits of r in the order of its spec: windows,
// buckets, then the concurrency (none when unlimited).
func limitsOf(r meter.Report) []topLimit {
	var out []topLimit
	for _, w := range r.Windows {
		unit := "calls"
		n := w.Used + w.Free
		if strings.HasPrefix(w.Limit, "units:") {
			unit = "units"
		}
		if i := strings.IndexByte(w.Limit, '/'); i > 0 {
			if v, err := strconv.Atoi(strings.TrimPrefix(w.Limit[:i], "units:")); err == nil {
				n = v
			}
		}
		out = append(out, topLimit{item: w.Limit, used: int64(w.Used), limit: int64(n), unit: unit})
	}
	for _, b := range r.Buckets {
		prefix, _, _ := strings.Cut(b.Item, "rate=")
		unit := "calls"
		if prefix != "" {
			unit = "units"
		}
		out = append(out, topLimit{item: fmt.Sprintf("%s,%sburst=%d", b.Item, prefix, b.Burst), used: b.Burst - b.Free, limit: b.Burst, unit: unit})
	}
	if r.Concurrency > 0 {
		out = append(out, topLimit{item: "concurrency=" + strconv.Itoa(r.Concurrency), used: int64(r.InProgress), limit: int64(r.Concurrency), unit: "calls"})
	}
	return out
}

// topRows turns the sample cur into rows, with the grant rates from the
// sample before it (nil: none yet, the rates are not known).
func topRows(prev *topSample, cur topSample) []topRow {
	before := map[string]uint64{}
	if prev != nil {
		for _, m := range prev.meters {
			before[m.Name] = m.Counters["grants_total"]
		}
	}
	rows := make([]topRow, 0, len(cur.meters))
	for _, m := range cur.meters {
		r := topRow{topMeter: m, limits: limitsOf(m.Report), rate: math.NaN()}
		for _, l := range r.limits {
			r.near = max(r.near, l.ratio())
		}
		if m.Pause != nil {
			r.near = max(r.near, 1)
		}
		n, seen := before[m.Name]
		if dt := cur.at.Sub(prevAt(prev)).Seconds(); seen && dt > 0 && m.Counters["grants_total"] >= n {
			r.rate = float64(m.Counters["grants_total"]-n) / dt
		}
		rows = append(rows, r)
	}
	return rows
}

func prevAt(s *topSample) time.Time {
	if s == nil {
		return time.Time{}
	}
	return s.at
}

// waiting is the row's waiters, -1 when not known.
func (r topRow) waiting() int {
	if r.Waiting == nil {
		return -1
	}
	return *r.Waiting
}

// The orders rlfs top sorts by, and the key that picks each.
var topSorts = []struct {
	key  rune
	name string // as the frame says it
	cmp  func(a, b topRow) int
}{
	{'u', "use (closest to a limit first)", func(a, b topRow) int {
		return cmp.Or(cmp.Compare(b.near, a.near), cmp.Compare(b.waiting(), a.waiting()))
	}},
	{'n', "name", func(a, b topRow) int { return 0 }},
	{'w', "waiting (most first)", func(a, b topRow) int {
		return cmp.Or(cmp.Compare(b.waiting(), a.waiting()), cmp.Compare(b.near, a.near))
	}},
	{'g', "grants/s (most first)", func(a, b topRow) int { return cmp.Compare(rateOrZero(b), rateOrZero(a)) }},
}

func rateOrZero(r topRow) float64 {
	if math.IsNaN(r.rate) {
		return 0
	}
	return r.rate
}

// topView is what the user chose to see: the order (an index into
// topSorts), reversed or not, and the filter (a part of the meters'
// names, any case; empty: all).
type topView struct {
	sort    int
	reverse bool
	filter  string
}

// sortKey returns the index into topSorts of the order named by word
// (its key or the first word of its name).
func sortKey(word string) (int, bool) {
	for i, s := range topSorts {
		first, _, _ := strings.Cut(s.name, " ")
		if word == string(s.key) || word == first || word == strings.TrimSuffix(first, "/s") {
			return i, true
		}
	}
	return 0, false
}

// arrange filters rows by v and sorts them; it returns the rows shown and
// how many the filter left out. Ties go by name.
func (v topView) arrange(rows []topRow) ([]topRow, int) {
	shown := rows[:0:0]
	f := strings.ToLower(v.filter)
	for _, r := range rows {
		if strings.Contains(strings.ToLower(r.Name), f) {
			shown = append(shown, r)
		}
	}
	by := topSorts[v.sort].cmp
	slices.SortStableFunc(shown, func(a, b topRow) int {
		c := cmp.Or(by(a, b), strings.Compare(a.Name, b.Name))
		if v.reverse {
			return -c
		}
		return c
	})
	return shown, len(rows) - len(shown)
}

// filterUnreadable keeps the unreadable meters whose names match v's
// filter.
func (v topView) filterUnreadable(us []unreadableMeter) []unreadableMeter {
	f := strings.ToLower(v.filter)
	var out []unreadableMeter
	for _, u := range us {
		if strings.Contains(strings.ToLower(u.Name), f) {
			out = append(out, u)
		}
	}
	return out
}
