package sqlite_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
	"github.com/rlfs/rlfs/meter/sqlite"
)

// The benchmarks write to b.TempDir: set TMPDIR to a directory on the disk
// the daemon uses, or "full" measures a tmpfs's fsync, which is free.

func benchStore(b *testing.B, sync string) *sqlite.Store {
	b.Helper()
	s, err := sqlite.Open(filepath.Join(b.TempDir(), "meters.db"), sqlite.Options{Sync: sync})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	spec, _ := meter.ParseSpec("rate=1000/s,burst=10")
	if err := s.CreateMeter("api", spec, meter.DefaultAttr()); err != nil {
		b.Fatal(err)
	}
	return s
}

var benchHolder = meter.Holder{PID: 4121, UID: 1000, GID: 100, Cmd: "curl -s https://api.example.com/v1/items"}

// BenchmarkGrant is the cost of persisting one grant, as open(acquire) pays it.
func BenchmarkGrant(b *testing.B) {
	for _, sync := range []string{"normal", "full"} {
		b.Run(sync, func(b *testing.B) {
			s := benchStore(b, sync)
			b.ReportAllocs()
			t0 := metertest.Epoch
			id := uint64(0)
			for b.Loop() {
				id++
				at := t0.Add(time.Duration(id) * time.Millisecond)
				if err := s.Grant("api", meter.Call{ID: id, GrantedAt: at, Holder: benchHolder}, at.Add(time.Millisecond), time.Time{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGrantComplete is one whole call: grant, then completion, with
// the engine's pruning every 1000 calls.
func BenchmarkGrantComplete(b *testing.B) {
	for _, sync := range []string{"normal", "full"} {
		b.Run(sync, func(b *testing.B) {
			s := benchStore(b, sync)
			b.ReportAllocs()
			t0 := metertest.Epoch
			id := uint64(0)
			for b.Loop() {
				id++
				at := t0.Add(time.Duration(id) * time.Millisecond)
				c := meter.Call{ID: id, GrantedAt: at, Holder: benchHolder}
				if err := s.Grant("api", c, at.Add(time.Millisecond), time.Time{}); err != nil {
					b.Fatal(err)
				}
				c.DoneAt = at.Add(time.Microsecond)
				if err := s.Complete("api", c); err != nil {
					b.Fatal(err)
				}
				if id%1000 == 0 {
					if err := s.Retire("api", at.Add(-time.Second), false, nil); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
