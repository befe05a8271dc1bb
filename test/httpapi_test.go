package test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// limitedAPI is an HTTP API on loopback with a quota per window, as many
// APIs have: it accepts quota requests, then answers 429 with Retry-After
// until that instant has passed, and then accepts quota more. So the
// request after each quota is a 429 however slow the clients are, and a
// request that comes before the Retry-After has passed is one more 429.
// The Retry-After is retryAfter seconds; with dates, every other one is an
// HTTP-date instead, retryAfter+1 seconds ahead rounded up to a whole
// second. It records every request. Safe for concurrent use.
type limitedAPI struct {
	quota      int
	retryAfter int
	dates      bool

	mu      sync.Mutex
	left    int       // requests the window still accepts
	resetAt time.Time // when a new window starts, once left is 0
	hits    []apiHit
	url     string
}

// apiHit is one request the API got: when, what it answered and, for a
// 429, the instant its Retry-After named (no request should come before).
type apiHit struct {
	at     time.Time
	status int
	until  time.Time
	header string // the Retry-After sent
}

// startLimitedAPI serves a limitedAPI on 127.0.0.1 until the test ends.
func startLimitedAPI(t *testing.T, quota, retryAfter int, dates bool) *limitedAPI {
	t.Helper()
	a := &limitedAPI{quota: quota, retryAfter: retryAfter, dates: dates, left: quota}
	srv := httptest.NewServer(a) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	a.url = srv.URL + "/"
	return a
}

func (a *limitedAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	now := time.Now()
	if a.left == 0 && !a.resetAt.IsZero() && !now.Before(a.resetAt) {
		a.left, a.resetAt = a.quota, time.Time{} // a new window
	}
	h := apiHit{at: now, status: http.StatusOK}
	if a.left > 0 {
		a.left--
	} else {
		h.status = http.StatusTooManyRequests
		h.until = now.Add(time.Duration(a.retryAfter) * time.Second)
		h.header = strconv.Itoa(a.retryAfter)
		if a.dates && a.throttled()%2 == 1 {
			// Rounded up: the date's resolution. A second more, so that a
			// slow client still writes it before it has passed.
			h.until = now.Add(time.Duration(a.retryAfter+1) * time.Second).Truncate(time.Second).Add(time.Second)
			h.header = h.until.UTC().Format(http.TimeFormat)
		}
		if h.until.After(a.resetAt) {
			a.resetAt = h.until
		}
	}
	a.hits = append(a.hits, h)
	n := len(a.hits)
	a.mu.Unlock()
	if h.status != http.StatusOK {
		w.Header().Set("Retry-After", h.header)
		http.Error(w, "too many requests", h.status)
		return
	}
	fmt.Fprintf(w, "ok %d\n", n)
}

// throttled counts the 429s so far; a.mu is held.
func (a *limitedAPI) throttled() int {
	n := 0
	for _, h := range a.hits {
		if h.status == http.StatusTooManyRequests {
			n++
		}
	}
	return n
}

// record is a copy of every request the API got, in order.
func (a *limitedAPI) record() []apiHit {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]apiHit(nil), a.hits...)
}

// counts are the API's accepted and throttled requests.
func counts(hits []apiHit) (accepted, throttled int) {
	for _, h := range hits {
		if h.status == http.StatusOK {
			accepted++
		} else {
			throttled++
		}
	}
	return accepted, throttled
}

// earlyAfterPause lists the requests that came after a 429 and before the
// instant its Retry-After named: what a pause every caller hears prevents.
func earlyAfterPause(hits []apiHit) []string {
	var bad []string
	for i, h := range hits {
		if h.status != http.StatusTooManyRequests {
			continue
		}
		for _, n := range hits[i+1:] {
			if n.at.Before(h.until) {
				bad = append(bad, fmt.Sprintf("request at %s came %s after the 429 at %s (Retry-After: %s, until %s)",
					n.at.Format("15:04:05.000"), fmtMS(n.at.Sub(h.at)), h.at.Format("15:04:05.000"), h.header, h.until.Format("15:04:05.000")))
			}
		}
	}
	return bad
}

// pythonRequests is a python3 that can import requests: the suite's
// python3 if it can, else Debian's /usr/bin/python3 (python3-requests),
// resolved once.
var pythonRequests = struct {
	once sync.Once
	in   interpreter
}{in: interpreter{name: "python3 with the requests module"}}

// needPythonRequests returns that python3, or skips the test (fails it
// under CI) when neither has requests.
func needPythonRequests(t *testing.T) string {
	t.Helper()
	pythonRequests.once.Do(func() {
		var tried []string
		for _, p := range []string{python3.path, "/usr/bin/python3"} {
			if p == "" {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
			out, err := exec.CommandContext(ctx, p, "-c", "import requests").CombinedOutput()
			cancel()
			if err == nil {
				pythonRequests.in.path = p
				return
			}
			tried = append(tried, fmt.Sprintf("%s: %v: %s", p, err, strings.TrimSpace(string(out))))
		}
		pythonRequests.in.err = fmt.Errorf("no python3 here imports requests (apt-get install python3-requests); tried %s", strings.Join(tried, "; "))
	})
	return pythonRequests.in.need(t)
}

// needTool returns the path of a program the test runs, or skips the test
// (fails it under CI) when it is missing.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is needed (CI is set, so this is a failure): apt-get install %s", name, pkg)
	}
	t.Skipf("%s is needed: apt-get install %s", name, pkg)
	return ""
}
