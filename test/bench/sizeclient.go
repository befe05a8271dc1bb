package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The clients of the size sweeps (s1, s2).

// holdOpeners is how many threads of a hold client open at once: a store
// that answers over the network (Redis) serves several opens per round trip.
const holdOpeners = 4

// clientHold holds calls of the meter at -path, each an open descriptor of
// its acquire file, and never closes them: they end when the process exits
// (or when the daemon stops first, the order the bench uses: a store whose
// releases are slow does not hold up the run). It reads target counts from
// stdin, one a line; for each it opens until it holds that many and prints
// "held COUNT NS ERRORS": how many it holds, how long the new ones took to
// open. A failed open stops that target (the errors say why). It exits at
// the end of stdin.
func clientHold(args []string) error {
	fs := flag.NewFlagSet("client hold", flag.ContinueOnError)
	path := fs.String("path", "", "acquire file of a meter whose concurrency admits every call held")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var fds []int
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		want, err := strconv.Atoi(strings.TrimSpace(in.Text()))
		if err != nil {
			return fmt.Errorf("client hold: want a count on stdin, got %q", in.Text())
		}
		if err := fdRoom(want); err != nil {
			return err
		}
		var errs errCount
		start := time.Now()
		fds = holdMore(*path, fds, want, &errs)
		fmt.Printf("held %d %d %s\n", len(fds), time.Since(start).Nanoseconds(), errs.String())
	}
	return in.Err()
}

// fdRoom checks that RLIMIT_NOFILE lets this process hold n descriptors
// (Go raised the soft limit to the hard one at start-up).
func fdRoom(n int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("client hold: getrlimit: %w", err)
	}
	if uint64(n)+64 > lim.Cur {
		return fmt.Errorf("client hold: RLIMIT_NOFILE is %d, too few to hold %d calls: raise it (ulimit -n) or pass a smaller -s1-sizes", lim.Cur, n)
	}
	return nil
}

// holdMore opens path until fds holds want descriptors, from holdOpeners
// threads, and returns them; it stops at the first failed open.
func holdMore(path string, fds []int, want int, errs *errCount) []int {
	var (
		mu     sync.Mutex
		next   atomic.Int64
		failed atomic.Bool
		wg     sync.WaitGroup
	)
	next.Store(int64(len(fds)))
	for range holdOpeners {
		wg.Go(func() {
			for !failed.Load() && next.Add(1) <= int64(want) {
				fd, err := openRaw(path, errs)
				if err != nil {
					errs.add(err)
					failed.Store(true)
					return
				}
				mu.Lock()
				fds = append(fds, fd)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return fds
}

// clientFill makes -n instant calls one after the other (open, close) and
// prints "CYCLES NS ERRORS": the calls it made, and how long they took.
func clientFill(args []string) error {
	fs := flag.NewFlagSet("client fill", flag.ContinueOnError)
	path := fs.String("path", "", "acquire file")
	n := fs.Int("n", 1000, "calls to make")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var errs errCount
	done := 0
	start := time.Now()
	for range *n {
		fd, err := openRaw(*path, &errs)
		if err != nil {
			errs.add(err)
			continue
		}
		errs.add(syscall.Close(fd))
		done++
	}
	fmt.Printf("%d %d %s\n", done, time.Since(start).Nanoseconds(), errs.String())
	return nil
}
