package sqlite

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// A meter's history (meter.State.Past) is stored in its row as one BLOB:
// a version byte (2), then per group, oldest first: uvarint N, uvarint U
// (units), then varints of First, Granted and Done in Unix nanoseconds.
// Version 1 lacked U (every call cost 1: U = N). NULL is no history.

const pastVersion = 2

var errBadPast = errors.New("history blob does not decode")

func encodePast(past []meter.Past) any {
	if len(past) == 0 {
		return nil
	}
	b := make([]byte, 0, 1+len(past)*20)
	b = append(b, pastVersion)
	for _, p := range past {
		b = binary.AppendUvarint(b, uint64(p.N))
		b = binary.AppendUvarint(b, uint64(p.U))
		b = binary.AppendVarint(b, p.First.UnixNano())
		b = binary.AppendVarint(b, p.Granted.UnixNano())
		b = binary.AppendVarint(b, p.Done.UnixNano())
	}
	return b
}

func decodePast(b []byte) ([]meter.Past, error) {
	if len(b) == 0 {
		return nil, nil
	}
	version := b[0]
	if version != 1 && version != pastVersion {
		return nil, errBadPast
	}
	b = b[1:]
	var out []meter.Past
	for len(b) > 0 {
		var p meter.Past
		n, k := binary.Uvarint(b)
		if k <= 0 || n == 0 || n > 1<<62 {
			return nil, errBadPast
		}
		p.N, p.U, b = int(n), int64(n), b[k:]
		if version >= 2 {
			u, k := binary.Uvarint(b)
			if k <= 0 || u > 1<<62 {
				return nil, errBadPast
			}
			p.U, b = int64(u), b[k:]
		}
		for _, t := range []*time.Time{&p.First, &p.Granted, &p.Done} {
			v, k := binary.Varint(b)
			if k <= 0 {
				return nil, errBadPast
			}
			*t, b = time.Unix(0, v), b[k:]
		}
		out = append(out, p)
	}
	return out, nil
}
