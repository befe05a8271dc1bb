package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/sqlite"
)

const statusUsage = `SYNOPSIS
    rlfs status [--json] MOUNTPOINT
    rlfs status [--json] --db PATH

Prints a table of meters: limits, usage per window, calls in progress,
waiters and when the next call may go. With MOUNTPOINT it reads each
meter's status file; with --db it reads the database directly, read-only,
without disturbing a daemon that serves it (waiters are not stored, so
WAITING shows "-").

FLAGS
    --db PATH   read this database instead of a mount (default: none)
    --json      print JSON: {"meters": [{...}, ...]} with the same fields as
                the status files (default: false)

EXAMPLES
    rlfs status /mnt/rl
    rlfs status --json --db /var/lib/rlfs/meters.db | jq '.meters[].waiting'
`

// meterStatus is one meter's status, parsed from its status text.
type meterStatus struct {
	Name         string         `json:"meter"`
	Limits       string         `json:"limits"`
	Windows      []windowStatus `json:"windows"`
	InProgress   int            `json:"in_progress"`
	Concurrency  int            `json:"concurrency"` // 0: unlimited
	ExpiredHolds int            `json:"expired_holds"`
	Waiting      *int           `json:"waiting"` // null: not known (--db)
	NextGrant    string         `json:"next_grant"`
	Counters     map[string]int `json:"counters"`
	Fields       [][2]string    `json:"-"`
}

type windowStatus struct {
	Limit string `json:"limit"`
	Used  int    `json:"used"`
	Free  int    `json:"free"`
}

// parseStatus reads the `key: value` lines of a status file.
func parseStatus(text string) (meterStatus, error) {
	s := meterStatus{Counters: map[string]int{}, Windows: []windowStatus{}}
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			return s, fmt.Errorf("status line %q is not key: value", line)
		}
		s.Fields = append(s.Fields, [2]string{k, v})
		var err error
		switch {
		case k == "meter":
			s.Name = v
		case k == "limits":
			s.Limits = v
		case strings.HasPrefix(k, "window "):
			w := windowStatus{Limit: strings.TrimPrefix(k, "window ")}
			_, err = fmt.Sscanf(v, "%d used, %d free", &w.Used, &w.Free)
			s.Windows = append(s.Windows, w)
		case k == "in_progress":
			var of string
			_, err = fmt.Sscanf(v, "%d of %s", &s.InProgress, &of)
			if of != "unlimited" {
				s.Concurrency, _ = strconv.Atoi(of)
			}
		case k == "expired_holds":
			s.ExpiredHolds, err = strconv.Atoi(v)
		case k == "waiting":
			if v != "-" {
				n, e := strconv.Atoi(v)
				s.Waiting, err = &n, e
			}
		case k == "next_grant":
			s.NextGrant = v
		default:
			if n, e := strconv.Atoi(v); e == nil {
				s.Counters[k] = n
			}
		}
		if err != nil {
			return s, fmt.Errorf("status line %q: %v", line, err)
		}
	}
	return s, nil
}

func runStatus(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rlfs status")
	db := fs.String("db", "", "")
	asJSON := fs.Bool("json", false, "")
	if err := parse(fs, args, statusUsage, stdout); err != nil {
		return err
	}
	var texts []string
	var err error
	switch {
	case *db != "" && fs.NArg() == 0:
		texts, err = statusFromDB(*db)
	case *db == "" && fs.NArg() == 1:
		texts, err = statusFromMount(fs.Arg(0))
	default:
		return &usageError{msg: "give either MOUNTPOINT or --db PATH", hint: "rlfs status /mnt/rl"}
	}
	if err != nil {
		return err
	}
	var all []meterStatus
	for _, t := range texts {
		s, err := parseStatus(t)
		if err != nil {
			return err
		}
		all = append(all, s)
	}
	if *asJSON {
		if all == nil {
			all = []meterStatus{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"meters": all})
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "METER\tLIMITS\tUSAGE\tIN PROGRESS\tWAITING\tNEXT GRANT")
	for _, s := range all {
		var usage []string
		for _, w := range s.Windows {
			usage = append(usage, fmt.Sprintf("%d of %s", w.Used, w.Limit))
		}
		if usage == nil {
			usage = []string{"-"}
		}
		conc := "unlimited"
		if s.Concurrency > 0 {
			conc = strconv.Itoa(s.Concurrency)
		}
		waiting := "-"
		if s.Waiting != nil {
			waiting = strconv.Itoa(*s.Waiting)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d of %s\t%s\t%s\n", s.Name, s.Limits, strings.Join(usage, ", "), s.InProgress, conc, waiting, s.NextGrant)
	}
	return tw.Flush()
}

func statusFromMount(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %v; is rlfs mounted there?", dir, err)
	}
	var out []string
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "status"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // removed meanwhile, or not an rlfs mount entry
			}
			return nil, fmt.Errorf("read status of %q: %v", e.Name(), err)
		}
		out = append(out, string(b))
	}
	if len(es) > 0 && len(out) == 0 {
		return nil, fmt.Errorf("%s holds no meter status files; is rlfs mounted there?", dir)
	}
	return out, nil
}

func statusFromDB(path string) ([]string, error) {
	st, err := sqlite.OpenReadOnly(path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	stored, err := st.Load()
	if err != nil {
		return nil, err
	}
	sort.Slice(stored, func(i, j int) bool { return stored[i].Name < stored[j].Name })
	now := time.Now()
	var out []string
	for _, s := range stored {
		out = append(out, meter.SnapshotOf(s, now).Text())
	}
	return out, nil
}
