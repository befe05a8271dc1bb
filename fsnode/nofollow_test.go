package fsnode

import (
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNoFollowOpenOfAcquireTakesNoCall: cp and mv open the files they copy
// with O_RDONLY|O_NOFOLLOW; such an open of acquire fails at once with
// EPERM, even on a free meter, and counts nothing, so copying a meter
// (mv to another filesystem) never takes a call.
func TestNoFollowOpenOfAcquireTakesNoCall(t *testing.T) {
	f := mount(t, map[string]string{"m": "concurrency=0"})
	acq := filepath.Join(f.dir, "m", "acquire")
	for _, flags := range []int{syscall.O_RDONLY | syscall.O_NOFOLLOW, syscall.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK} {
		_, err := syscall.Open(acq, flags, 0)
		require.Equal(t, syscall.EPERM, err, "open(acquire, %#o)", flags)
	}
	fd, err := syscall.Open(acq, syscall.O_RDONLY, 0)
	require.NoError(t, err, "open(acquire, O_RDONLY)")
	require.NoError(t, syscall.Close(fd))
	s := f.reg.Get("m").Snapshot()
	require.Equal(t, uint64(1), s.Grants, "only the plain open counted")
	require.Equal(t, uint64(0), s.Stats.Rejected)
}
