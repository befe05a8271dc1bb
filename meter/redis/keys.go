package redis

import "strings"

// keys are the Redis keys of one meter. They share one hash tag,
// {PREFIX:NAME}, so that a meter's keys live in one slot of a Redis
// Cluster and its functions can touch them all atomically.
type keys [9]string

// tagEscaper keeps a meter's name inside its hash tag: Redis ends the tag at
// the first '}', and '%' escapes the escapes.
var tagEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")

// keysOf returns the keys of meter name under prefix, in the order the
// library's functions take them: m, c, q, w, h, d, t, dm, p (see rlfs.lua).
func keysOf(prefix, name string) keys {
	tag := "{" + tagEscaper.Replace(prefix) + ":" + tagEscaper.Replace(name) + "}:"
	return keys{tag + "m", tag + "c", tag + "q", tag + "w", tag + "h", tag + "d", tag + "t", tag + "dm", tag + "p"}
}

// metersKey is the set of every meter's name; epochKey names the store's
// data (a new value means the data was lost and made anew).
func metersKey(prefix string) string { return "{" + tagEscaper.Replace(prefix) + "}:meters" }
func epochKey(prefix string) string  { return "{" + tagEscaper.Replace(prefix) + "}:epoch" }

// hostChannel carries grants and wake instants to one host; eventChannel
// tells every host about meters created, changed and removed.
func hostChannel(prefix, host string) string { return prefix + ":h:" + host }
func eventChannel(prefix string) string      { return prefix + ":ev" }
