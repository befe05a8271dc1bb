package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/rlfs/rlfs/meter"
)

// reportsFromPath reads the meters at path for rlfs status (see
// readMeters).
func reportsFromPath(path string) ([]meter.Report, []unreadableMeter, error) {
	return readMeters[meter.Report]("rlfs status", path)
}

// readMeters reads the meters at path, each meter's status.json decoded
// into a T: every meter when path is the mountpoint of an rlfs mount, one
// meter when it is a meter's directory. Anything else is refused with what
// to pass instead, to the command cmd ("rlfs status", "rlfs top"). rlfs
// status and rlfs top read meters through it alone.
func readMeters[T any](cmd, path string) ([]T, []unreadableMeter, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	mnt, fstype, found := enclosingMount(abs)
	if !found || fstype != rlfsFSType {
		return nil, nil, notRlfsError(cmd, path, fstype)
	}
	rel, err := filepath.Rel(mnt, abs)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case rel == ".":
		return readMount[T](cmd, mnt)
	case !strings.Contains(rel, string(filepath.Separator)):
		r, err := readReport[T](cmd, mnt, rel)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("%s: no meter %q in the rlfs mount at %s; see ls %s", path, rel, mnt, mnt)
		}
		if err != nil {
			return nil, nil, err
		}
		return []T{r}, nil, nil
	}
	return nil, nil, fmt.Errorf("%s is inside the rlfs mount at %s but is not a meter; pass the mountpoint (%s %s) or a meter's directory (%s %s)",
		path, mnt, cmd, mnt, cmd, filepath.Join(mnt, strings.SplitN(rel, string(filepath.Separator), 2)[0]))
}

// notRlfsError says that path is not in an rlfs mount, and what to pass to
// cmd.
func notRlfsError(cmd, path, fstype string) error {
	what := "a directory"
	if fstype != "" {
		what = "a directory on " + fstype
	}
	if fi, err := os.Stat(path); err != nil {
		what = err.Error()
		if errors.Is(err, os.ErrNotExist) {
			what = "it does not exist"
		}
	} else if !fi.IsDir() {
		what = "not a directory"
	}
	hint := cmd + " /mnt/rl"
	if mounts := rlfsMounts(); len(mounts) > 0 {
		hint = cmd + " " + mounts[0]
		if len(mounts) > 1 {
			hint += " (rlfs is mounted at " + strings.Join(mounts, ", ") + ")"
		}
	}
	db := ", or a database with --db PATH"
	if cmd != "rlfs status" {
		db = ""
	}
	return fmt.Errorf("%s is not an rlfs mount (%s); pass the mountpoint of rlfs mount or one meter's directory in it (%s)%s", path, what, hint, db)
}

// readMount reads every meter of the rlfs mount at mnt. A meter whose
// status this user may not read is listed apart, with why: the others are
// shown all the same.
func readMount[T any](cmd, mnt string) ([]T, []unreadableMeter, error) {
	es, err := os.ReadDir(mnt)
	if errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED) {
		return nil, nil, fmt.Errorf("%s is a dead rlfs mount (its daemon is gone); run umount -l %s, then rlfs mount again", mnt, mnt)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read the rlfs mount at %s: %w", mnt, err)
	}
	var out []T
	var unreadable []unreadableMeter
	for _, e := range es {
		r, err := readReport[T](cmd, mnt, e.Name())
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue // removed meanwhile
		case errors.Is(err, os.ErrPermission):
			unreadable = append(unreadable, notReadable(e.Name()))
			continue
		case err != nil:
			return nil, nil, err
		}
		out = append(out, r)
	}
	return out, unreadable, nil
}

// readReport reads the status.json of meter name in the mount at mnt into
// a T (a meter.Report, or a struct that embeds one).
func readReport[T any](cmd, mnt, name string) (T, error) {
	var r T
	b, err := os.ReadFile(filepath.Join(mnt, name, "status.json"))
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(filepath.Join(mnt, name, "status")); serr == nil {
			return r, fmt.Errorf("the rlfs daemon serving %s is older than this %s (meter %q has no status.json); restart it with this version, or read its status files: cat %s",
				mnt, cmd, name, filepath.Join(mnt, "*", "status"))
		}
		return r, err
	}
	if errors.Is(err, os.ErrPermission) {
		return r, fmt.Errorf("meter %q of the rlfs mount at %s is %s (%w); run %s as its owner, a member of its group or root (see ls -ld %s), or chmod the meter",
			name, mnt, notReadableText(), err, cmd, filepath.Join(mnt, name))
	}
	if err != nil {
		return r, fmt.Errorf("read status of meter %q: %w", name, err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("status.json of meter %q: %w", name, err)
	}
	return r, nil
}

// enclosingMount returns the mount that holds the absolute path abs: its
// mountpoint and filesystem type, from /proc/self/mountinfo.
func enclosingMount(abs string) (mnt, fstype string, ok bool) {
	for p := abs; ; p = filepath.Dir(p) {
		if fstype, ok := mountedFS(p); ok {
			return p, fstype, true
		}
		if p == filepath.Dir(p) {
			return "", "", false
		}
	}
}

// rlfsMounts lists the mountpoints of the rlfs mounts this process sees.
func rlfsMounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == rlfsFSType && len(fields) > 4 {
				out = append(out, unescapeMount(fields[4]))
			}
		}
	}
	return out
}
