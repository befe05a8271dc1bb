package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// quotaHosts are the hosts of the quota step.
var quotaHosts = fleetHosts[:2]

// The quota step (rows q): a fleet quota as an API plan sets it, such as
// 3500/1m, on 2 hosts sharing one Redis, cfg.quotaProcs client processes
// per host looping open+close from one instant. It counts the grants of
// the first minute (the whole plan should go, at once: nothing else holds
// the meter) and the violations over the whole run.
//
// A violation is a plan's N+1 grants within less than its period, as the
// clients saw them (the instant each open returned). That is exact for
// rlfs's windows, which count a call from its grant until its completion
// plus the period: a call's completion comes after its open returned, and
// its slot is given again no earlier than the completion plus the period,
// so two grants N apart are a period apart in what the clients see too.

// quotaResult is one plan's run.
type quotaResult struct {
	plan       string
	n          int           // the plan's calls per period
	per        time.Duration // its period
	firstMin   int           // grants within the first period
	reached    time.Duration // when the N-th grant came (0: never)
	total      int           // grants over the whole run
	violations int
	perHost    []int // grants of the first period by host
}

// quota runs every plan of cfg.quotaPlans.
func (b *bench) quota() error {
	for _, plan := range b.cfg.quotaPlans {
		q, err := b.quotaRun(plan)
		if err != nil {
			return fmt.Errorf("%s: %w", plan, err)
		}
		b.quotas = append(b.quotas, q)
	}
	return nil
}

// quotaRun measures one plan: its own Redis, 2 hosts, clients for
// cfg.quotaDur from one instant; at the end the meter's limits are raised
// on host a, so that the clients blocked on the exhausted quota return.
func (b *bench) quotaRun(plan string) (*quotaResult, error) {
	q := &quotaResult{plan: plan}
	n, per, ok := strings.Cut(plan, "/")
	var err error
	if q.n, err = strconv.Atoi(n); !ok || err != nil {
		return nil, fmt.Errorf("a plan is N/PERIOD, such as 3500/1m")
	}
	if q.per, err = time.ParseDuration(per); err != nil {
		return nil, fmt.Errorf("a plan is N/PERIOD, such as 3500/1m: %w", err)
	}
	b.progress("quota %s: 2 hosts × %d processes for %s", plan, b.cfg.quotaProcs, b.cfg.quotaDur)
	tag := "quota-" + strings.ReplaceAll(plan, "/", "-")
	r, err := b.startRedis("redis-" + tag)
	if err != nil {
		return nil, err
	}
	var mnts []string
	for _, h := range quotaHosts {
		p, err := b.startRlfsRedis(tag+"-"+h, b.cfg.rlfs, r, nil, "--meter", "q="+plan)
		if err != nil {
			return nil, err
		}
		mnts = append(mnts, p.mnt)
	}
	start := time.Now().Add(500 * time.Millisecond)
	end := start.Add(b.cfg.quotaDur)
	lift := time.AfterFunc(time.Until(end.Add(200*time.Millisecond)), func() {
		_ = os.WriteFile(filepath.Join(mnts[0], "q", "limits"), []byte("1000000000/1s\n"), 0o644)
	})
	defer lift.Stop()
	stamps, err := b.quotaClients(mnts, start, end)
	if err != nil {
		return nil, err
	}
	q.judge(stamps, start)
	b.stopAll()
	return q, nil
}

