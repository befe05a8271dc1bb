package meter

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Escape makes s safe to print as the value of a `key: value` line: it
// never holds a line break or another control character, so a value taken
// from a caller (a command line, a host name from the store) cannot add
// lines of its own. The escapes are Go's (strconv.Quote's) without the
// surrounding quotes and with '"' left as it is: a backslash is `\\`,
// `\n` `\r` `\t` `\a` `\b` `\f` `\v` stand for themselves, other bytes
// below 0x20, DEL and bytes that are not UTF-8 are `\xHH`, and other
// characters that are not printable (C1 controls, U+2028, a bidi override)
// are `\uHHHH` or `\UHHHHHHHH`. A string that needs none is returned as it is.
func Escape(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x`)
			b.WriteByte(hex[s[i]>>4])
			b.WriteByte(hex[s[i]&0xf])
		case r == '\\':
			b.WriteString(`\\`)
		case r < utf8.RuneSelf && shortEscape[r] != 0:
			b.WriteByte('\\')
			b.WriteByte(shortEscape[r])
		case r < ' ' || r == 0x7f:
			b.WriteString(`\x`)
			b.WriteByte(hex[r>>4])
			b.WriteByte(hex[r&0xf])
		case r != ' ' && !unicode.IsPrint(r):
			n, digits := 4, `\u`
			if r > 0xffff {
				n, digits = 8, `\U`
			}
			b.WriteString(digits)
			for shift := 4 * (n - 1); shift >= 0; shift -= 4 {
				b.WriteByte(hex[r>>uint(shift)&0xf])
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// shortEscape is the letter of the one-letter escape of an ASCII control.
var shortEscape = [utf8.RuneSelf]byte{'\a': 'a', '\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't', '\v': 'v'}

func needsEscape(s string) bool {
	for _, r := range s {
		if r == '\\' || r == utf8.RuneError || r < ' ' || r == 0x7f || (r >= utf8.RuneSelf && !unicode.IsPrint(r)) {
			return true
		}
	}
	return false
}
