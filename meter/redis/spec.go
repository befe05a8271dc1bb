package redis

import (
	"strconv"
	"strings"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// The library works in microseconds: durations are rounded up to whole
// microseconds (a window or an interval a little longer: the safe side).
func micros(d time.Duration) int64 { return int64((d + time.Microsecond - 1) / time.Microsecond) }

// specFields are the meter hash fields the library's rule reads (see
// spec_of in rlfs.lua), with the spec's text, which Load parses back.
func specFields(s meter.Spec, history time.Duration) []string {
	var win []string
	for _, w := range s.Windows {
		win = append(win, strconv.Itoa(w.N)+":"+strconv.FormatInt(micros(w.Per), 10)+":"+boolStr(w.Units))
	}
	f := []string{
		"spec", s.String(),
		"win", strings.Join(win, ";"),
		"conc", strconv.Itoa(s.Concurrency),
		"bygrant", boolStr(s.Count == meter.CountGrant),
		"mhold", strconv.FormatInt(micros(s.MaxHold), 10),
		"mwaiters", strconv.Itoa(s.MaxWaiters),
		"horizon", strconv.FormatInt(micros(history), 10),
	}
	if b := s.UnitBucket; b != nil {
		f = append(f, "un", strconv.Itoa(b.N), "uper", strconv.FormatInt(micros(b.Per), 10), "uburst", strconv.Itoa(b.Burst))
	} else {
		f = append(f, "un", "0", "uper", "0", "uburst", "0")
	}
	if b := s.Bucket; b != nil {
		return append(f, "rn", strconv.Itoa(b.N), "rper", strconv.FormatInt(micros(b.Per), 10), "burst", strconv.Itoa(b.Burst))
	}
	return append(f, "rn", "0", "rper", "0", "burst", "0")
}

func attrFields(a meter.Attr) []string {
	return []string{"mode", strconv.FormatUint(uint64(a.Mode), 10), "uid", strconv.FormatUint(uint64(a.UID), 10), "gid", strconv.FormatUint(uint64(a.GID), 10)}
}

// storedOf parses a meter's definition (rlfs2_def).
func storedOf(name string, d defReply) (meter.Stored, error) {
	spec, err := meter.ParseSpec(d.spec)
	if err != nil {
		return meter.Stored{}, err
	}
	return meter.Stored{Name: name, Spec: spec, Attr: attrOf(d.mode, d.uid, d.gid), Grants: uint64(d.grants), Version: uint64(d.version)}, nil
}
