package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"
)

const topUsage = `SYNOPSIS
    rlfs top [--once] [--interval D] [--sort ORDER] [--filter TEXT] MOUNTPOINT
    rlfs top [--once] ... MOUNTPOINT/METER

Shows every meter of an rlfs mount, refreshed every second: each limit's
use as a bar with its numbers (calls or units of N/PER windows, tokens
taken of a bucket's burst, calls in progress of the concurrency), the
calls in progress and waiting, grants per second (from two readings; "-"
until there are two), when the next call may go, a pause, and on a fleet
the hosts with a lease on the meter. Meters are sorted by how close to a
limit they are (the fullest bar first; a paused meter counts as full;
ties go to the one with more waiters, then by name).

It reads each meter's status.json, as rlfs status does: another user sees
the meters they may read, and the others as "not readable by this user".

KEYS
    u  sort by use (closest to a limit first)     n  sort by name
    w  sort by waiters (most first)                g  sort by grants/s
    r  reverse the order                           /  filter by a part of the names
    q  quit (also Esc or Ctrl-C)
    While filtering: type the text, Backspace erases, Enter keeps it, Esc clears it.

FLAGS
    --once          print one frame as plain text and exit: two readings
                    --interval apart, so that grants/s is known (default: false)
    --interval D    time between readings (default: 1s)
    --sort ORDER    use, name, waiting or grants (default: use)
    --filter TEXT   show only meters whose names contain TEXT, any case
                    (default: all)

EXAMPLES
    rlfs top /mnt/rl
    rlfs top --once /mnt/rl > frame.txt
    rlfs top --once --sort waiting --filter api /mnt/rl
`

// topConfig is rlfs top's command line.
type topConfig struct {
	path     string
	once     bool
	interval time.Duration
	view     topView
}

func runTop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rlfs top")
	var c topConfig
	fs.BoolVar(&c.once, "once", false, "")
	fs.DurationVar(&c.interval, "interval", time.Second, "")
	sortBy := fs.String("sort", "use", "")
	fs.StringVar(&c.view.filter, "filter", "", "")
	if err := parse(fs, args, topUsage, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &usageError{msg: "give one MOUNTPOINT (or a meter's directory in it)", hint: "rlfs top /mnt/rl"}
	}
	if c.interval < 100*time.Millisecond {
		return &usageError{msg: fmt.Sprintf("--interval %s is too short; give 100ms or more", c.interval), hint: "rlfs top --interval 1s /mnt/rl"}
	}
	var ok bool
	if c.view.sort, ok = sortKey(*sortBy); !ok {
		return &usageError{msg: fmt.Sprintf("--sort %q is not an order; give use, name, waiting or grants", *sortBy), hint: "rlfs top --sort waiting /mnt/rl"}
	}
	c.path = fs.Arg(0)
	// The first reading says at once whether path is an rlfs mount.
	first, err := readTopSample(c.path)
	if err != nil {
		return err
	}
	if c.once {
		return topOnce(ctx, c, first, stdout)
	}
	f, isFile := stdout.(*os.File)
	if !isFile || !term.IsTerminal(int(f.Fd())) {
		return &usageError{msg: "rlfs top needs a terminal for its live view; pass --once to print one frame as plain text", hint: "rlfs top --once " + c.path}
	}
	scr, err := newTopScreen()
	if err != nil {
		return err
	}
	return topLive(ctx, scr, c, first)
}

// readTopSample reads the meters at path, the way rlfs status does.
func readTopSample(path string) (topSample, error) {
	ms, unreadable, err := readMeters[topMeter]("rlfs top", path)
	return topSample{at: time.Now(), meters: ms, unreadable: unreadable}, err
}

// topOnce prints one frame: it reads the meters again an interval after
// first, so that the grant rates are known.
func topOnce(ctx context.Context, c topConfig, first topSample, stdout io.Writer) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(c.interval):
	}
	cur, err := readTopSample(c.path)
	if err != nil {
		return err
	}
	for _, l := range buildFrame(frameInput{mnt: c.path, interval: c.interval, view: c.view, prev: &first, cur: &cur}) {
		if _, err := fmt.Fprintln(stdout, l.String()); err != nil {
			return err
		}
	}
	return nil
}
