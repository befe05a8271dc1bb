package redis

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxHostLen is the longest host name, in bytes. Every host lists every
// other host's calls and waiters in holders/ and waiters/ as entries named
// SEQ.PID@HOST, and a file name has at most 255 bytes (NAME_MAX): SEQ takes
// up to 20 digits (a uint64), PID up to 7 (Linux's largest pid_max,
// 4194304), and the '.' and '@' two more, which leaves 226 for HOST.
const MaxHostLen = 255 - 20 - 1 - 7 - 1

// ValidHost checks a host name (--host): it names the host's entries in
// holders/ and waiters/ of every host, its channel and its journal, so it
// must be one file name, without the separators of the store's records.
// The error names the problem and the fix.
func ValidHost(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("host name %q %s; pass --host NAME with letters, digits, '-', '_' or '.' (at most %d bytes)", name, why, MaxHostLen)
	}
	switch {
	case name == "":
		return bad("is empty")
	case name == "." || name == "..":
		return bad("is not a file name (holders/ entries are named SEQ.PID@HOST)")
	case len(name) > MaxHostLen:
		return bad(fmt.Sprintf("has %d bytes, more than %d: holders/ and waiters/ entries SEQ.PID@HOST would pass the 255-byte limit of a file name", len(name), MaxHostLen))
	case !utf8.ValidString(name):
		return bad("is not valid UTF-8")
	case strings.ContainsRune(name, '/'):
		return bad("contains '/', which no file name may hold (holders/ entries are named SEQ.PID@HOST)")
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) }):
		return bad("contains a control character (a NUL, a newline, a tab, an escape…)")
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }):
		return bad("contains a space or an invisible character")
	case strings.ContainsAny(name, ",:"):
		return bad("contains a comma or a colon, which separate the fields of the store's records")
	}
	return nil
}
