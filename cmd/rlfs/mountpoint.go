package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// rlfsFSType is the type /proc/self/mountinfo lists rlfs mounts with,
// mounted directly or through fusermount3.
const rlfsFSType = "fuse.rlfs"

// maxStacked bounds how many dead rlfs mounts rlfs mount detaches from its
// mountpoint before it gives up.
const maxStacked = 8

// probeTimeout bounds how long the mountpoint may take to answer a stat and
// a readdir: a dead FUSE connection answers at once (ENOTCONN), a live
// daemon in milliseconds, a stopped or hung one never.
const probeTimeout = 5 * time.Second

// checkMountpoint says what is wrong with dir before mount(2) would, and
// returns its absolute path with symbolic links resolved, as the kernel
// lists mounts. A missing dir is fine (it is created later). dead reports
// that a dead rlfs mount (its daemon killed) is on top of dir, which
// reclaimMountpoint detaches; a live mount, or a mount that is not rlfs's,
// dead or not, is an error.
func checkMountpoint(dir string) (real string, dead bool, err error) {
	real, err = resolvePath(dir)
	if err != nil {
		return "", false, fmt.Errorf("mountpoint %s: %v; choose another mountpoint", dir, err)
	}
	fstype, mounted := mountedFS(real)
	fi, err := probe(real, mounted)
	gone := errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED)
	switch {
	case mounted && gone && fstype == rlfsFSType:
		return real, true, nil
	case mounted && gone:
		return "", false, fmt.Errorf("mountpoint %s is a dead %s mount, not rlfs's (its daemon died); rlfs leaves it alone: run umount -l %s, or choose another mountpoint", real, fstype, real)
	case mounted && errors.Is(err, errNoAnswer):
		return "", false, fmt.Errorf("mountpoint %s: the %s filesystem mounted there does not answer (its daemon is stopped or hung?); stop it and run umount -l %s, or choose another mountpoint", real, fstype, real)
	case mounted:
		return "", false, fmt.Errorf("mountpoint %s is busy: a %s filesystem is mounted there (another rlfs?); unmount it (umount %s) or choose another", real, fstype, real)
	case errors.Is(err, os.ErrNotExist):
		if pfi, perr := os.Stat(filepath.Dir(real)); perr == nil && !pfi.IsDir() {
			return "", false, fmt.Errorf("mountpoint %s: %s is not a directory; choose another mountpoint", real, filepath.Dir(real))
		}
		return real, false, nil
	case err != nil:
		return "", false, fmt.Errorf("mountpoint %s: %v; choose another mountpoint", real, err)
	case !fi.IsDir():
		return "", false, fmt.Errorf("mountpoint %s is not a directory; choose a directory", real)
	}
	return real, false, nil
}

// reclaimMountpoint detaches the dead rlfs mounts at dir (as a daemon
// killed by kill -9 or the OOM killer leaves its mount while processes keep
// files of it open), checking before each that the topmost mount is still a
// dead rlfs mount, until dir is free. It logs each detach. A live mount or
// someone else's found under them is an error, and is left alone.
func reclaimMountpoint(dir string, log *slog.Logger) error {
	for range maxStacked {
		_, dead, err := checkMountpoint(dir)
		if err != nil || !dead {
			return err
		}
		if err := detachMount(dir); err != nil {
			return fmt.Errorf("mountpoint %s is a dead rlfs mount that rlfs cannot detach (%v); run umount -l %s", dir, err, dir)
		}
		log.Warn("detached a dead rlfs mount from the mountpoint (its daemon died); mounting anew", "mountpoint", dir)
	}
	return fmt.Errorf("mountpoint %s still holds dead rlfs mounts after %d were detached; run umount -l %s until it is free", dir, maxStacked, dir)
}

// detachMount lazily unmounts the topmost mount at dir: umount2(MNT_DETACH)
// as root, fusermount3 -u -z otherwise.
func detachMount(dir string) error {
	if os.Geteuid() == 0 {
		return syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	out, err := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fusermount3 -u -z: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

var errNoAnswer = errors.New("no answer")

// probe stats dir and, when it is a mount point, reads one entry from it:
// a FUSE mount whose daemon died fails both with ENOTCONN or ECONNABORTED
// (the stat alone may be answered from the kernel's cache). It gives up
// after probeTimeout with errNoAnswer.
func probe(dir string, mounted bool) (os.FileInfo, error) {
	return probeWithin(dir, mounted, probeTimeout)
}

// probeWithin is probe giving up after limit.
func probeWithin(dir string, mounted bool, limit time.Duration) (os.FileInfo, error) {
	type result struct {
		fi  os.FileInfo
		err error
	}
	done := make(chan result, 1)
	go func() {
		fi, err := os.Stat(dir)
		if err == nil && mounted && fi.IsDir() {
			err = readOne(dir)
		}
		done <- result{fi, err}
	}()
	select {
	case r := <-done:
		return r.fi, r.err
	case <-time.After(limit):
		return nil, errNoAnswer
	}
}

func readOne(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && err != io.EOF {
		return err
	}
	return nil
}

// maxLinks is how many symbolic links resolvePath follows, as the kernel.
const maxLinks = 40

// resolvePath makes p absolute and resolves the symbolic links in the part
// of it that exists, as the kernel will when p is used. What does not exist
// yet, or cannot be looked up (a dead FUSE mount), is kept as written.
func resolvePath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return resolveAbs(abs, maxLinks)
}

func resolveAbs(abs string, links int) (string, error) {
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	}
	parent := filepath.Dir(abs)
	if parent == abs {
		return abs, nil
	}
	rparent, err := resolveAbs(parent, links)
	if err != nil {
		return "", err
	}
	q := filepath.Join(rparent, filepath.Base(abs))
	if fi, err := os.Lstat(q); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return q, nil
	}
	// A link whose target is missing or dead: resolve its target alike.
	if links == 0 {
		return "", fmt.Errorf("%s: too many levels of symbolic links", abs)
	}
	target, err := os.Readlink(q)
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(rparent, target)
	}
	return resolveAbs(filepath.Clean(target), links-1)
}

// mountedFS reports whether dir is a mount point, and of which filesystem
// type (of the topmost mount), from /proc/self/mountinfo.
func mountedFS(dir string) (fstype string, ok bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMount(fields[4]) == dir {
			fstype = "unknown"
			for i, f := range fields {
				if f == "-" && i+1 < len(fields) {
					fstype = fields[i+1]
				}
			}
			ok = true // the last mount on dir is the visible one
		}
	}
	return fstype, ok
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
