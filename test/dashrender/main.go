// Command dashrender draws the panels of docs/grafana/rlfs.json from a real
// run, without Grafana: it scrapes the /metrics of one or more rlfs daemons
// every second for a while, works out what each panel's query shows (rates
// over a window, histogram quantiles interpolated within buckets as
// Prometheus's histogram_quantile does, ratios, maxima over the daemons)
// and writes the panels as one SVG. docs/grafana/render.sh runs it against
// a 2-host fleet under load and turns the SVG into a PNG. It is not run by
// the tests or CI.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func main() {
	addrs := flag.String("metrics", "", "the daemons' --metrics addresses, comma-separated")
	hosts := flag.String("hosts", "", "their host names, comma-separated, for the legends")
	dur := flag.Duration("duration", 90*time.Second, "how long to scrape")
	every := flag.Duration("every", time.Second, "how often to scrape")
	out := flag.String("out", "panels.svg", "the SVG to write")
	note := flag.String("note", "", "a line under the title: how the run was made")
	flag.Parse()
	if err := run(strings.Split(*addrs, ","), strings.Split(*hosts, ","), *dur, *every, *out, *note); err != nil {
		fmt.Fprintln(os.Stderr, "dashrender:", err)
		os.Exit(1)
	}
}

// scrape is one reading of every daemon: its metric families by name.
type scrape struct {
	at  time.Time
	fam []map[string]*dto.MetricFamily // one per daemon, nil if it did not answer
}

func run(addrs, hosts []string, dur, every time.Duration, out, note string) error {
	if len(addrs) == 0 || addrs[0] == "" {
		return fmt.Errorf("give the daemons' addresses with -metrics")
	}
	if len(hosts) != len(addrs) {
		return fmt.Errorf("give one host name per address with -hosts")
	}
	c := &http.Client{Timeout: 5 * time.Second} // a scrape waits up to 2 s for the meters

	var scrapes []scrape
	t := time.NewTicker(every)
	defer t.Stop()
	for end := time.Now().Add(dur); time.Now().Before(end); <-t.C {
		s := scrape{at: time.Now(), fam: make([]map[string]*dto.MetricFamily, len(addrs))}
		var wg sync.WaitGroup
		for i, a := range addrs {
			wg.Go(func() { s.fam[i] = get(c, a) })
		}
		wg.Wait()
		scrapes = append(scrapes, s)
	}
	panels := computePanels(scrapes, hosts)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	times := make([]time.Time, len(scrapes))
	for i, s := range scrapes {
		times[i] = s.at
	}
	return drawSVG(f, panels, times, note)
}

// get reads one daemon's metrics; nil when it does not answer.
func get(c *http.Client, addr string) map[string]*dto.MetricFamily {
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		return nil
	}
	return fams
}

// metricPtr is one parsed metric.
type metricPtr = *dto.Metric

// label is the value of label name of m ("" if it has none).
func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// value is a counter's, a gauge's or an untyped metric's value.
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	return m.GetUntyped().GetValue()
}
