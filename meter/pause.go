package meter

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A pause (design §10): the upstream said "slow down" (HTTP 429 or 503 with
// Retry-After), and the meter grants nothing until then, on every host.
// Waiters keep their places and go in order when it ends.

// DefaultMaxPause caps a pause when the spec has no max_pause item.
const DefaultMaxPause = time.Hour

// Pause is a meter's pause: nothing is granted before Until. By says who
// set it (a process, on which host), From through which path (the pause
// file, an acquire descriptor, rlfs run). The zero value is no pause.
type Pause struct {
	Until time.Time
	By    string
	From  string
}

// Active reports whether the pause holds at now.
func (p Pause) Active(now time.Time) bool { return now.Before(p.Until) }

// MaxPauseOf is the longest pause spec allows.
func MaxPauseOf(spec Spec) time.Duration {
	if spec.MaxPause > 0 {
		return spec.MaxPause
	}
	return DefaultMaxPause
}

// ErrBadPause is a pause that is not a duration, whole seconds or an
// HTTP-date.
var ErrBadPause = errors.New("meter: bad pause")

// httpDates are the HTTP-date forms of RFC 9110 (IMF-fixdate first, then
// the obsolete RFC 850 and asctime forms, which recipients must accept).
var httpDates = []string{"Mon, 02 Jan 2006 15:04:05 GMT", "Monday, 02-Jan-06 15:04:05 GMT", "Mon Jan _2 15:04:05 2006"}

// ParsePause reads a pause as written to a `pause` file or after
// `retry-after` on an acquire descriptor, at now: a Go duration (`30s`,
// `1.5m`, and `d` for days), a whole number of seconds (`120`, as
// Retry-After gives it), or an HTTP-date (`Wed, 21 Oct 2026 07:28:00 GMT`).
// `0`, `0s` and `none` lift the pause: lift is true. A time in the past is
// no pause (lift false, until before now).
func ParsePause(text string, now time.Time) (until time.Time, lift bool, err error) {
	t := strings.TrimSpace(text)
	switch {
	case t == "":
		return time.Time{}, false, fmt.Errorf("%w: empty; write a duration (30s), whole seconds (120), an HTTP-date, or 0 to lift it", ErrBadPause)
	case t == "none":
		return time.Time{}, true, nil
	}
	if n, err := strconv.ParseUint(t, 10, 63); err == nil {
		if n == 0 {
			return time.Time{}, true, nil
		}
		if n > uint64(maxPauseSeconds) {
			n = maxPauseSeconds // capped by max_pause anyway
		}
		return now.Add(time.Duration(n) * time.Second), false, nil
	}
	if d, err := ParseDuration(t); err == nil && d >= 0 {
		if d == 0 {
			return time.Time{}, true, nil
		}
		return now.Add(d), false, nil
	}
	for _, layout := range httpDates {
		if at, err := time.Parse(layout, t); err == nil {
			return now.Add(at.Sub(now)), false, nil // on now's clock: its monotonic reading
		}
	}
	return time.Time{}, false, fmt.Errorf("%w %q: want a duration (30s, 1.5m), whole seconds (120) or an HTTP-date (Wed, 21 Oct 2026 07:28:00 GMT); 0 or none lifts it", ErrBadPause, t)
}

// maxPauseSeconds keeps a pause in whole seconds within a Duration.
const maxPauseSeconds = 1 << 33

// PauseLine reads one line written to an acquire descriptor that starts
// with "retry-after" (case-insensitive, then spaces or a colon, as the HTTP
// header reads): ok says the line is one, and the rest is ParsePause's.
func PauseLine(line string, now time.Time) (until time.Time, lift, ok bool, err error) {
	l := strings.TrimSpace(line)
	const key = "retry-after"
	if len(l) < len(key) || !strings.EqualFold(l[:len(key)], key) {
		return time.Time{}, false, false, nil
	}
	rest := strings.TrimLeft(l[len(key):], " \t:")
	if rest == l[len(key):] && rest != "" {
		return time.Time{}, false, false, nil // retry-afterX: not the key
	}
	until, lift, err = ParsePause(rest, now)
	return until, lift, true, err
}

// Text says the pause at now as the `pause` file and `status` show it.
func (p Pause) Text(now time.Time) string {
	if !p.Active(now) {
		return "not paused"
	}
	s := fmt.Sprintf("paused until %s (in %s)", FormatTime(p.Until), p.Until.Sub(now).Round(time.Millisecond))
	if p.By != "" {
		s += " by " + Escape(p.By)
	}
	if p.From != "" {
		s += " through " + Escape(p.From)
	}
	return s
}

// Pause pauses the meter until p.Until (capped at max_pause from now), or
// lifts its pause when p.Until is zero. A later pause extends the one in
// force; an earlier one does not shorten it. It returns the pause in
// force, and whether the cap bit.
func (m *Meter) Pause(p Pause) (Pause, bool, error) {
	now := m.reg.clock.Now()
	capped := false
	if !p.Until.IsZero() {
		if limit := now.Add(MaxPauseOf(m.Spec())); p.Until.After(limit) {
			p.Until, capped = limit, true
		}
	}
	got, err := m.reg.dec.Pause(m.ctx(), m.name, p)
	if err != nil {
		m.mu.Lock()
		m.useLocked().stats.StoreErrs++
		m.mu.Unlock()
		return Pause{}, capped, fmt.Errorf("%w: pause %q: %w", ErrStore, m.name, err)
	}
	if !p.Until.IsZero() && got.Until.Equal(p.Until) {
		m.mu.Lock()
		m.useLocked().stats.Pauses++
		m.mu.Unlock()
	}
	return got, capped, nil
}