// quotaClients runs the clients of every host and returns each host's
// grant instants, sorted.
func (b *bench) quotaClients(mnts []string, start, end time.Time) ([][]time.Time, error) {
	stamps := make([][]time.Time, len(mnts))
	errs := make([]error, len(mnts))
	var wg sync.WaitGroup
	for i, m := range mnts {
		wg.Go(func() {
			outs, err := runClients(b.cfg.quotaProcs, b.self, "client", "stamps", "-path", filepath.Join(m, "q", "acquire"),
				"-start", strconv.FormatInt(start.UnixNano(), 10), "-dur", end.Sub(start).String())
			if err != nil {
				errs[i] = err
				return
			}
			for _, o := range outs {
				lines := strings.Split(o, "\n")
				b.clientErrors("quota", strings.TrimPrefix(lines[0], "errors "))
				for _, l := range lines[1:] {
					ns, err := strconv.ParseInt(l, 10, 64)
					if err != nil {
						errs[i] = fmt.Errorf("client said %q", l)
						return
					}
					stamps[i] = append(stamps[i], time.Unix(0, ns))
				}
			}
			slices.SortFunc(stamps[i], time.Time.Compare)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return stamps, nil
}

// judge counts the first period's grants and the violations.
func (q *quotaResult) judge(byHost [][]time.Time, start time.Time) {
	var all []time.Time
	for _, hs := range byHost {
		first := 0
		for _, t := range hs {
			if t.Sub(start) < q.per {
				first++
			}
		}
		q.perHost = append(q.perHost, first)
		q.firstMin += first
		all = append(all, hs...)
	}
	slices.SortFunc(all, time.Time.Compare)
	q.total = len(all)
	if len(all) >= q.n {
		q.reached = all[q.n-1].Sub(start)
	}
	for k := q.n; k < len(all); k++ {
		if all[k].Sub(all[k-q.n]) < q.per {
			q.violations++
		}
	}
}

// quotaRows are rows q.
func (b *bench) quotaRows() []row {
	var rs []row
	for i, q := range b.quotas {
		off := float64(q.firstMin-q.n) / float64(q.n)
		var hs []string
		for j, v := range q.perHost {
			hs = append(hs, fmt.Sprintf("%s %d", quotaHosts[j], v))
		}
		reached := "never"
		if q.reached > 0 {
			reached = "the " + strconv.Itoa(q.n) + "th at " + q.reached.Round(10*time.Millisecond).String()
		}
		rs = append(rs, row{id: fmt.Sprintf("q%d", i+1),
			what:   fmt.Sprintf("`%s` on 2 hosts × %d processes: grants in the first %s; violations in %s", q.plan, b.cfg.quotaProcs, q.per, b.cfg.quotaDur),
			rlfs:   fmt.Sprintf("%d (%+.1f%%; %s; %s), %d violations of %d grants", q.firstMin, 100*off, strings.Join(hs, ", "), reached, q.violations, q.total),
			target: "±1%, 0 violations", result: verdict(off >= -0.01 && off <= 0.01 && q.violations == 0)})
	}
	return rs
}

// quotaDoc describes rows q in the report.
func (b *bench) quotaDoc(p func(string, ...any)) {
	p("- **q** fleet quotas: for each plan (%s), a Redis and 2 daemons (hosts %s) with the meter `q=PLAN`;", strings.Join(b.cfg.quotaPlans, ", "), strings.Join(quotaHosts, ", "))
	p("  %d client processes per host loop raw open+close on their host's `q` from one instant for %s, each", b.cfg.quotaProcs, b.cfg.quotaDur)
	p("  noting when every open returned. Grants in the first period: those noted less than the period after")
	p("  the start. A violation is N+1 grants (N the plan's calls) noted within less than the period, over the")
	p("  whole run: exact for windows that count a call from its grant until its completion plus the period (the")
	p("  completion follows the noted instant, and its slot is given again no earlier than the completion plus the")
	p("  period). At the end the bench raises the limits on host a, so that the clients blocked on the spent")
	p("  quota return.")
}

// clientStamps loops raw open+close on -path from -start for -dur and
// prints "errors ERRORS", then the instant (unix ns) each open returned
// before the end, one a line. An open still blocked at the end returns
// when the bench raises the limits; it is not noted.
func clientStamps(args []string) error {
	fs := flag.NewFlagSet("client stamps", flag.ContinueOnError)
	path := fs.String("path", "", "file to open and close")
	startNS := fs.Int64("start", 0, "start instant, unix ns")
	dur := fs.Duration("dur", time.Minute, "how long to loop")
	if err := fs.Parse(args); err != nil {
		return err
	}
	start := time.Unix(0, *startNS)
	end := start.Add(*dur)
	time.Sleep(time.Until(start))
	var errs errCount
	var stamps []int64
	for {
		fd, err := openRaw(*path, &errs)
		at := time.Now()
		if err != nil {
			errs.add(err)
		} else {
			errs.add(syscall.Close(fd))
			if at.Before(end) {
				stamps = append(stamps, at.UnixNano())
			}
		}
		if !at.Before(end) {
			break
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "errors %s\n", errs.String())
	for _, s := range stamps {
		fmt.Fprintf(&out, "%d\n", s)
	}
	_, err := os.Stdout.WriteString(out.String())
	return err
}
