package rule

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Window is one N/PER limit: at most N calls count in any span of Per, or
// with Units (a `units:N/PER` item) at most N units of cost (weighted calls,
// see Call.Units).
type Window struct {
	N     int
	Per   time.Duration
	Units bool
}

// Bucket is a token bucket (GCRA): N calls per Per sustained, bursts of Burst.
type Bucket struct {
	N     int
	Per   time.Duration
	Burst int
}

// Interval is the emission interval of the bucket: the sustained spacing of
// calls, rounded up so that no span of Per ever sustains more than N.
func (b Bucket) Interval() time.Duration {
	n := time.Duration(b.N)
	return (b.Per + n - 1) / n
}

// CountMode says when a call starts and stops counting against a window.
type CountMode int

const (
	// CountCompletion counts a call from its grant until PER after its completion.
	CountCompletion CountMode = iota
	// CountGrant counts a call from its grant until PER after its grant.
	CountGrant
)

func (c CountMode) String() string {
	if c == CountGrant {
		return "grant"
	}
	return "completion"
}

// Spec is a meter's configuration. The zero value is not the default; use
// DefaultSpec or ParseSpec. A Spec is plain data, safe to copy.
type Spec struct {
	Windows     []Window
	Concurrency int // at most this many calls in progress; 0 = unlimited
	Bucket      *Bucket
	UnitBucket  *Bucket // units:rate= and units:burst=: a bucket of units of cost
	Count       CountMode
	MaxWait     time.Duration // 0 = wait forever
	MaxHold     time.Duration // 0 = hold forever
	MaxWaiters  int           // 0 = unlimited
	MaxPause    time.Duration // caps every pause (design §10); 0 = DefaultMaxPause
}

// DefaultSpec is the spec of a meter created without items: a cross-process mutex.
func DefaultSpec() Spec { return Spec{Concurrency: 1} }

// ErrNeedsRate is the error of a spec that has burst= but no rate= yet: the
// only error that more items can mend.
var ErrNeedsRate = errors.New("burst needs a rate=N/PER item")

// MaxItems bounds how many items one spec may hold.
const MaxItems = 64

// ParseSpec parses items separated by commas or newlines, as in
// `--meter NAME=SPEC` and the `limits` file. Blank items and `#` comments are
// ignored; an empty spec is DefaultSpec. Errors quote the bad item.
func ParseSpec(text string) (Spec, error) {
	p := specParser{s: DefaultSpec(), seen: map[string]bool{}}
	n := 0
	for _, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, item := range strings.Split(line, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			if n++; n > MaxItems {
				return Spec{}, fmt.Errorf("meter: more than %d items", MaxItems)
			}
			if err := p.item(item); err != nil {
				return Spec{}, err
			}
		}
	}
	return p.finish()
}

// specParser collects the items of one spec.
type specParser struct {
	s      Spec
	seen   map[string]bool
	rate   *Bucket
	burst  int
	urate  *Bucket // units:rate=
	uburst int     // units:burst=
}

// item applies one item, such as "75/h", "concurrency=4" or "units:100/1s".
func (p *specParser) item(item string) error {
	if rest, ok := strings.CutPrefix(item, "units:"); ok {
		return p.unitItem(item, strings.TrimSpace(rest))
	}
	key, val, isKV := strings.Cut(item, "=")
	if !isKV {
		w, err := parseWindow(item, item)
		if err != nil {
			return err
		}
		return p.addWindow(item, w)
	}
	key, val = strings.TrimSpace(key), strings.TrimSpace(val)
	if p.seen[key] {
		return fmt.Errorf("meter: %q: %s is given twice", item, key)
	}
	p.seen[key] = true
	var err error
	switch key {
	case "concurrency":
		p.s.Concurrency, err = parseCount(item, "concurrency", val, 0)
	case "rate":
		var w Window
		if w, err = parseWindow(item, val); err != nil {
			return err
		}
		p.rate = &Bucket{N: w.N, Per: w.Per}
	case "burst":
		p.burst, err = parseCount(item, "burst", val, 1)
	case "count":
		switch val {
		case "completion":
			p.s.Count = CountCompletion
		case "grant":
			p.s.Count = CountGrant
		default:
			err = fmt.Errorf("meter: %q: count must be completion or grant", item)
		}
	case "max_wait":
		p.s.MaxWait, err = parsePositiveDuration(item, val)
	case "max_hold":
		p.s.MaxHold, err = parsePositiveDuration(item, val)
	case "max_waiters":
		p.s.MaxWaiters, err = parseCount(item, "max_waiters", val, 1)
	case "max_pause":
		p.s.MaxPause, err = parsePositiveDuration(item, val)
	default:
		err = fmt.Errorf("meter: %q: unknown item %q (want N/PER, concurrency=, rate=, burst=, count=, max_wait=, max_hold=, max_waiters=, max_pause= or units:N/PER, units:rate=, units:burst=)", item, key)
	}
	return err
}

