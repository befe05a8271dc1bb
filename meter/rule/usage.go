package rule

import (
	"fmt"
	"time"
)

// BucketUsage is how many tokens a token bucket has now: Free of Burst.
type BucketUsage struct {
	Item  string `json:"item"` // "rate=10/1s" or "units:rate=90000/1m"
	Free  int64  `json:"free"`
	Burst int64  `json:"burst"`
}

// bucketUsage is b's free tokens at now, given its TAT.
func bucketUsage(item string, b *Bucket, tat, now time.Time) BucketUsage {
	u := BucketUsage{Item: item, Burst: int64(b.Burst), Free: int64(b.Burst)}
	if owed := tat.Sub(now); owed > 0 {
		u.Free = max(0, int64(b.Burst)-int64((owed+b.Interval()-1)/b.Interval()))
	}
	return u
}

// Buckets pictures spec's token buckets at now, given their TATs.
func Buckets(spec Spec, tat, utat, now time.Time) []BucketUsage {
	var out []BucketUsage
	if b := spec.Bucket; b != nil {
		out = append(out, bucketUsage(fmt.Sprintf("rate=%d/%s", b.N, formatDuration(b.Per)), b, tat, now))
	}
	if b := spec.UnitBucket; b != nil {
		out = append(out, bucketUsage(fmt.Sprintf("units:rate=%d/%s", b.N, formatDuration(b.Per)), b, utat, now))
	}
	return out
}

// WindowUsage is how many calls count against one window.
type WindowUsage struct {
	Window Window
	Used   int
}

// String returns the window as a spec item, such as "75/1h" or
// "units:90000/1m".
func (w Window) String() string {
	if w.Units {
		return fmt.Sprintf("units:%d/%s", w.N, formatDuration(w.Per))
	}
	return fmt.Sprintf("%d/%s", w.N, formatDuration(w.Per))
}

// FormatTime prints t's wall-clock reading in UTC, RFC 3339 with milliseconds.
func FormatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// earlier returns the earlier of t and u.
func earlier(t, u time.Time) time.Time {
	if t.After(u) {
		return u
	}
	return t
}
