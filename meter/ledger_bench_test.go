package meter_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

// The size sweeps of issue 17 (design §11: "a flat curve is the proof"):
// what one decision, and one call's enqueue+release, costs while a meter
// remembers 0, 1k, 10k or 100k calls, held (in progress) or in a window.
// CI only compiles them; run them with
//
//	go test -run '^$' -bench 'Ledger|Local|Admit' -benchmem ./meter/
//
// and read ns/op along each curve. -benchtime=1x runs each once, quickly.

var sweepSizes = []int{0, 1_000, 10_000, 100_000}

// The two shapes a meter's memory takes: calls held against a concurrency
// limit high enough for every size, and completed calls counting in a
// window wide enough for every size (count=completion, unlimited
// concurrency).
const (
	heldSpec   = "concurrency=200000"
	windowSpec = "1000000/1h,concurrency=0"
	windowPer  = time.Hour
)

var sweepHolder = meter.Holder{PID: 4121, UID: 1000, GID: 100, Cmd: "curl -s https://api.example.com/v1/items"}

// windowStep is the clock's advance per call that keeps a window of
// windowPer holding n completed calls before each decision, in steady
// state: each call made ages one out.
func windowStep(n int) time.Duration { return windowPer / time.Duration(n+1) }

// ledgerRig is a Ledger on a clock the benchmark advances.
type ledgerRig struct {
	led  *meter.Ledger
	now  time.Time
	step time.Duration
}

// newHeldLedger is a ledger with n calls in progress.
func newHeldLedger(b *testing.B, n int) *ledgerRig {
	r := &ledgerRig{led: meter.NewLedger(mustSpec(b, heldSpec), meter.DefaultHistory), now: t0, step: time.Microsecond}
	for range n {
		r.led.Advance(r.now)
		r.led.Grant(r.now, sweepHolder, 1)
	}
	if open, _ := r.led.Counts(); open != n {
		b.Fatalf("held ledger: %d calls in progress, want %d", open, n)
	}
	return r
}

// newWindowLedger is a ledger whose window holds n completed calls, in
// steady state: n+1 calls were made windowStep(n) apart.
func newWindowLedger(b *testing.B, n int) *ledgerRig {
	r := &ledgerRig{led: meter.NewLedger(mustSpec(b, windowSpec), meter.DefaultHistory), now: t0, step: windowStep(n)}
	for range n + 1 {
		r.cycle(b)
	}
	r.led.Advance(r.now)
	if got := r.led.Usage()[0].Used; got < n || got > n+1 {
		b.Fatalf("window ledger: %d calls count, want %d", got, n)
	}
	return r
}

// cycle is one instant call as meter.Local makes it: bring the ledger to
// now, admit, grant; then complete and retire at the same instant.
func (r *ledgerRig) cycle(b *testing.B) {
	r.now = r.now.Add(r.step)
	r.led.Advance(r.now)
	if d := r.led.Admit(r.now, 1); !d.OK {
		b.Fatalf("Admit at %v: refused (%v)", r.now.Sub(t0), d.At)
	}
	c := r.led.Grant(r.now, sweepHolder, 1)
	r.led.Advance(r.now)
	if _, ok := r.led.Complete(c.ID, r.now); !ok {
		b.Fatalf("Complete(%d): not in progress", c.ID)
	}
	r.led.Retire(r.now)
}

// BenchmarkLedgerCycle is one call's decision, grant, completion and
// retirement on the Ledger alone, by size.
func BenchmarkLedgerCycle(b *testing.B) {
	shapes := []struct {
		name string
		make func(*testing.B, int) *ledgerRig
	}{{"held", newHeldLedger}, {"window", newWindowLedger}}
	for _, sh := range shapes {
		for _, n := range sweepSizes {
			b.Run(fmt.Sprintf("%s=%d", sh.name, n), func(b *testing.B) {
				r := sh.make(b, n)
				b.ReportAllocs()
				for b.Loop() {
					r.cycle(b)
				}
			})
		}
	}
}

