package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

const waitUsage = `SYNOPSIS
    rlfs wait [--timeout D] MOUNTPOINT

Returns once MOUNTPOINT is an rlfs mount that answers, for a script that
starts "rlfs mount ... &" and then uses the meters: the meters declared on
the command line or in --config exist by then. It reads /proc/self/mountinfo
and lists the mount's root; it opens no acquire file, so it counts no call.
Exit status 0 once the mount is ready, 1 when the timeout passed first (the
message says what MOUNTPOINT was at that moment).

FLAGS
    --timeout D   give up after D, a duration such as 30s or 2m (default: 30s)

EXAMPLES
    rlfs mount --db /tmp/demo.db --meter 'demo=2/1s' /tmp/rl &
    rlfs wait /tmp/rl && cat /tmp/rl/demo/acquire
    rlfs wait --timeout 5s /mnt/rl || journalctl -u rlfs -n 20
`

// waitEvery is how often rlfs wait looks at the mountpoint again.
const waitEvery = 10 * time.Millisecond

func runWait(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rlfs wait")
	timeout := fs.Duration("timeout", 30*time.Second, "")
	if err := parse(fs, args, waitUsage, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &usageError{msg: "want one MOUNTPOINT", hint: "rlfs wait /mnt/rl"}
	}
	if *timeout <= 0 {
		return &usageError{msg: fmt.Sprintf("--timeout %v: give a duration longer than zero, such as 30s", *timeout), hint: "rlfs wait --help"}
	}
	dir, err := resolvePath(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("mountpoint %s: %v; give the MOUNTPOINT of rlfs mount", fs.Arg(0), err)
	}
	deadline := time.Now().Add(*timeout)
	tick := time.NewTicker(waitEvery)
	defer tick.Stop()
	for {
		why := mountReady(dir, time.Until(deadline))
		if why == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not ready after %v: %w", dir, *timeout, why)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is not ready (interrupted): %w", dir, why)
		case <-tick.C:
		}
	}
}

// mountReady returns nil once dir is an rlfs mount whose root answers a
// stat and a readdir within limit; otherwise it says what dir is now.
func mountReady(dir string, limit time.Duration) error {
	fstype, mounted := mountedFS(dir)
	switch {
	case !mounted:
		return errors.New("no filesystem is mounted there; check that rlfs mount runs (its log says why it stopped) and that MOUNTPOINT is the one it was given")
	case fstype != rlfsFSType:
		return fmt.Errorf("a %s filesystem is mounted there, not rlfs; give the MOUNTPOINT of rlfs mount", fstype)
	}
	limit = min(max(limit, waitEvery), probeTimeout)
	if _, err := probeWithin(dir, true, limit); err != nil {
		return fmt.Errorf("the rlfs mount there does not answer (%v); check the daemon's log", err)
	}
	return nil
}
