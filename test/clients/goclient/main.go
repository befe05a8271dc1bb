// Command goclient is an rlfs end-to-end client in Go: it makes calls on a
// meter with os.Open and Close, and logs each call's grant and release time.
//
//	goclient -acquire MNT/m/acquire -id ID -calls N -hold D -log FILE
//
// Each call appends "ID GRANT_NS RELEASE_NS CALL CLOSED_NS DAEMON_GRANT_NS
// ASKED_NS" to FILE (unix ns, taken right after the open returns, right before
// the close, right after it and right before the open; CALL and
// DAEMON_GRANT_NS, with ms precision, are the call id and grant time printed
// by the daemon).
//
// With -costs (weighted calls, acquire@N), call i opens ACQUIRE@COST with
// os.OpenFile(O_RDWR), holds, writes its actual cost and closes; -costs and
// -actuals are comma-separated lists used in turn, an actual of - writes
// nothing. The log line then adds "COST ACTUAL SETTLE_FROM_NS SETTLE_TO_NS"
// (taken right before the write and right after it returned; - when nothing
// was written).
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"regexp"
	"strings"
	"time"
)

var (
	callRE  = regexp.MustCompile(` call (\d+)`)
	grantRE = regexp.MustCompile(`^granted (\S+) `)
)

func main() {
	acquire := flag.String("acquire", "", "the meter's acquire file")
	id := flag.String("id", "go", "client id for the log")
	calls := flag.Int("calls", 1, "number of calls")
	hold := flag.Duration("hold", 0, "how long each call holds the meter")
	logPath := flag.String("log", "", "file to append one line per call to")
	costs := flag.String("costs", "", "weighted calls: comma-separated costs, used in turn")
	actuals := flag.String("actuals", "-", "weighted calls: comma-separated actual costs (- for none), used in turn")
	flag.Parse()
	out, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	defer out.Close()
	cs, as := strings.Split(*costs, ","), strings.Split(*actuals, ",")
	for i := range *calls {
		var line string
		if *costs == "" {
			line = call(*acquire, *hold)
		} else {
			line = weighted(*acquire, *hold, cs[i%len(cs)], as[i%len(as)])
		}
		if _, err := fmt.Fprintf(out, "%s %s\n", *id, line); err != nil {
			log.Fatal(err)
		}
	}
}

// call makes one plain call and returns its log line without the id.
func call(acquire string, hold time.Duration) string {
	asked := time.Now()
	f, err := os.Open(acquire)
	if err != nil {
		log.Fatal(err)
	}
	grant := time.Now()
	id, daemonGrant := grantLine(f, acquire)
	time.Sleep(hold)
	release := time.Now()
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	closed := time.Now()
	return fmt.Sprintf("%d %d %s %d %s %d", grant.UnixNano(), release.UnixNano(), id, closed.UnixNano(), daemonGrant, asked.UnixNano())
}

// weighted makes one call of cost units, settles actual unless it is -,
// and returns its log line without the id.
func weighted(acquire string, hold time.Duration, cost, actual string) string {
	path := acquire + "@" + cost
	asked := time.Now()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		log.Fatal(err)
	}
	grant := time.Now()
	id, daemonGrant := grantLine(f, path)
	time.Sleep(hold)
	settled := "- - -"
	if actual != "-" {
		from := time.Now()
		if _, err := f.WriteString(actual + "\n"); err != nil {
			log.Fatalf("settle %s: %v", path, err)
		}
		settled = fmt.Sprintf("%s %d %d", actual, from.UnixNano(), time.Now().UnixNano())
	}
	release := time.Now()
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	closed := time.Now()
	return fmt.Sprintf("%d %d %s %d %s %d %s %s", grant.UnixNano(), release.UnixNano(), id, closed.UnixNano(), daemonGrant,
		asked.UnixNano(), cost, settled)
}

// grantLine reads the grant line of an open acquire and returns the call id
// and the daemon's grant time in it ("-" where not found).
func grantLine(f *os.File, path string) (id, daemonGrant string) {
	buf := make([]byte, 512)
	n, err := f.Read(buf)
	if err != nil {
		log.Fatalf("read %s: %v", path, err)
	}
	id, daemonGrant = "-", "-"
	if m := callRE.FindSubmatch(buf[:n]); m != nil {
		id = string(m[1])
	}
	if m := grantRE.FindSubmatch(buf[:n]); m != nil {
		if at, err := time.Parse(time.RFC3339Nano, string(m[1])); err == nil {
			daemonGrant = fmt.Sprint(at.UnixNano())
		}
	}
	return id, daemonGrant
}
