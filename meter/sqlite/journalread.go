package sqlite

// Reading a grant journal back at open: records are checked by their CRC and
// a torn tail (a crash inside a write) ends the read.

import (
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"time"
)

type journalRec struct {
	seq uint64
	op  op
}

// readJournal reads a journal file's records up to the first torn or
// corrupt one.
func readJournal(f *os.File) ([]journalRec, error) {
	data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<40))
	if err != nil {
		return nil, err
	}
	var out []journalRec
	for len(data) >= 8 {
		n := binary.LittleEndian.Uint32(data)
		sum := binary.LittleEndian.Uint32(data[4:])
		if n > 1<<20 || int(n)+8 > len(data) {
			break
		}
		payload := data[8 : 8+n]
		if crc32.Checksum(payload, castagnoli) != sum {
			break
		}
		r, ok := decodeRecord(payload)
		if !ok {
			break
		}
		out = append(out, r)
		data = data[8+n:]
	}
	return out, nil
}

func decodeRecord(p []byte) (journalRec, bool) {
	var r journalRec
	d := decoder{b: p, ok: true}
	r.op.kind = opKind(d.take(1)[0])
	r.seq = d.u64()
	r.op.meter = d.str()
	r.op.call.ID = d.u64()
	switch r.op.kind {
	case opGrant:
		r.op.call.GrantedAt = time.Unix(0, int64(d.u64()))
		if tat := int64(d.u64()); tat != 0 {
			r.op.tat = time.Unix(0, tat)
		}
		r.op.call.Holder.PID = int(int64(d.u64()))
		r.op.call.Holder.UID = d.u32()
		r.op.call.Holder.GID = d.u32()
		r.op.call.Holder.Cmd = d.str()
		r.op.call.Cost = 1
		if len(d.b) >= 16 {
			r.op.call.Cost = int64(d.u64())
			r.op.utat = timeOrZero(int64(d.u64()))
		}
	case opSettle:
		r.op.call.Actual, r.op.call.Settled = int64(d.u64()), true
		r.op.utat = timeOrZero(int64(d.u64()))
	case opComplete:
		r.op.call.DoneAt = time.Unix(0, int64(d.u64()))
		r.op.call.Expired = d.take(1)[0] != 0
	case opRevoke:
	default:
		return r, false
	}
	return r, d.ok && len(d.b) == 0
}

type decoder struct {
	b  []byte
	ok bool
}

func (d *decoder) take(n int) []byte {
	if len(d.b) < n {
		d.ok, d.b = false, nil
		return make([]byte, n) // zeros; the record is refused
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u64() uint64 { return binary.LittleEndian.Uint64(d.take(8)) }
func (d *decoder) u32() uint32 { return binary.LittleEndian.Uint32(d.take(4)) }
func (d *decoder) str() string {
	n := binary.LittleEndian.Uint16(d.take(2))
	return string(d.take(int(n)))
}

// appendGrant writes a grant record with one pwrite and queues it for SQLite.
