package sqlite

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOutageLogsOnePairPerOutage: failed writes log one Warn line as an
// outage begins and one Info line as it ends, however many writes fail or
// work in between; Health counts every failed write and every outage.
func TestOutageLogsOnePairPerOutage(t *testing.T) {
	var buf bytes.Buffer
	s := &Store{}
	s.journalOut.init(slog.New(slog.NewTextHandler(&buf, nil)), "grant journal", "opens fail", "/db")
	full := errors.New("write /db.grants-0: " + syscall.ENOSPC.Error())

	s.journalOut.ok()
	require.Empty(t, buf.String(), "nothing to say while writes work")
	for range 3 {
		s.journalOut.fail(full)
	}
	h := s.Health()
	require.True(t, h.Failing)
	require.False(t, h.Since.IsZero())
	require.Equal(t, Health{WriteErrors: 3, Outages: 1, Failing: true, Since: h.Since}, h)
	s.journalOut.ok()
	s.journalOut.ok()
	s.journalOut.fail(full)
	s.journalOut.ok()

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 4, "two outages, a pair of lines each:\n%s", buf.String())
	require.Contains(t, lines[0], "level=WARN")
	require.Contains(t, lines[0], "no space left on device")
	require.Contains(t, lines[1], "level=INFO")
	require.Contains(t, lines[1], "failed_writes=3")
	require.Contains(t, lines[3], "failed_writes=1")
	require.Equal(t, Health{WriteErrors: 4, Outages: 2}, s.Health())
}
