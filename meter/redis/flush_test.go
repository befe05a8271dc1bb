package redis

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// Regression: fcall reloaded the library once on "Function not found" and
// retried once; a second FUNCTION FLUSH between the reload and the retry
// (a flush storm, or two operators) failed the open with a store error
// (EIO) instead of letting it wait for the store. Under a storm of flushes
// on two hosts, every blocking Acquire must still be granted.
func TestFunctionFlushStormOpensWait(t *testing.T) {
	srv := redistest.Start(t)
	a := openReg(t, srv.URL(), "a", Options{Lease: 3 * time.Second})
	b := openReg(t, srv.URL(), "b", Options{Lease: 3 * time.Second})
	spec, err := meter.ParseSpec("concurrency=0")
	require.NoError(t, err)
	_, err = a.Create("m", spec, meter.DefaultAttr())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b.Get("m") != nil }, 2*time.Second, 5*time.Millisecond)

	stop := make(chan struct{})
	var storm sync.WaitGroup
	storm.Add(1)
	go func() {
		defer storm.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			redistest.Command(srv.Addr(), "FUNCTION", "FLUSH")
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for _, reg := range []*meter.Registry{a, b} {
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := reg.Get("m")
				for range 25 {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					c, err := m.Acquire(ctx, meter.Holder{PID: 100 + w}, false)
					cancel()
					if err != nil {
						errs <- err
						continue
					}
					if err := m.Release(c.ID); err != nil {
						errs <- err
					}
				}
			}()
		}
	}
	time.AfterFunc(time.Second, func() { close(stop) })
	wg.Wait()
	storm.Wait()
	close(errs)
	var got []error
	for err := range errs {
		got = append(got, err)
	}
	require.Empty(t, got, "Acquire or Release failed while functions were flushed")
}
