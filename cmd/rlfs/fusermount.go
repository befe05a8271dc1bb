package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// fuseConf is where fusermount3 reads user_allow_other.
const fuseConf = "/etc/fuse.conf"

// checkAllowOther refuses --allow-other for a non-root user when conf (the
// fuse.conf that fusermount3 reads) does not say user_allow_other:
// fusermount3 would refuse the mount, and what reaches rlfs of that is a
// bare exit status (go-fuse hands fusermount3 our stderr and keeps only its
// wait status).
func checkAllowOther(allowOther bool, euid int, conf string) error {
	if !allowOther || euid == 0 {
		return nil
	}
	b, err := os.ReadFile(conf)
	var why string
	switch {
	case err == nil && allowsOther(string(b)):
		return nil
	case err == nil:
		why = "which has no such line"
	case errors.Is(err, fs.ErrNotExist):
		why = "which does not exist"
	default:
		why = "which cannot be read (" + errnoText(err) + ")"
	}
	return fmt.Errorf("--allow-other as a non-root user (uid %d) needs the line user_allow_other in %s, %s; add that line to %s (as root), run rlfs as root, or leave out --allow-other",
		euid, conf, why, conf)
}

// allowsOther reports whether a fuse.conf text enables user_allow_other, as
// fusermount3 reads it: a '#' starts a comment, blanks around are ignored.
func allowsOther(conf string) bool {
	for _, line := range strings.Split(conf, "\n") {
		line, _, _ = strings.Cut(line, "#")
		if strings.TrimSpace(line) == "user_allow_other" {
			return true
		}
	}
	return false
}

// fusermountExit matches go-fuse's error for a failed fusermount3, which
// carries the raw wait status ("fusermount exited with code 256").
var fusermountExit = regexp.MustCompile(`fusermount exited with code (\d+)`)

// mountError turns a failed mount of dir into one line naming the problem
// and the fix; euid says whether rlfs mounted itself (root) or through
// fusermount3.
func mountError(err error, dir string, euid int) error {
	msg := strings.TrimSpace(err.Error())
	if euid == 0 {
		return fmt.Errorf("%s; check that %s is a directory and that /dev/fuse exists (modprobe fuse)", msg, dir)
	}
	const how = "as a non-root user rlfs mounts through fusermount3, which must be installed setuid root (apt-get install fuse3) and needs a mountpoint you own; or run rlfs as root"
	if m := fusermountExit.FindStringSubmatch(msg); m != nil {
		status := "it failed"
		if n, err := strconv.Atoi(m[1]); err == nil {
			ws := syscall.WaitStatus(n)
			status = fmt.Sprintf("it exited with status %d", ws.ExitStatus())
			if ws.Signaled() {
				status = fmt.Sprintf("it was killed by %v", ws.Signal())
			}
		}
		return fmt.Errorf("cannot mount %s: fusermount3 refused (%s; its reason is the line above); %s", dir, status, how)
	}
	if errors.Is(err, fs.ErrNotExist) && strings.Contains(msg, "fusermount") {
		return fmt.Errorf("cannot mount %s: fusermount3 is not installed; %s", dir, how)
	}
	return fmt.Errorf("cannot mount %s: %s; %s", dir, msg, how)
}

// errnoText is the short text of a system error: "permission denied".
func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}