// addWindow adds window w (item), one per PER of each kind.
func (p *specParser) addWindow(item string, w Window) error {
	for _, o := range p.s.Windows {
		if o.Per == w.Per && o.Units == w.Units {
			kind := "a window"
			if w.Units {
				kind = "a units window"
			}
			return fmt.Errorf("meter: %q: %s of %s is already set; keep one", item, kind, formatDuration(w.Per))
		}
	}
	p.s.Windows = append(p.s.Windows, w)
	return nil
}

// finish checks what only the whole spec can tell: the bucket.
func (p *specParser) finish() (Spec, error) {
	if p.burst > 0 && p.rate == nil {
		return Spec{}, fmt.Errorf("meter: \"burst=%d\": %w", p.burst, ErrNeedsRate)
	}
	if r := p.rate; r != nil {
		r.Burst = max(p.burst, 1)
		if err := checkBucket(*r, ""); err != nil {
			return Spec{}, err
		}
		p.s.Bucket = r
	}
	if err := p.finishUnits(); err != nil {
		return Spec{}, err
	}
	p.s.Windows = sortedWindows(p.s.Windows)
	return p.s, nil
}

// checkBucket refuses a bucket whose numbers overflow; prefix is "" or
// "units:" for messages.
func checkBucket(r Bucket, prefix string) error {
	what := "call"
	if prefix != "" {
		what = "unit"
	}
	if r.Per < time.Duration(r.N) {
		return fmt.Errorf("meter: \"%srate=%d/%s\": more than one %s per nanosecond; use a longer PER", prefix, r.N, formatDuration(r.Per), what)
	}
	if r.Interval() > math.MaxInt64/time.Duration(r.Burst) {
		return fmt.Errorf("meter: \"%sburst=%d\": a burst that long at %srate=%d/%s spans more than 290 years; lower burst or PER", prefix, r.Burst, prefix, r.N, formatDuration(r.Per))
	}
	return nil
}

