package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ownMount is the mount the daemon serves. The daemon must never use a file
// at or below it: its own request into the mount can wait for a lock that
// the requesting code holds (the database rewrite holds the registry lock,
// which a lookup in the mount needs), a deadlock that not even SIGKILL ends.
// So the database, --config and --cpuprofile are refused there before
// mounting, and the paths the daemon uses later (the database when it
// rewrites it, the config file on SIGHUP) are checked again, since a
// symbolic link may have moved them into the mount meanwhile. Safe for
// concurrent use.
type ownMount struct {
	dir string        // the mountpoint, absolute, symbolic links resolved
	dev atomic.Uint64 // the mount's device once mounted; 0 before
}

// holds reports whether path p leads into the mount: at or below its
// mountpoint once symbolic links are resolved, or, once mounted, on its
// device (as through a bind mount of it). Checking may itself look up
// names in the mount, which is safe as long as the caller holds no lock.
func (o *ownMount) holds(p string) bool {
	if r, err := resolvePath(p); err == nil && within(r, o.dir) {
		return true
	}
	var st unix.Stat_t
	dev := o.dev.Load()
	return dev != 0 && unix.Stat(p, &st) == nil && st.Dev == dev
}

// mounted records the mount's device, from /proc/self/mountinfo (which
// needs no request to the mount).
func (o *ownMount) mounted() {
	if dev, ok := mountDevice(o.dir); ok {
		o.dev.Store(dev)
	}
}

// within reports whether p is dir or below it; both are absolute and clean.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// mountDevice is the device number of the topmost mount at dir.
func mountDevice(dir string) (uint64, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var dev uint64
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeMount(fields[4]) != dir {
			continue
		}
		maj, min, ok := strings.Cut(fields[2], ":")
		a, err1 := strconv.ParseUint(maj, 10, 32)
		b, err2 := strconv.ParseUint(min, 10, 32)
		if ok && err1 == nil && err2 == nil {
			dev, found = unix.Mkdev(uint32(a), uint32(b)), true
		}
	}
	return dev, found
}

// checkOwnFiles refuses the files of c that lie at or below the mountpoint
// dir, before anything is created there.
func checkOwnFiles(c mountConfig, own *ownMount) error {
	const why = "which rlfs mounts over and serves itself (it would wait on its own mount)"
	if c.db != "" && c.fleet.store == "" && own.holds(c.db) {
		return fmt.Errorf("the database %s (%s) is inside the mountpoint %s, %s; %s", c.db, c.dbFrom, own.dir, why, dbFix(c))
	}
	if c.fleet.journal != "" && own.holds(c.fleet.journal) {
		return fmt.Errorf("--journal %s is inside the mountpoint %s, %s; keep the journal outside it", c.fleet.journal, own.dir, why)
	}
	if c.config != "" && own.holds(c.config) {
		return fmt.Errorf("--config %s is inside the mountpoint %s, %s; keep the config file outside it", c.config, own.dir, why)
	}
	if c.cpuprofile != "" && own.holds(c.cpuprofile) {
		return fmt.Errorf("--cpuprofile %s is inside the mountpoint %s, %s; write the profile outside it", c.cpuprofile, own.dir, why)
	}
	return nil
}

// dbFix says how to move the database, by where its path came from.
func dbFix(c mountConfig) string {
	switch c.dbFrom {
	case "$RLFS_DB":
		return "set RLFS_DB to a path outside it, or pass --db"
	case "--db", "the default":
		return "pass --db with a path outside it"
	}
	return fmt.Sprintf("set db in %s to a path outside it, or pass --db", c.config)
}
