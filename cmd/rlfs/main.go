// Command rlfs mounts a filesystem in which every directory is a rate-limit
// meter: opening `acquire` blocks until the meter permits a call, and the last
// close records its completion.
//
// See `rlfs --help` and the README.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// usageError is a bad command line; it carries a hint at the help.
type usageError struct {
	msg  string
	hint string
}

func (e *usageError) Error() string { return e.msg }

func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "rlfs: %s\n", ue.msg)
		if ue.hint != "" {
			fmt.Fprintf(stderr, "Try: %s\n", ue.hint)
		}
		return 2
	}
	var ce *codeError
	if errors.As(err, &ce) {
		if ce.err != nil {
			fmt.Fprintf(stderr, "rlfs: %s\n", ce.err)
		}
		return ce.code
	}
	fmt.Fprintf(stderr, "rlfs: %s\n", err)
	return 1
}

// codeError is an error with its own exit code (as from `rlfs run`).
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

const mainUsage = `rlfs — rate limits for every process on the host, as a filesystem

SYNOPSIS
    rlfs mount [flags] MOUNTPOINT     serve meters at MOUNTPOINT (foreground)
    rlfs status [--json] MOUNTPOINT   a table of meters (or --db PATH)
    rlfs top [--once] MOUNTPOINT      a live view of the meters, refreshed each second
    rlfs run METER_DIR -- CMD ARGS    hold a meter while CMD runs, like flock(1)
    rlfs wait MOUNTPOINT              return once an rlfs mount there answers
    rlfs version                      print the version

Run "rlfs COMMAND --help" for a command's flags and examples.

EXAMPLES
    rlfs mount --meter 'email=1/s,75/h' /mnt/rl &
    rlfs wait /mnt/rl
    exec 3</mnt/rl/email/acquire; sendmail ... ; exec 3<&-
`

// Run runs the rlfs command line args (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage)
		return &usageError{msg: "missing command", hint: "rlfs --help"}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, mainUsage)
		return nil
	case "mount":
		return runMount(ctx, args[1:], stdout, stderr)
	case "run":
		return runRun(ctx, args[1:], stdout, stderr)
	case "status":
		return runStatus(args[1:], stdout, stderr)
	case "wait":
		return runWait(ctx, args[1:], stdout, stderr)
	case "top":
		return runTop(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		return runVersion(args[1:], stdout, stderr)
	}
	return &usageError{msg: fmt.Sprintf("unknown command %q", args[0]), hint: "rlfs --help"}
}
