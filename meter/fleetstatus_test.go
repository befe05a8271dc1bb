package meter

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// While the store is unreachable, status claims nothing this host cannot
// know: hosts are unknown, the next grant is when the store is back (a
// snapshot's Next would say "after a release"), and store says what
// waiters get. Host names from the store are escaped.
func TestFleetStatusLines(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	s := Snapshot{Name: "m", Spec: Spec{Concurrency: 1}, Now: t0.Add(5 * time.Second), Host: "h1", Hosts: []string{"h1"}, StoreDown: t0}
	kv := statusLines(t, s.Text())
	require.Equal(t, "h1", kv["host"])
	require.Equal(t, "unknown while the store is unreachable (this host: h1)", kv["hosts"])
	require.Equal(t, "unreachable since 2026-12-01T10:00:00.000Z (5s ago); nothing is granted until it is back: waiters keep waiting (max_wait still applies), O_NONBLOCK opens get EAGAIN", kv["store"])
	require.Equal(t, "when the store is back", kv["next_grant"])
	r := s.Report()
	require.Nil(t, r.Hosts, "Report.Hosts while the store is unreachable")
	require.Equal(t, "when the store is back", r.NextGrant)
	require.Equal(t, "2026-12-01T10:00:00.000Z", r.StoreUnreachableSince)

	s.StoreDown = time.Time{}
	s.Hosts = []string{"h1", "old\nhost: evil"}
	kv = statusLines(t, s.Text())
	require.Equal(t, `h1,old\nhost: evil`, kv["hosts"])
	require.Equal(t, "ok", kv["store"])
	require.Equal(t, "after a release", kv["next_grant"])
	require.Equal(t, []string{"h1", "old\nhost: evil"}, s.Report().Hosts, "JSON escapes by itself")
}

// statusLines parses a status text, requiring one `key: value` per line
// and each key once.
func statusLines(t *testing.T, text string) map[string]string {
	t.Helper()
	kv := map[string]string{}
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		k, v, ok := strings.Cut(l, ": ")
		require.True(t, ok, "line %q of:\n%s", l, text)
		_, dup := kv[k]
		require.False(t, dup, "key %q twice in:\n%s", k, text)
		kv[k] = v
	}
	return kv
}
