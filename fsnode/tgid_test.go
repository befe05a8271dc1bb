package fsnode

import (
	"os"
	"runtime"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// ProcessID maps a thread of this process, not its main one, to the
// process id; an id no task has stays as it is.
func TestProcessID(t *testing.T) {
	// Two goroutines locked to their threads at once: at most one of them
	// is on the main thread.
	tids, release := make(chan int), make(chan struct{})
	for range 2 {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			tids <- syscall.Gettid()
			<-release
		}()
	}
	a, b := <-tids, <-tids
	defer close(release)
	tid := a
	if tid == os.Getpid() {
		tid = b
	}
	require.NotEqual(t, os.Getpid(), tid)
	require.Equal(t, os.Getpid(), ProcessID(tid))
	require.Equal(t, os.Getpid(), ProcessID(os.Getpid()))
	require.Equal(t, 1<<30, ProcessID(1<<30), "no such task")
}
