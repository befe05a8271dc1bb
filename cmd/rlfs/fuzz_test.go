package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

// FuzzMeterFlag feeds arbitrary --meter values to the command line parser:
// a value is either refused with a usage error that quotes it, or declares
// exactly the meter that ParseSpec reads. Seeds run in every `go test`.
func FuzzMeterFlag(f *testing.F) {
	for _, seed := range []string{
		"email=1/s,75/h", "api=rate=10/s,burst=20,concurrency=4", "x=0/s", "=1/s", "x",
		".x=1/s", "x=", "a/b=1/s", "x=concurrency=0,max_wait=30s", "\x00=1/s",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		c, err := parseMount([]string{"--meter", value, "/mnt/rl"}, &bytes.Buffer{}, &bytes.Buffer{})
		if err != nil {
			var ue *usageError
			require.ErrorAs(t, err, &ue)
			require.NotEmpty(t, ue.hint)
			return
		}
		require.Len(t, c.meters, 1)
		name, spec, _ := strings.Cut(value, "=")
		require.Equal(t, name, c.meters[0].name)
		want, perr := meter.ParseSpec(strings.ReplaceAll(spec, "\n", ","))
		require.NoError(t, perr)
		require.Equal(t, want.String(), c.meters[0].spec.String())
	})
}