// sortedWindows returns ws in canonical order: call windows before units
// windows, each by PER, shortest first, whatever order the items were
// written in. ws is not modified.
func sortedWindows(ws []Window) []Window {
	return slices.SortedStableFunc(slices.Values(ws), func(a, b Window) int {
		if a.Units != b.Units {
			if a.Units {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Per, b.Per)
	})
}

const maxCount = 1 << 30

// parseCount reads item's number val, named what in errors ("count",
// "concurrency"), and checks that it lies in [least, 2^30].
func parseCount(item, what, val string, least int) (int, error) {
	n, err := strconv.Atoi(val)
	switch {
	case errors.Is(err, strconv.ErrRange) && strings.HasPrefix(val, "-"):
		return 0, fmt.Errorf("meter: %q: %s must be at least %d", item, what, least)
	case errors.Is(err, strconv.ErrRange), err == nil && n > maxCount:
		return 0, fmt.Errorf("meter: %q: %s %s is too large; it may be at most %d (2^30)", item, what, val, maxCount)
	case err != nil:
		return 0, fmt.Errorf("meter: %q: %s %q is not a whole number", item, what, val)
	case n < least:
		return 0, fmt.Errorf("meter: %q: %s must be at least %d", item, what, least)
	}
	return n, nil
}

// parseWindow reads "N/PER". Its errors quote item, which is the whole spec
// item ("75/1h", or "rate=75/1h" for a bucket).
func parseWindow(item, text string) (Window, error) {
	ns, per, ok := strings.Cut(text, "/")
	if !ok {
		return Window{}, fmt.Errorf("meter: %q: want N/PER, such as 10/s or 75/1h", item)
	}
	n, err := parseCount(item, "count", strings.TrimSpace(ns), 1)
	if err != nil {
		return Window{}, err
	}
	d, err := ParseDuration(strings.TrimSpace(per))
	if err != nil {
		return Window{}, fmt.Errorf("meter: %q: %w", item, err)
	}
	if d <= 0 {
		return Window{}, fmt.Errorf("meter: %q: PER must be longer than zero", item)
	}
	return Window{N: n, Per: d}, nil
}

func parsePositiveDuration(item, val string) (time.Duration, error) {
	d, err := ParseDuration(val)
	if err != nil {
		return 0, fmt.Errorf("meter: %q: %w", item, err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("meter: %q: duration must be longer than zero", item)
	}
	return d, nil
}

var units = map[string]time.Duration{
	"ns": time.Nanosecond, "us": time.Microsecond, "µs": time.Microsecond,
	"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour,
	"d": 24 * time.Hour,
}

// ParseDuration parses a Go duration ("500ms", "1.5h", "1h30m") extended with
// "d" for days; a bare unit means one of it ("h" = "1h"). Decimals are read
// exactly ("2.3h" is 2h18m; "0.00000000000125d" is 108ns); a
// duration that is not a whole number of nanoseconds is refused rather than
// truncated.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("missing duration (such as 1s, 500ms, 1.5h, 2d)")
	}
	if u, ok := units[s]; ok {
		return u, nil
	}
	longest := new(big.Rat).SetInt64(math.MaxInt64 / 2)
	total := new(big.Rat) // in nanoseconds
	for rest := s; rest != ""; {
		i := 0
		for i < len(rest) && (rest[i] == '.' || (rest[i] >= '0' && rest[i] <= '9')) {
			i++
		}
		j := i
		for j < len(rest) && !(rest[j] == '.' || (rest[j] >= '0' && rest[j] <= '9')) {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		u, ok := units[unit]
		if num == "" || !ok {
			return 0, fmt.Errorf("bad duration %q (want a number and a unit: ns, us, ms, s, m, h or d, such as 500ms or 1.5h)", s)
		}
		v, ok := new(big.Rat).SetString(num)
		if !ok {
			return 0, fmt.Errorf("bad duration %q: %q is not a number", s, num)
		}
		if total.Add(total, v.Mul(v, new(big.Rat).SetInt64(int64(u)))).Cmp(longest) > 0 {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		rest = rest[j:]
	}
	if !total.IsInt() {
		return 0, fractionError(s, total)
	}
	return time.Duration(total.Num().Int64()), nil
}

// fractionError refuses a duration that is not a whole number of
// nanoseconds ("1.5ns"), which time.Duration would silently truncate, and
// says what it rounds to.
func fractionError(s string, ns *big.Rat) error {
	lo := new(big.Int).Quo(ns.Num(), ns.Denom()).Int64()
	if lo == 0 {
		return fmt.Errorf("duration %q is less than a nanosecond, the finest unit; use 1ns or more", s)
	}
	return fmt.Errorf("duration %q is not a whole number of nanoseconds, the finest unit; round it to %s or %s",
		s, time.Duration(lo), time.Duration(lo+1))
}

// formatDuration prints d in the shortest form ParseDuration reads back.
func formatDuration(d time.Duration) string {
	day := 24 * time.Hour
	if d >= day && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	str := d.String()
	// "1h0m0s" → "1h", "1m0s" → "1m".
	for strings.HasSuffix(str, "m0s") || strings.HasSuffix(str, "h0m") {
		str = str[:len(str)-2]
	}
	return str
}

// Items returns the spec's items in canonical order, one string each:
// windows by PER, shortest first, then concurrency=, rate= and burst=, then
// the other items only where they differ from the default. Two specs that
// mean the same have the same items, whatever order they were written in.
func (s Spec) Items() []string {
	var out []string
	for _, w := range sortedWindows(s.Windows) {
		out = append(out, w.String())
	}
	out = append(out, fmt.Sprintf("concurrency=%d", s.Concurrency))
	if b := s.Bucket; b != nil {
		out = append(out, fmt.Sprintf("rate=%d/%s", b.N, formatDuration(b.Per)), fmt.Sprintf("burst=%d", b.Burst))
	}
	if b := s.UnitBucket; b != nil {
		out = append(out, fmt.Sprintf("units:rate=%d/%s", b.N, formatDuration(b.Per)), fmt.Sprintf("units:burst=%d", b.Burst))
	}
	if s.Count != CountCompletion {
		out = append(out, "count="+s.Count.String())
	}
	if s.MaxWait > 0 {
		out = append(out, "max_wait="+formatDuration(s.MaxWait))
	}
	if s.MaxHold > 0 {
		out = append(out, "max_hold="+formatDuration(s.MaxHold))
	}
	if s.MaxWaiters > 0 {
		out = append(out, fmt.Sprintf("max_waiters=%d", s.MaxWaiters))
	}
	if s.MaxPause > 0 {
		out = append(out, "max_pause="+formatDuration(s.MaxPause))
	}
	return out
}

// String returns the canonical comma-separated form (see Items), which
// ParseSpec reads back.
func (s Spec) String() string { return strings.Join(s.Items(), ",") }

// Equal reports whether two specs mean the same: whether their canonical
// forms are equal (so "1/s,75/h" equals "75/h,1/s").
func (s Spec) Equal(o Spec) bool { return s.String() == o.String() }

// Longest is the longest span over which past calls matter: pruning keeps
// every call that completed (or was granted) within it.
func (s Spec) Longest() time.Duration {
	var d time.Duration
	for _, w := range s.Windows {
		d = max(d, w.Per)
	}
	return d
}
