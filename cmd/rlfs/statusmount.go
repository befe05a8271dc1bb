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

// reportsFromPath reads the meters at path: every meter when path is the
// mountpoint of an rlfs mount, one meter when it is a meter's directory.
// Anything else is refused with what to pass instead.
func reportsFromPath(path string) ([]meter.Report, []unreadableMeter, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	mnt, fstype, found := enclosingMount(abs)
	if !found || fstype != rlfsFSType {
		return nil, nil, notRlfsError(path, fstype)
	}
	rel, err := filepath.Rel(mnt, abs)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case rel == ".":
		return reportsFromMount(mnt)
	case !strings.Contains(rel, string(filepath.Separator)):
		r, err := readReport(mnt, rel)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("%s: no meter %q in the rlfs mount at %s; see ls %s", path, rel, mnt, mnt)
		}
		if err != nil {
			return nil, nil, err
		}
		return []meter.Report{r}, nil, nil
	}
	return nil, nil, fmt.Errorf("%s is inside the rlfs mount at %s but is not a meter; pass the mountpoint (rlfs status %s) or a meter's directory (rlfs status %s)",
		path, mnt, mnt, filepath.Join(mnt, strings.SplitN(rel, string(filepath.Separator), 2)[0]))
}

// notRlfsError says that path is not in an rlfs mount, and what to pass.
func notRlfsError(path, fstype string) error {
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
	hint := "rlfs status /mnt/rl"
	if mounts := rlfsMounts(); len(mounts) > 0 {
		hint = "rlfs status " + mounts[0]
		if len(mounts) > 1 {
			hint += " (rlfs is mounted at " + strings.Join(mounts, ", ") + ")"
		}
	}
	return fmt.Errorf("%s is not an rlfs mount (%s); pass the mountpoint of rlfs mount or one meter's directory in it (%s), or a database with --db PATH", path, what, hint)
}

// reportsFromMount reads every meter of the rlfs mount at mnt. A meter
// whose status this user may not read is listed apart, with why: the
// others are shown all the same.
func reportsFromMount(mnt string) ([]meter.Report, []unreadableMeter, error) {
	es, err := os.ReadDir(mnt)
	if errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED) {
		return nil, nil, fmt.Errorf("%s is a dead rlfs mount (its daemon is gone); run umount -l %s, then rlfs mount again", mnt, mnt)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read the rlfs mount at %s: %w", mnt, err)
	}
	var out []meter.Report
	var unreadable []unreadableMeter
	for _, e := range es {
		r, err := readReport(mnt, e.Name())
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

// readReport reads the status.json of meter name in the mount at mnt.
func readReport(mnt, name string) (meter.Report, error) {
	var r meter.Report
	b, err := os.ReadFile(filepath.Join(mnt, name, "status.json"))
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(filepath.Join(mnt, name, "status")); serr == nil {
			return r, fmt.Errorf("the rlfs daemon serving %s is older than this rlfs status (meter %q has no status.json); restart it with this version, or read its status files: cat %s",
				mnt, name, filepath.Join(mnt, "*", "status"))
		}
		return r, err
	}
	if errors.Is(err, os.ErrPermission) {
		return r, fmt.Errorf("meter %q of the rlfs mount at %s is %s (%w); run rlfs status as its owner, a member of its group or root (see ls -ld %s), or chmod the meter",
			name, mnt, notReadableText(), err, filepath.Join(mnt, name))
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
