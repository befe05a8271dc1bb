package meter

import (
	"fmt"
	"time"
)

// Report is a Snapshot as plain data for programs: one meter of
// `rlfs status --json`, and the content of a meter's `status.json`. Its
// fields carry what the `status` text shows, so a program never parses that
// text back. It is safe to copy; the zero value is an empty report.
type Report struct {
	Name         string            `json:"meter"`
	Limits       string            `json:"limits"`
	Windows      []WindowReport    `json:"windows"`
	Buckets      []BucketUsage     `json:"buckets,omitempty"`
	InProgress   int               `json:"in_progress"`
	Concurrency  int               `json:"concurrency"` // 0: unlimited
	ExpiredHolds int               `json:"expired_holds"`
	Waiting      *int              `json:"waiting"`    // nil: not known (read from a store)
	NextGrant    string            `json:"next_grant"` // as the status text says it
	History      int               `json:"history"`    // completed calls kept for widened windows
	Counters     map[string]uint64 `json:"counters"`
	// In a fleet (a SharedStore): this daemon's host, the hosts with a
	// lease on the meter (left out while the store is unreachable: they
	// are not known then), and since when the store is unreachable (empty:
	// it answers).
	Host                  string   `json:"host,omitempty"`
	Hosts                 []string `json:"hosts,omitempty"`
	StoreUnreachableSince string   `json:"store_unreachable_since,omitempty"`
	// Pause, while the meter is paused (design §10).
	Pause *PauseReport `json:"pause,omitempty"`
}

// PauseReport is a pause in force: until when (RFC 3339), who set it and
// through which path.
type PauseReport struct {
	Until string `json:"until"`
	By    string `json:"by,omitempty"`
	From  string `json:"from,omitempty"`
}

// WindowReport is one window of a Report.
type WindowReport struct {
	Limit string `json:"limit"` // the window as a spec item, such as "75/1h"
	Used  int    `json:"used"`
	Free  int    `json:"free"`
}

// Report returns the snapshot as a Report. Its counters have the names of
// the status text's counter lines (grants_total, grants_since_start, …).
func (s Snapshot) Report() Report {
	r := Report{
		Name:         s.Name,
		Limits:       s.Spec.String(),
		Windows:      []WindowReport{},
		InProgress:   s.HoldersN,
		Concurrency:  s.Spec.Concurrency,
		ExpiredHolds: s.ExpiredN,
		NextGrant:    s.nextGrant(),
		History:      s.Retired,
		Buckets:      s.Buckets,
		Counters:     map[string]uint64{},
		Host:         s.Host,
		Hosts:        s.Hosts,
	}
	if s.Pause.Active(s.Now) {
		r.Pause = &PauseReport{Until: FormatTime(s.Pause.Until), By: s.Pause.By, From: s.Pause.From}
	}
	if !s.StoreDown.IsZero() {
		r.StoreUnreachableSince = FormatTime(s.StoreDown)
		r.Hosts = nil // unknown: the list would hold only this host
	}
	for _, u := range s.Usage {
		r.Windows = append(r.Windows, WindowReport{Limit: u.Window.String(), Used: u.Used, Free: max(0, u.Window.N-u.Used)})
	}
	if !s.WaitersUnknown {
		n := s.WaitersN
		r.Waiting = &n
	}
	for _, c := range append(s.counters(), s.unitCounters()...) {
		r.Counters[c.key] = c.n
	}
	return r
}

// counter is one counter line of the status text.
type counter struct {
	key string
	n   uint64
}

// counters lists the snapshot's counters in the order the status text
// shows them.
func (s Snapshot) counters() []counter {
	return []counter{
		{"grants_total", s.Grants},
		{"grants_since_start", s.Stats.Grants},
		{"releases_since_start", s.Stats.Releases},
		{"timeouts_since_start", s.Stats.Timeouts},
		{"interrupts_since_start", s.Stats.Interrupts},
		{"expired_since_start", s.Stats.Expired},
		{"rejected_since_start", s.Stats.Rejected},
		{"revoked_since_start", s.Stats.Revoked},
		{"store_errors_since_start", s.Stats.StoreErrs},
		{"pauses_since_start", s.Stats.Pauses},
	}
}

// unitCounters are the counters of weighted calls, shown for a meter with
// units items.
func (s Snapshot) unitCounters() []counter {
	if !s.Spec.HasUnits() {
		return nil
	}
	return []counter{
		{"units_granted_since_start", uint64(s.Stats.Units)},
		{"settled_since_start", s.Stats.Settled},
		{"units_settled_since_start", uint64(s.Stats.UnitsSettled)},
	}
}

// nextGrant says when a new call could be granted, as the status text does.
func (s Snapshot) nextGrant() string {
	switch {
	case !s.StoreDown.IsZero():
		return storeBack
	case s.Next.OK:
		return "now"
	case s.Next.At.IsZero():
		return "after a release"
	}
	return fmt.Sprintf("%s (in %s)", FormatTime(s.Next.At), s.Next.At.Sub(s.Now).Round(time.Millisecond))
}
