package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The client subcommands run in their own processes and only ever open files
// of mounts that other processes serve:
//
//	bench client cycle -path P -n N -warm W -api raw|os|settle → "NS_PER_CYCLE ERRORS"
//	bench client loop -path P -start UNIXNS -dur D          → "CYCLES ERRORS"
//	bench client late -path P -threads T                    → "ARRIVE GRANT CLOSE" per call
//	bench client fifo -path P -status S -n N                → see clientFIFO
//	bench client handoff -a P -b P -status S -n N           → see clientHandoff
//	bench client hold -path P                               → see clientHold
//	bench client fill -path P -n N                          → "CYCLES NS ERRORS"
//	bench client stamps -path P -start UNIXNS -dur D        → see clientStamps
//
// ERRORS is "none" or a list such as "EAGAIN=3,EINTR=1". An EINTR is retried
// (and counted): a blocked FUSE open is interrupted only by a signal.
func clientMain(args []string) error {
	if len(args) == 0 {
		return errors.New("client: want a mode: cycle, loop, late, fifo, handoff, hold or fill")
	}
	switch args[0] {
	case "cycle":
		return clientCycle(args[1:])
	case "loop":
		return clientLoop(args[1:])
	case "late":
		return clientLate(args[1:])
	case "fifo":
		return clientFIFO(args[1:])
	case "handoff":
		return clientHandoff(args[1:])
	case "hold":
		return clientHold(args[1:])
	case "fill":
		return clientFill(args[1:])
	case "stamps":
		return clientStamps(args[1:])
	}
	return fmt.Errorf("client: unknown mode %q", args[0])
}

// errCount counts errors by errno name. Safe for concurrent use.
type errCount struct {
	mu sync.Mutex
	n  map[string]int
}

func (e *errCount) add(err error) {
	if err == nil {
		return
	}
	name := err.Error()
	var errno syscall.Errno
	if errors.As(err, &errno) {
		name = errnoName(errno)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n = map[string]int{}
	}
	e.n[name]++
}

func (e *errCount) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.n) == 0 {
		return "none"
	}
	var parts []string
	for k, v := range e.n {
		parts = append(parts, fmt.Sprintf("%s=%d", strings.ReplaceAll(k, " ", "_"), v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.EAGAIN:
		return "EAGAIN"
	case syscall.EINTR:
		return "EINTR"
	case syscall.EIO:
		return "EIO"
	case syscall.ETIMEDOUT:
		return "ETIMEDOUT"
	case syscall.ENOENT:
		return "ENOENT"
	case syscall.ECONNABORTED:
		return "ECONNABORTED"
	case syscall.ENOTCONN:
		return "ENOTCONN"
	case syscall.EACCES:
		return "EACCES"
	}
	return fmt.Sprintf("errno%d", int(e))
}

// openRaw opens path read-only with a bare open(2), retrying (and counting)
// EINTR.
func openRaw(path string, errs *errCount) (int, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			errs.add(err)
			continue
		}
		return fd, err
	}
}

// cycler returns one open+close cycle through the chosen API.
func cycler(api, path string, errs *errCount) (func() error, error) {
	switch api {
	case "raw":
		return func() error {
			fd, err := openRaw(path, errs)
			if err != nil {
				return err
			}
			return syscall.Close(fd)
		}, nil
	case "settle":
		return settleCycle(path, errs), nil
	case "os":
		return func() error {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			return f.Close()
		}, nil
	}
	return nil, fmt.Errorf("client: -api %q: want raw, os or settle", api)
}

