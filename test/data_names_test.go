package test

import (
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// dataNameErrno is what creating a data file named name must give: 0, or
// ENAMETOOLONG past 255 bytes, or EINVAL for a name that is not UTF-8 or
// holds a control character (design §8; meter.ValidDataName).
func dataNameErrno(name string) syscall.Errno {
	switch {
	case len(name) > 255:
		return syscall.ENAMETOOLONG
	case !utf8.ValidString(name), strings.ContainsFunc(name, unicode.IsControl):
		return syscall.EINVAL
	}
	return 0
}

// fuzzDataNames makes n names for a data file: random bytes (invalid
// UTF-8 and control characters included), random UTF-8 text with an
// occasional control character, and names of exactly 255 and 256 bytes,
// in ASCII and in 3-byte characters. None holds '/' or NUL (the kernel's
// path syntax) or is "." or "..".
func fuzzDataNames(r *rand.Rand, n int) []string {
	names := []string{strings.Repeat("a", 255), strings.Repeat("b", 256),
		strings.Repeat("€", 85), strings.Repeat("€", 85) + "x", "tab\there", "del\x7f", "c1\u0085", "bad\xff", ".hidden", "space name", "ünïcødé"}
	for len(names) < n {
		var b []byte
		switch r.IntN(3) {
		case 0: // random bytes
			b = make([]byte, 1+r.IntN(300))
			for i := range b {
				b[i] = byte(1 + r.IntN(255))
			}
		default: // random text, now and then a control character
			for range 1 + r.IntN(90) {
				c := rune(0x20 + r.IntN(0x3000))
				if r.IntN(40) == 0 {
					c = rune(1 + r.IntN(0x1f))
				}
				b = utf8.AppendRune(b, c)
			}
		}
		name := strings.ReplaceAll(string(b), "/", "_")
		if name != "." && name != ".." && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}

// TestDataFuzzedNames: a file created under each fuzzed name is stored,
// listed and read back under that name, or refused with the name's errno
// (ENAMETOOLONG, EINVAL), and then nothing is stored; a rename to a bad
// name is refused the same way and leaves the file where it was.
func TestDataFuzzedNames(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "m=concurrency=1")
	data := d.path("m", "data")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 11))
	var good []string
	for _, name := range fuzzDataNames(r, 150) {
		want := dataNameErrno(name)
		err := os.WriteFile(data+"/"+name, []byte(name), 0o644)
		if want == 0 {
			require.NoError(t, err, "create %q (seed %d)", name, seed)
			good = append(good, name)
			continue
		}
		requireErrno(t, err, want, "create "+strconv.QuoteToASCII(name))
		requireErrno(t, os.Rename(data+"/"+good[0], data+"/"+name), want, "rename to "+strconv.QuoteToASCII(name))
	}
	slices.Sort(good)
	require.Equal(t, good, d.dataNames(t, "m"), "what is listed is what was created (seed %d)", seed)
	for _, name := range good {
		requireData(t, data+"/"+name, name)
	}
}
