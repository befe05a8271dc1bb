package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

// The table puts the rows of unreadable meters among the others, in name
// order, with "-" where a figure would be and why in the last column.
func TestStatusTableUnreadableRows(t *testing.T) {
	reports := []meter.Report{
		{Name: "b", Limits: "1/1s", NextGrant: "now"},
		{Name: "d", Limits: "1/1s", NextGrant: "now"},
	}
	why := "not readable by this user (uid 1000): permission denied"
	var out bytes.Buffer
	require.NoError(t, printTable(&out, reports, unreadableMeter{"a", why}, unreadableMeter{"c", why}, unreadableMeter{"e", why}))
	var names []string
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")[1:] {
		names = append(names, strings.Fields(l)[0])
		if f := strings.Fields(l); f[0] != "b" && f[0] != "d" {
			require.Regexp(t, `^[ace]\s+-\s+-\s+-\s+-\s+not readable by this user \(uid 1000\): permission denied$`, l)
		}
	}
	require.Equal(t, []string{"a", "b", "c", "d", "e"}, names, "table:\n%s", out.String())
}
