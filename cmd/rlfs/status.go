package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
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
    rlfs status [--json] MOUNTPOINT/METER
    rlfs status [--json] --db PATH

Prints a table of meters: limits, usage per window, calls in progress,
waiters and when the next call may go. With MOUNTPOINT it reads every meter
of that rlfs mount, with MOUNTPOINT/METER that one meter (from each meter's
status.json, which the daemon serves beside status). With --db it reads the
database directly, read-only, without disturbing a daemon that serves it
(waiters are not stored, so WAITING shows "-"). Names longer than 40
characters are shortened in the middle in the table; --json gives them whole.

A meter whose status this user may not read (a meter's mode is its access
control) is a row that says so, "not readable by this user (uid N)"; with
--json it is in a list of its own, "unreadable": [{"meter": NAME, "error":
WHY}], beside "meters". The exit status is 0 when the meters could be
listed, even if some were not readable, and 1 otherwise.

FLAGS
    --db PATH   read this database instead of a mount (default: none)
    --json      print JSON: {"meters": [{...}, ...]} with the same fields as
                the status files, and "unreadable" if some meter is
                (default: false)

EXAMPLES
    rlfs status /mnt/rl
    rlfs status /mnt/rl/email
    rlfs status --json --db /var/lib/rlfs/meters.db | jq '.meters[].waiting'
`

func runStatus(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rlfs status")
	db := fs.String("db", "", "")
	asJSON := fs.Bool("json", false, "")
	if err := parse(fs, args, statusUsage, stdout); err != nil {
		return err
	}
	var reports []meter.Report
	var unreadable []unreadableMeter
	var err error
	switch {
	case *db != "" && fs.NArg() == 0:
		reports, err = reportsFromDB(*db)
	case *db == "" && fs.NArg() == 1:
		reports, unreadable, err = reportsFromPath(fs.Arg(0))
	default:
		return &usageError{msg: "give either MOUNTPOINT or --db PATH", hint: "rlfs status /mnt/rl"}
	}
	if err != nil {
		return err
	}
	if *asJSON {
		if reports == nil {
			reports = []meter.Report{}
		}
		out := map[string]any{"meters": reports}
		if len(unreadable) > 0 {
			out["unreadable"] = unreadable
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return printTable(stdout, reports, unreadable...)
}

// nameColumn is the widest a meter name is shown in the table: a longer
// one (up to 255 bytes) is shortened in the middle, so that it does not
// pad every row. --json gives full names.
const nameColumn = 40

// printTable prints the reports as a table, with a row for each meter
// this user may not read, in name order.
func printTable(w io.Writer, reports []meter.Report, unreadable ...unreadableMeter) error {
	printFleet(w, reports)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "METER\tLIMITS\tUSAGE\tIN PROGRESS\tWAITING\tNEXT GRANT")
	for _, r := range reports {
		for len(unreadable) > 0 && unreadable[0].Name < r.Name {
			unreadable[0].row(tw)
			unreadable = unreadable[1:]
		}
		var usage []string
		for _, w := range r.Windows {
			usage = append(usage, fmt.Sprintf("%d of %s", w.Used, w.Limit))
		}
		for _, b := range r.Buckets {
			usage = append(usage, bucketCell(b))
		}
		if usage == nil {
			usage = []string{"-"}
		}
		conc := "unlimited"
		if r.Concurrency > 0 {
			conc = strconv.Itoa(r.Concurrency)
		}
		waiting := "-"
		if r.Waiting != nil {
			waiting = strconv.Itoa(*r.Waiting)
		}
		next := r.NextGrant
		if r.Pause != nil {
			next += " (paused)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d of %s\t%s\t%s\n", shorten(r.Name, nameColumn), r.Limits, strings.Join(usage, ", "), r.InProgress, conc, waiting, next)
	}
	for _, u := range unreadable {
		u.row(tw)
	}
	return tw.Flush()
}

// bucketCell shows a token bucket in the USAGE column as the tokens taken
// of its burst, as windows show calls of their limit: "60 of
// units:burst=100" (the LIMITS column has its rate).
func bucketCell(b meter.BucketUsage) string {
	prefix, _, _ := strings.Cut(b.Item, "rate=")
	return fmt.Sprintf("%d of %sburst=%d", b.Burst-b.Free, prefix, b.Burst)
}

// printFleet says, above the table of a fleet's daemon, which host it is,
// the hosts that use its meters, and whether the shared store answers.
func printFleet(w io.Writer, reports []meter.Report) {
	if len(reports) == 0 || reports[0].Host == "" {
		return
	}
	hosts := map[string]bool{}
	down := ""
	for _, r := range reports {
		for _, h := range r.Hosts {
			hosts[h] = true
		}
		if r.StoreUnreachableSince != "" {
			down = r.StoreUnreachableSince
		}
	}
	names := slices.Sorted(maps.Keys(hosts))
	for i, h := range names {
		names[i] = meter.Escape(h)
	}
	fleet := "in a fleet with " + strings.Join(names, ", ")
	store := "the shared store answers"
	if down != "" {
		fleet = "in a fleet whose hosts are unknown while the store is unreachable"
		store = "the shared store is UNREACHABLE since " + down + ": nothing is granted until it is back; waiters keep waiting (max_wait still applies), O_NONBLOCK opens get EAGAIN"
	}
	fmt.Fprintf(w, "host %s, %s; %s\n", meter.Escape(reports[0].Host), fleet, store)
}

// shorten returns s if it has at most n characters, else its start and end
// around an ellipsis, n characters in all.
func shorten(s string, n int) string {
	rs := []rune(s)
	if len(rs) <= n {
		return s
	}
	head := (n - 1) / 2
	return string(rs[:head]) + "…" + string(rs[len(rs)-(n-1-head):])
}

// reportsFromDB reads every meter of the database at path, read-only.
func reportsFromDB(path string) ([]meter.Report, error) {
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
	var out []meter.Report
	for _, s := range stored {
		out = append(out, meter.SnapshotOf(s, now).Report())
	}
	return out, nil
}
