package test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFleetWeighted: weighted calls across a fleet. On two hosts sharing
// units:100/1h, an acquire@90 held on h1 makes an acquire@80 on h2 wait;
// when h1 writes 10 to its descriptor, h2's call is granted at once, while
// h1 still holds; both hosts count 90 units; h2 shows h1's call with its cost
// and actual cost; acquire@101 is E2BIG on h2 too.
func TestFleetWeighted(t *testing.T) {
	t.Parallel()
	_, ds := fleet(t, 2, nil, "m=units:100/1h,concurrency=0")
	h1, h2 := ds[0], ds[1]
	first := unitsHold(t, h1.path("m", "acquire@90"))
	h2.waitUnitsUsed(t, "m", "units:100/1h", 90)
	second := startUnitsHold(t, h2.path("m", "acquire@80"))
	h1.waitStatus(t, "m", "waiting", "1")
	require.False(t, second.isGranted())

	writing, settled := first.settle(t, 10)
	second.granted(t)
	t.Logf("FIGURE acquire@80 on h2 granted %s after acquire@90 on h1 wrote 10", fmtMS(second.grant.Sub(settled)))
	require.False(t, second.grant.Before(writing), "granted before the settlement was written")
	require.Less(t, second.grant.Sub(settled), loaded(0), "a refund on one host admits a waiter on another at once")
	require.False(t, first.p.exited(), "while the first call still holds")
	for _, d := range ds {
		d.waitUnitsUsed(t, "m", "units:100/1h", 90)
	}
	holderHas(t, h2, "m", first.p.pid(), "cost: 90", "actual: 10", "host: h1")

	c := startProc(t, "cat", h2.path("m", "acquire@101"))
	c.wait(t, pollTimeout)
	require.Equal(t, 1, c.exitCode())
	require.Contains(t, c.stderr.String(), "Argument list too long")
	first.release(t)
	second.release(t)
}
