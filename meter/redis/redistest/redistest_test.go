package redistest

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Regression: two tests running in parallel could be given the same free
// port; the second redis-server could not bind it, but Start took the
// first one's answer for its own, and both tests used one server (in the
// end-to-end suite: two fleets with the same host names on one store,
// ending each other's calls). A server started on a taken port now
// reports it, and Start tries another port.
func TestStartOnTakenPort(t *testing.T) {
	a := Start(t)
	b := &Server{t: t, Dir: t.TempDir(), Port: a.Port}
	require.False(t, b.start(), "a second server on port %d", a.Port)
	<-b.done
	info := Command(a.Addr(), "INFO", "server")
	require.True(t, strings.Contains(info, "process_id:"+strconv.Itoa(a.cmd.Process.Pid)+"\r\n"), "the first server still answers")
	c := Start(t)
	require.NotEqual(t, a.Port, c.Port)
}
