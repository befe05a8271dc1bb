package rule

import (
	"errors"
	"fmt"
	"strings"
)

// Weighted calls (design §7): a call may cost N units (`acquire@N`), and a
// spec may limit units besides calls: `units:N/PER` windows and a
// `units:rate=N/PER,units:burst=B` bucket. Every item of a spec admits a
// call together, in one step.

// MaxUnits bounds N, B and the cost of one call in units.
const MaxUnits = 1 << 50

// ErrTooBig is returned for a call whose cost no units item of its meter
// can ever admit (acquire@N with N beyond a units window or burst).
var ErrTooBig = errors.New("meter: cost larger than a units limit can ever admit")

// unitItem applies an item that starts with "units:" (item is the whole
// item, rest what follows the prefix).
func (p *specParser) unitItem(item, rest string) error {
	key, val, isKV := strings.Cut(rest, "=")
	if !isKV {
		w, err := parseUnitWindow(item, rest)
		if err != nil {
			return err
		}
		w.Units = true
		return p.addWindow(item, w)
	}
	key, val = strings.TrimSpace(key), strings.TrimSpace(val)
	if p.seen["units:"+key] {
		return fmt.Errorf("meter: %q: units:%s is given twice", item, key)
	}
	p.seen["units:"+key] = true
	switch key {
	case "rate":
		w, err := parseUnitWindow(item, val)
		if err != nil {
			return err
		}
		p.urate = &Bucket{N: w.N, Per: w.Per}
	case "burst":
		n, err := parseUnits(item, "units:burst", val, 1)
		if err != nil {
			return err
		}
		p.uburst = int(n)
	default:
		return fmt.Errorf("meter: %q: unknown units item %q (want units:N/PER, units:rate=N/PER or units:burst=B)", item, key)
	}
	return nil
}

// finishUnits checks the units bucket: a burst needs a rate; without one,
// the burst is the rate's N (a whole PER's worth of units at once).
func (p *specParser) finishUnits() error {
	if p.uburst > 0 && p.urate == nil {
		return fmt.Errorf("meter: \"units:burst=%d\": %w", p.uburst, errUnitsNeedRate)
	}
	if r := p.urate; r != nil {
		r.Burst = p.uburst
		if r.Burst == 0 {
			r.Burst = r.N
		}
		if err := checkBucket(*r, "units:"); err != nil {
			return err
		}
		p.s.UnitBucket = r
	}
	return nil
}

var errUnitsNeedRate = errors.New("units:burst needs a units:rate=N/PER item")

// parseUnitWindow reads "N/PER" of a units item, N up to MaxUnits.
func parseUnitWindow(item, text string) (Window, error) {
	ns, per, ok := strings.Cut(text, "/")
	if !ok {
		return Window{}, fmt.Errorf("meter: %q: want units:N/PER, such as units:90000/1m", item)
	}
	n, err := parseUnits(item, "count", strings.TrimSpace(ns), 1)
	if err != nil {
		return Window{}, err
	}
	w, err := parseWindow(item, "1/"+per)
	if err != nil {
		return Window{}, err
	}
	w.N = int(n)
	return w, nil
}

// parseUnits reads a number of units in [least, MaxUnits].
func parseUnits(item, what, val string, least int64) (int64, error) {
	n, err := ParseCost(val)
	switch {
	case errors.Is(err, errCostTooLarge):
		return 0, fmt.Errorf("meter: %q: %s %s is too large; it may be at most %d (2^50)", item, what, val, int64(MaxUnits))
	case err != nil:
		return 0, fmt.Errorf("meter: %q: %s %q is not a whole number", item, what, val)
	case n < least:
		return 0, fmt.Errorf("meter: %q: %s must be at least %d", item, what, least)
	}
	return n, nil
}

var errCostTooLarge = errors.New("larger than 2^50")

// ParseCost reads a cost in units: a decimal integer from 0 to MaxUnits,
// digits only (no sign, no spaces), as in acquire@N and a settlement write.
func ParseCost(s string) (int64, error) {
	if s == "" || len(s) > 20 {
		if len(s) > 20 && strings.Trim(s, "0123456789") == "" {
			return 0, errCostTooLarge
		}
		return 0, fmt.Errorf("%q is not a decimal number of units", s)
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a decimal number of units", s)
		}
		n = n*10 + int64(c-'0')
		if n > MaxUnits {
			return 0, errCostTooLarge
		}
	}
	return n, nil
}

// MaxCost is the largest cost the spec's units items can ever admit, or -1
// if no units item limits it.
func (s Spec) MaxCost() int64 {
	limit := int64(-1)
	lower := func(n int64) {
		if limit < 0 || n < limit {
			limit = n
		}
	}
	for _, w := range s.Windows {
		if w.Units {
			lower(int64(w.N))
		}
	}
	if b := s.UnitBucket; b != nil {
		lower(int64(b.Burst))
	}
	return limit
}

// HasUnits reports whether the spec has a units item.
func (s Spec) HasUnits() bool {
	if s.UnitBucket != nil {
		return true
	}
	for _, w := range s.Windows {
		if w.Units {
			return true
		}
	}
	return false
}

// Fits checks that a call of cost can ever be admitted; ErrTooBig if not.
func (s Spec) Fits(cost int64) error {
	if m := s.MaxCost(); m >= 0 && cost > m {
		return fmt.Errorf("%w: a call of %d units, at most %d", ErrTooBig, cost, m)
	}
	return nil
}
