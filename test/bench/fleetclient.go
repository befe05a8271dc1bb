package main

import (
	"flag"
	"fmt"
	"os"
	"syscall"
	"time"
)

// clientHandoff times cross-host handoffs on a concurrency=1 meter that two
// hosts mount at -a and -b. It holds the meter through -a; then, -n times:
// a thread opens the other host's acquire (blocking), the client waits
// until -status shows it queued, takes the time and closes the file it
// holds; the handoff latency is from just before that close to the
// waiter's open returning. The new holder is on the other host, so the
// direction alternates. Prints one latency in ns per line, then
// "errors ERRORS".
func clientHandoff(args []string) error {
	fs := flag.NewFlagSet("client handoff", flag.ContinueOnError)
	a := fs.String("a", "", "acquire file on host A")
	b := fs.String("b", "", "acquire file of the same meter on host B")
	status := fs.String("status", "", "the meter's status file (either host)")
	n := fs.Int("n", 100, "handoffs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var errs errCount
	hold, err := openRaw(*a, &errs)
	if err != nil {
		return fmt.Errorf("client handoff: hold %s: %w", *a, err)
	}
	type granted struct {
		fd  int
		at  time.Time
		err error
	}
	paths := [2]string{*b, *a} // the waiter of handoff i opens paths[i%2]
	for i := range *n {
		got := make(chan granted, 1)
		go func() {
			fd, err := openRaw(paths[i%2], &errs)
			got <- granted{fd, time.Now(), err}
		}()
		if err := waitWaiting(*status, 1); err != nil {
			return err
		}
		t0 := time.Now()
		errs.add(syscall.Close(hold))
		g := <-got
		if g.err != nil {
			return fmt.Errorf("client handoff %d: open %s: %w", i, paths[i%2], g.err)
		}
		fmt.Println(g.at.Sub(t0).Nanoseconds())
		hold = g.fd
	}
	errs.add(syscall.Close(hold))
	fmt.Printf("errors %s\n", errs.String())
	return nil
}

// waitWaiting polls the status file until it shows want waiters.
func waitWaiting(status string, want int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(status)
		if err != nil {
			return fmt.Errorf("client handoff: read %s: %w", status, err)
		}
		if statusInt(string(b), "waiting") >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("client handoff: no waiter showed in %s within 30s", status)
		}
		time.Sleep(200 * time.Microsecond)
	}
}