// BenchmarkAdmit is one decision at each size: AdmitCost, the rule as
// plain data (the O(n) reference the engine used to run per decision), on
// the State the ledger pictures, beside Ledger.Admit on the ledger itself.
func BenchmarkAdmit(b *testing.B) {
	shapes := []struct {
		name string
		make func(*testing.B, int) *ledgerRig
	}{{"held", newHeldLedger}, {"window", newWindowLedger}}
	for _, sh := range shapes {
		for _, n := range sweepSizes {
			r := sh.make(b, n)
			spec, st := r.led.Spec(), r.led.State()
			b.Run(fmt.Sprintf("%s=%d/AdmitCost", sh.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if !meter.AdmitCost(spec, &st, r.now, 1).OK {
						b.Fatal("AdmitCost: refused")
					}
				}
			})
			b.Run(fmt.Sprintf("%s=%d/Ledger", sh.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if !r.led.Admit(r.now, 1).OK {
						b.Fatal("Ledger.Admit: refused")
					}
				}
			})
		}
	}
}

// nopStore is a LocalStore that persists no call, so that BenchmarkLocal
// measures the decider, not a store (MemStore's Complete is linear in the
// calls it keeps; meter/sqlite has benchmarks of its own). Meters and data
// files are a MemStore's.
type nopStore struct{ *metertest.MemStore }

func (nopStore) Grant(string, meter.Call, time.Time, time.Time) error { return nil }
func (nopStore) Complete(string, meter.Call) error                    { return nil }
func (nopStore) Retire(string, time.Time, bool, []meter.Past) error   { return nil }
func (nopStore) Settle(string, uint64, int64, time.Time) error        { return nil }
func (nopStore) Revoke(string, uint64) error                          { return nil }

// localRig is one meter "m" of a meter.Local on a fake clock.
type localRig struct {
	loc  *meter.Local
	clk  *metertest.Clock
	step time.Duration
	tick uint64
}

func newLocalRig(b *testing.B, spec string, step time.Duration) *localRig {
	clk := metertest.NewClock()
	loc, err := meter.NewLocal(nopStore{metertest.NewMemStore()}, clk, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { loc.Close() })
	if err := loc.CreateMeter(context.Background(), "m", mustSpec(b, spec), meter.DefaultAttr()); err != nil {
		b.Fatal(err)
	}
	return &localRig{loc: loc, clk: clk, step: step}
}

// enqueue asks for a call, which must be granted at once.
func (r *localRig) enqueue(b *testing.B) meter.Call {
	r.tick++
	adm, err := r.loc.Enqueue(context.Background(), "m", meter.Request{Ticket: r.tick, Holder: sweepHolder, Cost: 1})
	if err != nil || !adm.Granted {
		b.Fatalf("Enqueue %d: granted %v, %v", r.tick, adm.Granted, err)
	}
	return adm.Call
}

// cycle is one instant call: enqueue (granted at once), release.
func (r *localRig) cycle(b *testing.B) {
	r.clk.Advance(r.step)
	c := r.enqueue(b)
	if err := r.loc.Release(context.Background(), "m", c.ID); err != nil {
		b.Fatalf("Release(%d): %v", c.ID, err)
	}
}

// BenchmarkLocalCycle is one call's enqueue and release through
// meter.Local (its lock, queue check, ledger, events; no store), by size.
func BenchmarkLocalCycle(b *testing.B) {
	for _, n := range sweepSizes {
		b.Run(fmt.Sprintf("held=%d", n), func(b *testing.B) {
			r := newLocalRig(b, heldSpec, time.Microsecond)
			for range n {
				r.enqueue(b)
			}
			b.ReportAllocs()
			for b.Loop() {
				r.cycle(b)
			}
		})
	}
	for _, n := range sweepSizes {
		b.Run(fmt.Sprintf("window=%d", n), func(b *testing.B) {
			r := newLocalRig(b, windowSpec, windowStep(n))
			for range n + 1 {
				r.cycle(b)
			}
			v, err := r.loc.View(context.Background(), "m", meter.ViewQuery{})
			if err != nil || v.Usage[0].Used < n || v.Usage[0].Used > n+1 {
				b.Fatalf("window of %d: View says %+v, %v", n, v.Usage, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				r.cycle(b)
			}
		})
	}
}