func clientCycle(args []string) error {
	fs := flag.NewFlagSet("client cycle", flag.ContinueOnError)
	path := fs.String("path", "", "file to open and close")
	n := fs.Int("n", 10000, "timed cycles")
	warm := fs.Int("warm", 1000, "untimed cycles first")
	api := fs.String("api", "raw", "raw (syscall.Open/Close), os (os.Open/Close) or settle (O_RDWR, write a cost, Close)")
	most := fs.Duration("max", 0, "stop the timed cycles after this long, and the warm-up after a quarter of it (0: never); at least 20 are timed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var errs errCount
	one, err := cycler(*api, *path, &errs)
	if err != nil {
		return err
	}
	over := func(since time.Time, d time.Duration, done int) bool {
		return *most > 0 && done >= 20 && time.Since(since) > d
	}
	start := time.Now()
	for i := range *warm {
		if over(start, *most/4, i) {
			break
		}
		errs.add(one())
	}
	start = time.Now()
	done := 0
	for ; done < *n && !over(start, *most, done); done++ {
		errs.add(one())
	}
	el := time.Since(start)
	fmt.Printf("%d %s\n", el.Nanoseconds()/int64(max(done, 1)), errs.String())
	return nil
}

// clientLoop waits until -start, then opens and closes in a loop for -dur
// and counts the cycles whose open returned before the end.
func clientLoop(args []string) error {
	fs := flag.NewFlagSet("client loop", flag.ContinueOnError)
	path := fs.String("path", "", "file to open and close")
	startNS := fs.Int64("start", 0, "start instant, unix ns")
	dur := fs.Duration("dur", time.Second, "how long to loop")
	if err := fs.Parse(args); err != nil {
		return err
	}
	start := time.Unix(0, *startNS)
	end := start.Add(*dur)
	time.Sleep(time.Until(start))
	var errs errCount
	n := 0
	for {
		fd, err := openRaw(*path, &errs)
		at := time.Now()
		if err != nil {
			errs.add(err)
		} else {
			errs.add(syscall.Close(fd))
			if at.Before(end) {
				n++
			}
		}
		if !at.Before(end) {
			break
		}
	}
	fmt.Printf("%d %s\n", n, errs.String())
	return nil
}

// clientLate runs -threads blocking opens at once; each closes right after
// its grant (an instant call) and prints "ARRIVE GRANT CLOSE" in unix ns:
// before the open, after it returned, before the close.
func clientLate(args []string) error {
	fs := flag.NewFlagSet("client late", flag.ContinueOnError)
	path := fs.String("path", "", "acquire file")
	threads := fs.Int("threads", 20, "concurrent waiters")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var errs errCount
	lines := make([]string, *threads)
	var wg sync.WaitGroup
	for i := range *threads {
		wg.Go(func() {
			arrive := time.Now().UnixNano()
			fd, err := openRaw(*path, &errs)
			grant := time.Now().UnixNano()
			if err != nil {
				errs.add(err)
				return
			}
			closeAt := time.Now().UnixNano()
			errs.add(syscall.Close(fd))
			lines[i] = fmt.Sprintf("%d %d %d", arrive, grant, closeAt)
		})
	}
	wg.Wait()
	w := bufio.NewWriter(os.Stdout)
	for _, l := range lines {
		if l != "" {
			fmt.Fprintln(w, l)
		}
	}
	fmt.Fprintf(w, "errors %s\n", errs.String())
	return w.Flush()
}

// clientFIFO measures a long queue and checks that it is served in arrival
// order. It holds the meter (a non-blocking open), then starts -n waiters.
// With -sequential each starts only after the daemon's status shows the
// previous one queued, so the arrival order is the start order; without it
// they start at once (for memory: no status polling in between). It prints
// "ready ENQUEUE_NS", waits for a line on stdin, releases the hold and
// prints "done GRANT_NS MISMATCHES GRANTED ERRORS" once every waiter has had
// its call (each closes at once). Grants are serialized (concurrency=1): a
// waiter's grant follows the previous holder's close, so the order in which
// the waiters take a ticket after their open returns is the grant order.
func clientFIFO(args []string) error {
	fs := flag.NewFlagSet("client fifo", flag.ContinueOnError)
	path := fs.String("path", "", "acquire file of a concurrency=1 meter")
	status := fs.String("status", "", "the meter's status file")
	n := fs.Int("n", 10000, "waiters")
	sequential := fs.Bool("sequential", true, "start each waiter once the previous one is queued")
	if err := fs.Parse(args); err != nil {
		return err
	}
	debug.SetMaxThreads(*n + 1000) // each blocked open holds a thread
	var errs errCount
	hold, err := syscall.Open(*path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("client fifo: hold %s: %w", *path, err)
	}
	order := make([]int32, *n)
	var next atomic.Int32
	var wg sync.WaitGroup
	running := make(chan struct{})
	start := time.Now()
	for i := range *n {
		wg.Go(func() {
			running <- struct{}{}
			fd, err := openRaw(*path, &errs)
			if err != nil {
				errs.add(err)
				return
			}
			order[next.Add(1)-1] = int32(i)
			errs.add(syscall.Close(fd))
		})
		<-running // on a thread of its own, about to open
		if *sequential {
			if err := waitQueued(*status, i+1, 0); err != nil {
				return err
			}
		}
	}
	if !*sequential {
		if err := waitQueued(*status, *n, 10*time.Millisecond); err != nil {
			return err
		}
	}
	fmt.Printf("ready %d\n", time.Since(start).Nanoseconds())
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("client fifo: read go: %w", err)
	}
	start = time.Now()
	if err := syscall.Close(hold); err != nil {
		return err
	}
	wg.Wait()
	grantNS := time.Since(start).Nanoseconds()
	granted := int(next.Load())
	mismatches := 0
	for k := range granted {
		if order[k] != int32(k) {
			mismatches++
		}
	}
	fmt.Printf("done %d %d %d %s\n", grantNS, mismatches, granted, errs.String())
	return nil
}

// waitQueued polls the status file, every pause, until it reports want
// waiters.
func waitQueued(status string, want int, pause time.Duration) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := os.ReadFile(status)
		if err != nil {
			return fmt.Errorf("client fifo: read %s: %w", status, err)
		}
		if got := statusInt(string(b), "waiting"); got >= want {
			if got > want {
				return fmt.Errorf("client fifo: %d waiting, want %d: the queue grew by itself", got, want)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("client fifo: waiter %d never showed in %s", want, status)
		}
		time.Sleep(pause)
	}
}

// statusInt returns the leading integer of the status line "key: N ...", or -1.
func statusInt(text, key string) int {
	for line := range strings.SplitSeq(text, "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return -1
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			return -1
		}
		return n
	}
	return -1
}
