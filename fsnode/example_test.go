package fsnode_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rlfs/rlfs/fsnode"
	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/metertest"
)

// Example mounts one meter, acquires it and reads what the files say: the
// grant line of acquire, then grants_total and in_progress in status. A
// real daemon uses the SQLite store (meter/sqlite) instead of the in-memory
// one. Mounting needs FUSE: root (mount(2)) or fusermount3.
func Example() {
	reg, err := meter.OpenLocal(metertest.NewMemStore(), meter.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	spec, err := meter.ParseSpec("1/s,75/h")
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := reg.Create("email", spec, meter.DefaultAttr()); err != nil {
		fmt.Println(err)
		return
	}
	dir, err := os.MkdirTemp("", "rlfs-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	mnt, err := fsnode.NewMount(dir, fsnode.NewRoot(fsnode.Options{Registry: reg}), fsnode.MountOptions{Direct: os.Geteuid() == 0, SelfAccess: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() {
		reg.Close()
		mnt.Shutdown(time.Second)
	}()

	es, err := os.ReadDir(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range es {
		fmt.Println("meter:", e.Name())
	}

	f, err := os.Open(filepath.Join(dir, "email", "acquire")) // blocks until granted
	if err != nil {
		fmt.Println(err)
		return
	}
	// ... make the rate-limited call here ...
	line, _ := bufio.NewReader(f).ReadString('\n') // "granted 2026-…Z waited 52µs meter email call 1 pid 4121"
	fields := strings.Fields(line)
	fmt.Println(fields[0], fields[4], fields[5], fields[6], fields[7])
	printStatus(dir, "in_progress", "grants_total")
	f.Close() // completion (the kernel tells the daemon a moment later)
	for deadline := time.Now().Add(5 * time.Second); reg.Get("email").Status().HoldersN > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	printStatus(dir, "in_progress", "window 75/1h")

	// Output:
	// meter: email
	// granted meter email call 1
	// in_progress: 1 of 1
	// grants_total: 1
	// in_progress: 0 of 1
	// window 75/1h: 1 used, 74 free
}

// printStatus prints the given lines of the email meter's status file.
func printStatus(dir string, keys ...string) {
	b, err := os.ReadFile(filepath.Join(dir, "email", "status"))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, key := range keys {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, key+": ") {
				fmt.Println(line)
			}
		}
	}
}
