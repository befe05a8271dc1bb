// Command storm is the 429-storm experiment (issue 18): N client processes
// call one HTTP API through one rlfs meter whose limit is set too high, and
// the API answers 429 (Retry-After: 2) past its own rate. Run once without
// the pause (each client waits out the Retry-After it got, alone) and once
// with it (each client writes retry-after to its acquire descriptor, so the
// whole meter waits), it counts requests sent, 429s received, retries, wall
// time and requests the API accepted.
//
//	storm run -meter /mnt/rl/api [-pause] [-clients 8] [-requests 60]
//	          [-rate 5] [-burst 5] [-retry-after 2]
//	storm serve [-addr 127.0.0.1:8080] [-rate 5] [-burst 5] [-retry-after 2]
//
// run starts the API on a free loopback port, starts the clients (this
// program again, as `storm client`) and prints one line of counts (and, with
// -json, the same as JSON). serve runs the API alone, to try the recipes of
// examples/http by hand. The API is a token bucket: -rate requests a second,
// bursts of -burst; past it, 429 with Retry-After: -retry-after (seconds).
// It listens on loopback only. Every loop is bounded: each request is retried
// at most 100 times, and a run gives up after 15 minutes.
//
// examples/http/storm.sh mounts a daemon and runs both ways.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: storm run|serve|client [flags]; see the package doc")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runStorm(os.Args[2:])
	case "serve":
		err = serve(os.Args[2:])
	case "client":
		err = client(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want run, serve or client", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "storm:", err)
		os.Exit(1)
	}
}

// api is the rate-limited HTTP API: a token bucket of burst tokens that
// refills at rate a second; a request that finds no token gets 429. It is
// safe for concurrent use.
type api struct {
	rate       float64
	burst      float64
	retryAfter int // seconds

	mu       sync.Mutex
	tokens   float64
	last     time.Time
	accepted int
	rejected int
}

func newAPI(rate, burst float64, retryAfter int) *api {
	return &api{rate: rate, burst: burst, retryAfter: retryAfter, tokens: burst, last: time.Now()}
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	now := time.Now()
	a.tokens = min(a.burst, a.tokens+now.Sub(a.last).Seconds()*a.rate)
	a.last = now
	ok := a.tokens >= 1
	if ok {
		a.tokens--
		a.accepted++
	} else {
		a.rejected++
	}
	n := a.accepted
	a.mu.Unlock()
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(a.retryAfter))
		http.Error(w, "too many requests", http.StatusTooManyRequests)
		return
	}
	fmt.Fprintf(w, "ok %d\n", n)
}

func (a *api) counts() (accepted, rejected int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accepted, a.rejected
}

// apiFlags are the API's flags, shared by run and serve.
func apiFlags(fs *flag.FlagSet) (rate, burst *float64, retryAfter *int) {
	rate = fs.Float64("rate", 5, "requests a second the API accepts")
	burst = fs.Float64("burst", 5, "the API's burst")
	retryAfter = fs.Int("retry-after", 2, "the Retry-After of a 429, in seconds")
	return
}

func serve(args []string) error {
	fs := flag.NewFlagSet("storm serve", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "where to listen (loopback)")
	rate, burst, ra := apiFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := requireLoopback(*addr); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "storm: serving http://%s/ (%g requests a second, bursts of %g, then 429 with Retry-After: %d)\n", *addr, *rate, *burst, *ra)
	return http.ListenAndServe(*addr, newAPI(*rate, *burst, *ra))
}

// requireLoopback refuses an address that is not on loopback: this is a
// load generator's target.
func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s is not a loopback address; use 127.0.0.1", addr)
	}
	return nil
}

// result is one run's counts (and one client's, without the API's part).
type result struct {
	Mode      string  `json:"mode"`
	Clients   int     `json:"clients"`
	Requests  int     `json:"requests"` // each client's
	Sent      int     `json:"sent"`
	Throttled int     `json:"throttled"` // 429s received: wasted calls
	Retries   int     `json:"retries"`
	OK        int     `json:"ok"`
	Failed    int     `json:"failed"` // requests given up on
	Seconds   float64 `json:"seconds"`
	Accepted  int     `json:"accepted"` // as the API counted
	Rejected  int     `json:"rejected"`
}

