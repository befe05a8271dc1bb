package fsnode

import (
	"strings"

	"github.com/rlfs/rlfs/meter"
)

// maxName is the longest file name the kernel takes (NAME_MAX): a
// directory entry with a longer name, or with a '/', fails the whole
// listing with EIO.
const maxName = 255

// entryName is a holders/ or waiters/ entry's name: base (SEQ.PID), then
// @HOST in a fleet. rlfs mount refuses a host name that is not one file
// name of at most redis.MaxHostLen bytes, but a store may hold one that an
// older daemon wrote: such a host is escaped (meter.Escape, and '/' as
// \x2f) and cut to fit in maxName bytes, so that it never makes a listing
// fail. Lookup finds the entry by SEQ and compares the whole name, so the
// name must only be the same every time.
func entryName(base, host string) string {
	if host == "" {
		return base
	}
	h := strings.ReplaceAll(meter.Escape(host), "/", `\x2f`)
	if room := maxName - len(base) - 1; len(h) > room {
		h = strings.ToValidUTF8(h[:max(room, 0)], "") // a character cut in two goes
	}
	return base + "@" + h
}
