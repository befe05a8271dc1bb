package fsnode

import (
	"context"
	"errors"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

// FuzzLimitsWrite drives the write path of a meter's limits file with
// arbitrary bytes: it either applies exactly what ParseSpec reads, or fails
// with EINVAL and changes nothing. It never panics. Seeds run in every
// `go test`; the corpus is in testdata/fuzz/FuzzLimitsWrite.
func FuzzLimitsWrite(f *testing.F) {
	for _, seed := range []string{
		"2/1s\n", "1/s\n75/h\n", "zero/s\n", "10/m", "concurrency=0,rate=10/s,burst=20",
		"0/s", "1/0s", "burst=3", "max_wait=-1s", "", "# comment only\n", "\x00\xff",
		"count=grant\nmax_hold=2s\nmax_waiters=5\n", "1/500ms,20/10s,50/30s",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		reg, err := meter.OpenLocal(metertest.NewMemStore(), meter.Options{Clock: metertest.NewClock()})
		require.NoError(t, err)
		before, _ := meter.ParseSpec("3/1s,concurrency=2")
		m, err := reg.Create("m", before, meter.DefaultAttr())
		require.NoError(t, err)
		root := NewRoot(Options{Registry: reg, Logger: discard()})
		h := &limitsHandle{d: &meterDir{root: root, m: m}, writable: true}
		n, errno := h.Write(context.Background(), data, 0)
		want, perr := meter.ParseSpec(string(data))
		if errors.Is(perr, meter.ErrNeedsRate) {
			// Held for a later write that adds the rate; nothing changes yet.
			require.Equal(t, syscall.Errno(0), errno, "write %q", data)
			require.Equal(t, before.String(), m.Spec().String(), "a held write changed the limits")
			return
		}
		if perr != nil {
			require.Equal(t, syscall.EINVAL, errno, "write %q", data)
			require.Equal(t, before.String(), m.Spec().String(), "a refused write changed the limits")
			return
		}
		require.Equal(t, syscall.Errno(0), errno, "write %q", data)
		require.Equal(t, uint32(len(data)), n)
		require.Equal(t, want.String(), m.Spec().String())
	})
}
