package redis

import "strings"

// keys are the Redis keys of one meter, in the order the library's
// functions take them (rlfs.lua's header): m, c, o, l, q, w, t, h, p, d, dm,
// lo, lg, nl, s. They share one hash tag, {PREFIX:NAME}, so that a meter's
// keys live in one slot of a Redis Cluster and its functions can touch
// them all atomically; the library derives the per-host keys (oh:HOST,
// wh:HOST) from the same tag.
type keys [15]string

// keyNames are the suffixes of a meter's keys after its tag.
var keyNames = keys{"m", "c", "o", "l", "q", "w", "t", "h", "p", "d", "dm", "lo", "lg", "nl", "s"}

// tagEscaper keeps a meter's name inside its hash tag: Redis ends the tag at
// the first '}', and '%' escapes the escapes.
var tagEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")

// keysOf returns the keys of meter name under prefix.
func keysOf(prefix, name string) keys {
	tag := "{" + tagEscaper.Replace(prefix) + ":" + tagEscaper.Replace(name) + "}:"
	var k keys
	for i, n := range keyNames {
		k[i] = tag + n
	}
	return k
}

// metersKey is the set of every meter's name; epochKey names the store's
// data (a new value means the data was lost and made anew).
func metersKey(prefix string) string { return "{" + tagEscaper.Replace(prefix) + "}:meters" }
func epochKey(prefix string) string  { return "{" + tagEscaper.Replace(prefix) + "}:epoch" }

// hostChannel carries grants and wake instants to one host; eventChannel
// tells every host about meters created, changed and removed.
func hostChannel(prefix, host string) string { return prefix + ":h:" + host }
func eventChannel(prefix string) string      { return prefix + ":ev" }