func runStorm(args []string) error {
	fs := flag.NewFlagSet("storm run", flag.ContinueOnError)
	meter := fs.String("meter", "", "the meter directory, such as /mnt/rl/api")
	pause := fs.Bool("pause", false, "clients write retry-after to their acquire descriptor on a 429")
	clients := fs.Int("clients", 8, "client processes")
	requests := fs.Int("requests", 60, "requests each client makes")
	asJSON := fs.Bool("json", false, "also print the counts as JSON")
	rate, burst, ra := apiFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *meter == "" {
		return errors.New("-meter is required: a meter directory of a mounted rlfs")
	}
	// Start from no pause, whatever an earlier run left.
	if err := os.WriteFile(*meter+"/pause", []byte("0\n"), 0); err != nil {
		return fmt.Errorf("lift the pause of %s: %w", *meter, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	a := newAPI(*rate, *burst, *ra)
	srv := &http.Server{Handler: a}
	go srv.Serve(ln)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	total := result{Mode: "without the pause", Clients: *clients, Requests: *requests}
	if *pause {
		total.Mode = "with the pause"
	}
	start := time.Now()
	results, err := startClients(ctx, *clients, []string{"client", "-url", "http://" + ln.Addr().String() + "/",
		"-acquire", *meter + "/acquire", "-requests", strconv.Itoa(*requests), "-retry-after", strconv.Itoa(*ra),
		"-pause=" + strconv.FormatBool(*pause)})
	total.Seconds = time.Since(start).Seconds()
	if err != nil {
		return err
	}
	for _, r := range results {
		total.Sent += r.Sent
		total.Throttled += r.Throttled
		total.Retries += r.Retries
		total.OK += r.OK
		total.Failed += r.Failed
	}
	total.Accepted, total.Rejected = a.counts()
	fmt.Printf("%s: %d clients x %d requests: sent %d, 429s %d, retries %d, accepted %d, failed %d, wall time %.1f s\n",
		total.Mode, total.Clients, total.Requests, total.Sent, total.Throttled, total.Retries, total.Accepted, total.Failed, total.Seconds)
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(total)
	}
	return nil
}

// startClients runs n client processes (this program, with args) and
// collects the result each prints.
func startClients(ctx context.Context, n int, args []string) ([]result, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	out := make([]result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, self, args...)
			cmd.Stderr = os.Stderr
			b, err := cmd.Output()
			if err == nil {
				err = json.Unmarshal(b, &out[i])
			}
			if err != nil {
				errs[i] = fmt.Errorf("client %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// client makes its requests one after the other, each holding the meter
// (its acquire opened O_RDWR). On a 429: with -pause it writes retry-after
// to the descriptor and retries at once (its next open waits for the
// pause); without, it waits out the Retry-After alone, then retries.
func client(args []string) error {
	fs := flag.NewFlagSet("storm client", flag.ContinueOnError)
	url := fs.String("url", "", "the API")
	acquire := fs.String("acquire", "", "the meter's acquire file")
	requests := fs.Int("requests", 60, "requests to make")
	ra := fs.Int("retry-after", 2, "the wait without the pause when a 429 has no Retry-After")
	pause := fs.Bool("pause", false, "pause the meter on a 429")
	if err := fs.Parse(args); err != nil {
		return err
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	var r result
	for range *requests {
		ok := false
		for try := 0; try <= 100 && !ok; try++ {
			if try > 0 {
				r.Retries++
			}
			wait, err := attempt(hc, *url, *acquire, *pause, *ra)
			r.Sent++
			switch {
			case err != nil:
				return err
			case wait < 0:
				ok = true
			default:
				r.Throttled++
				if wait == 0 {
					wait = time.Duration(*ra) * time.Second
				}
				if !*pause {
					time.Sleep(wait)
				}
			}
		}
		if ok {
			r.OK++
		} else {
			r.Failed++
		}
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// attempt makes one request holding the meter. It returns -1 for an
// accepted request, else the Retry-After of the 429 (0 if it had none);
// with pause, that Retry-After (or, if none, fallback seconds) is written
// to the descriptor first.
func attempt(hc *http.Client, url, acquire string, pause bool, fallback int) (time.Duration, error) {
	f, err := os.OpenFile(acquire, os.O_RDWR, 0) // waits for the grant
	if err != nil {
		return 0, err
	}
	defer f.Close() // completes the call
	resp, err := hc.Get(url)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		return -1, nil
	}
	v := resp.Header.Get("Retry-After")
	if pause {
		p := v
		if p == "" {
			p = strconv.Itoa(fallback)
		}
		if _, err := f.WriteString("retry-after " + p + "\n"); err != nil {
			return 0, fmt.Errorf("pause %s: %w", acquire, err)
		}
	}
	s, _ := strconv.Atoi(v)
	return time.Duration(s) * time.Second, nil
}
