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
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"regexp"
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
	flag.Parse()
	out, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	defer out.Close()
	for range *calls {
		asked := time.Now()
		f, err := os.Open(*acquire)
		if err != nil {
			log.Fatal(err)
		}
		grant := time.Now()
		buf := make([]byte, 512)
		n, err := f.Read(buf)
		if err != nil {
			log.Fatalf("read %s: %v", *acquire, err)
		}
		call, daemonGrant := "-", "-"
		if m := callRE.FindSubmatch(buf[:n]); m != nil {
			call = string(m[1])
		}
		if m := grantRE.FindSubmatch(buf[:n]); m != nil {
			if at, err := time.Parse(time.RFC3339Nano, string(m[1])); err == nil {
				daemonGrant = fmt.Sprint(at.UnixNano())
			}
		}
		time.Sleep(*hold)
		release := time.Now()
		if err := f.Close(); err != nil {
			log.Fatal(err)
		}
		closed := time.Now()
		if _, err := fmt.Fprintf(out, "%s %d %d %s %d %s %d\n", *id, grant.UnixNano(), release.UnixNano(), call,
			closed.UnixNano(), daemonGrant, asked.UnixNano()); err != nil {
			log.Fatal(err)
		}
	}
}
