package meter_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

const day = 24 * time.Hour

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in   string
		want meter.Spec
	}{
		// Empty specs are the default: a cross-process mutex.
		{"", meter.Spec{Concurrency: 1}},
		{" \n ,, \n", meter.Spec{Concurrency: 1}},
		{"# only a comment", meter.Spec{Concurrency: 1}},

		// N/PER with Go durations, days and bare units.
		{"1/s", meter.Spec{Windows: []meter.Window{{N: 1, Per: time.Second}}, Concurrency: 1}},
		{"10/500ms", meter.Spec{Windows: []meter.Window{{N: 10, Per: 500 * time.Millisecond}}, Concurrency: 1}},
		{"75/1h", meter.Spec{Windows: []meter.Window{{N: 75, Per: time.Hour}}, Concurrency: 1}},
		{"20/h", meter.Spec{Windows: []meter.Window{{N: 20, Per: time.Hour}}, Concurrency: 1}},
		{"3/1.5h", meter.Spec{Windows: []meter.Window{{N: 3, Per: 90 * time.Minute}}, Concurrency: 1}},
		{"3/1h30m", meter.Spec{Windows: []meter.Window{{N: 3, Per: 90 * time.Minute}}, Concurrency: 1}},
		{"1000/d", meter.Spec{Windows: []meter.Window{{N: 1000, Per: day}}, Concurrency: 1}},
		{"5/2d", meter.Spec{Windows: []meter.Window{{N: 5, Per: 2 * day}}, Concurrency: 1}},
		{"5/1.5d", meter.Spec{Windows: []meter.Window{{N: 5, Per: 36 * time.Hour}}, Concurrency: 1}},
		{"5/1d12h", meter.Spec{Windows: []meter.Window{{N: 5, Per: 36 * time.Hour}}, Concurrency: 1}},
		{"7/250us", meter.Spec{Windows: []meter.Window{{N: 7, Per: 250 * time.Microsecond}}, Concurrency: 1}},
		{"7/250µs", meter.Spec{Windows: []meter.Window{{N: 7, Per: 250 * time.Microsecond}}, Concurrency: 1}},
		{"2/m", meter.Spec{Windows: []meter.Window{{N: 2, Per: time.Minute}}, Concurrency: 1}},
		{" 2 / 1m ", meter.Spec{Windows: []meter.Window{{N: 2, Per: time.Minute}}, Concurrency: 1}},
		// Decimals are exact, as in time.ParseDuration (they once went through
		// float64: "2.3h" parsed as 2h17m59.999999999s and "0.3s" was at risk).
		{"1/2.3h", meter.Spec{Windows: []meter.Window{{N: 1, Per: 2*time.Hour + 18*time.Minute}}, Concurrency: 1}},
		{"1/0.3s", meter.Spec{Windows: []meter.Window{{N: 1, Per: 300 * time.Millisecond}}, Concurrency: 1}},
		{"1/0.1d", meter.Spec{Windows: []meter.Window{{N: 1, Per: 144 * time.Minute}}, Concurrency: 1}},
		{"1/500ms,20/10s,50/30s", meter.Spec{
			Windows:     []meter.Window{{N: 1, Per: 500 * time.Millisecond}, {N: 20, Per: 10 * time.Second}, {N: 50, Per: 30 * time.Second}},
			Concurrency: 1,
		}},

		// concurrency=K, including 0 (unlimited).
		{"concurrency=4", meter.Spec{Concurrency: 4}},
		{"concurrency=0", meter.Spec{Concurrency: 0}},
		{"concurrency = 2", meter.Spec{Concurrency: 2}},

		// Token bucket.
		{"rate=10/s", meter.Spec{Concurrency: 1, Bucket: &meter.Bucket{N: 10, Per: time.Second, Burst: 1}}},
		{"rate=10/s,burst=20", meter.Spec{Concurrency: 1, Bucket: &meter.Bucket{N: 10, Per: time.Second, Burst: 20}}},
		{"burst=20,rate=10/s", meter.Spec{Concurrency: 1, Bucket: &meter.Bucket{N: 10, Per: time.Second, Burst: 20}}},

		// count=.
		{"count=completion", meter.Spec{Concurrency: 1, Count: meter.CountCompletion}},
		{"count=grant", meter.Spec{Concurrency: 1, Count: meter.CountGrant}},

		// max_wait, max_hold, max_waiters.
		{"max_wait=30s", meter.Spec{Concurrency: 1, MaxWait: 30 * time.Second}},
		{"max_wait=m", meter.Spec{Concurrency: 1, MaxWait: time.Minute}},
		{"max_hold=1.5h", meter.Spec{Concurrency: 1, MaxHold: 90 * time.Minute}},
		{"max_hold=2d", meter.Spec{Concurrency: 1, MaxHold: 2 * day}},
		{"max_waiters=100", meter.Spec{Concurrency: 1, MaxWaiters: 100}},

		// Commas, newlines, CRLF, comments, blank items.
		{"1/s,75/h", meter.Spec{Windows: []meter.Window{{N: 1, Per: time.Second}, {N: 75, Per: time.Hour}}, Concurrency: 1}},
		{"1/s\n75/h\n", meter.Spec{Windows: []meter.Window{{N: 1, Per: time.Second}, {N: 75, Per: time.Hour}}, Concurrency: 1}},
		{"1/s\r\n75/h\r\n", meter.Spec{Windows: []meter.Window{{N: 1, Per: time.Second}, {N: 75, Per: time.Hour}}, Concurrency: 1}},
		{"# email quota\n1/s # provider rule\n\n75/h,, # hourly, 2/s ignored\n", meter.Spec{
			Windows: []meter.Window{{N: 1, Per: time.Second}, {N: 75, Per: time.Hour}}, Concurrency: 1,
		}},
		{
			"1/s, 75/h\nconcurrency=4\nrate=10/s,burst=20\ncount=grant\nmax_wait=30s\nmax_hold=5m\nmax_waiters=9",
			meter.Spec{
				Windows:     []meter.Window{{N: 1, Per: time.Second}, {N: 75, Per: time.Hour}},
				Concurrency: 4,
				Bucket:      &meter.Bucket{N: 10, Per: time.Second, Burst: 20},
				Count:       meter.CountGrant,
				MaxWait:     30 * time.Second,
				MaxHold:     5 * time.Minute,
				MaxWaiters:  9,
			},
		},
	}
	for _, tt := range tests {
		got, err := meter.ParseSpec(tt.in)
		require.NoError(t, err, "ParseSpec(%q)", tt.in)
		require.Equal(t, tt.want, got, "ParseSpec(%q)", tt.in)
		again, err := meter.ParseSpec(got.String())
		require.NoError(t, err, "ParseSpec(%q) (the String of ParseSpec(%q))", got.String(), tt.in)
		require.Equal(t, got, again, "ParseSpec(%q) (the String of ParseSpec(%q))", got.String(), tt.in)
		require.True(t, got.Equal(again), "ParseSpec(%q).Equal(its round trip)", tt.in)
	}
}

func TestSpecString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "concurrency=1"},
		{"20/h", "20/1h,concurrency=1"},
		{"1/60m", "1/1h,concurrency=1"},
		{"1/90m", "1/1h30m,concurrency=1"},
		{"1/24h", "1/1d,concurrency=1"},
		{"1/36h", "1/36h,concurrency=1"},
		{"1/1500ms", "1/1.5s,concurrency=1"},
		{"1/500ms,20/10s,50/30s", "1/500ms,20/10s,50/30s,concurrency=1"},
		{"count=completion", "concurrency=1"},
		{"rate=10/s", "concurrency=1,rate=10/1s,burst=1"},
		{
			"max_waiters=9, max_hold=5m, max_wait=30s, count=grant, burst=20, rate=10/s, concurrency=0, 75/h, 1/s",
			"1/1s,75/1h,concurrency=0,rate=10/1s,burst=20,count=grant,max_wait=30s,max_hold=5m,max_waiters=9",
		},
	}
	for _, tt := range tests {
		s, err := meter.ParseSpec(tt.in)
		require.NoError(t, err, "ParseSpec(%q)", tt.in)
		require.Equal(t, tt.want, s.String(), "ParseSpec(%q).String()", tt.in)
		require.Equal(t, strings.Split(tt.want, ","), s.Items(), "ParseSpec(%q).Items()", tt.in)
	}
	require.Equal(t, "concurrency=1", meter.DefaultSpec().String())
}

func TestParseSpecErrors(t *testing.T) {
	tests := []struct {
		in   string
		want []string // substrings of the error, the quoted bad item first
	}{
		{"0/s", []string{`"0/s"`, "at least 1"}},
		{"-1/s", []string{`"-1/s"`, "at least 1"}},
		{"zero/s", []string{`"zero/s"`, "not a whole number"}},
		{"1.5/s", []string{`"1.5/s"`, "not a whole number"}},
		{"1/0s", []string{`"1/0s"`, "longer than zero"}},
		{"1/0.5ns", []string{`"1/0.5ns"`, "less than a nanosecond"}},
		{"1/", []string{`"1/"`, "missing duration"}},
		{"1/5", []string{`"1/5"`, "bad duration"}},
		{"1/5x", []string{`"1/5x"`, "bad duration"}},
		{"1/-5s", []string{`"1/-5s"`, "bad duration"}},
		{"1/1..5s", []string{`"1/1..5s"`, "not a number"}},
		{"1/99999999999999999h", []string{`"1/99999999999999999h"`, "too long"}},
		{"1/200000d", []string{`"1/200000d"`, "too long"}},
		{"1/100000d100000d", []string{`"1/100000d100000d"`, "too long"}},
		{"5", []string{`"5"`, "N/PER"}},
		{"2000000000/s", []string{`"2000000000/s"`, "at most"}},
		{"1/s,2/1000ms", []string{`"2/1000ms"`, "already set"}},
		{"concurrency=-1", []string{`"concurrency=-1"`, "at least 0"}},
		{"concurrency=many", []string{`"concurrency=many"`, "not a whole number"}},
		{"concurrency=", []string{`"concurrency="`, "not a whole number"}},
		{"concurrency=1,concurrency=2", []string{`"concurrency=2"`, "twice"}},
		{"burst=3", []string{`"burst=3"`, "needs a rate"}},
		{"rate=10/s,burst=0", []string{`"burst=0"`, "at least 1"}},
		{"rate=0/s", []string{`"rate=0/s"`, "at least 1"}},
		{"rate=10", []string{`"rate=10"`, "N/PER"}},
		{"rate=2/1ns", []string{`"rate=2/1ns"`, "nanosecond"}},
		// A burst whose span overflows time.Duration made Admit's
		// TAT-interval*(burst-1) wrap around; such specs are refused.
		{"rate=1/1000d,burst=200", []string{`"burst=200"`, "290 years"}},
		{"rate=1/s,rate=2/s", []string{`"rate=2/s"`, "twice"}},
		{"count=start", []string{`"count=start"`, "completion or grant"}},
		{"count=grant,count=grant", []string{`"count=grant"`, "twice"}},
		{"max_wait=0s", []string{`"max_wait=0s"`, "longer than zero"}},
		{"max_wait=soon", []string{`"max_wait=soon"`, "bad duration"}},
		{"max_hold=-1s", []string{`"max_hold=-1s"`, "bad duration"}},
		{"max_waiters=0", []string{`"max_waiters=0"`, "at least 1"}},
		{"max_waiters=2000000000", []string{`"max_waiters=2000000000"`, "at most"}},
		{"colour=red", []string{`"colour=red"`, "unknown item", `"colour"`}},
		{"1/s\nconcurency=2", []string{`"concurency=2"`, "unknown item"}},
		{manyWindows(meter.MaxItems + 1), []string{"more than 64 items"}},
	}
	for _, tt := range tests {
		_, err := meter.ParseSpec(tt.in)
		require.Error(t, err, "ParseSpec(%q)", tt.in)
		require.True(t, strings.HasPrefix(err.Error(), "meter: "), "ParseSpec(%q) = %v, want a \"meter: \" prefix", tt.in, err)
		for _, w := range tt.want {
			require.Contains(t, err.Error(), w, "ParseSpec(%q)", tt.in)
		}
	}
	_, err := meter.ParseSpec(manyWindows(meter.MaxItems))
	require.NoError(t, err, "ParseSpec of MaxItems windows")
}

// TestParseSpecSaysTooLarge pins a bug: "9223372036854775808/1s" was
// refused as "not a whole number" when it is a whole number, too large.
// Every count of a spec is checked: N, concurrency, burst, max_waiters.
func TestParseSpecSaysTooLarge(t *testing.T) {
	const huge = "9223372036854775808" // 2^63, one more than int64 holds
	tests := []struct {
		in   string
		want []string
	}{
		{huge + "/1s", []string{`"` + huge + `/1s"`, "count " + huge + " is too large", "at most 1073741824 (2^30)"}},
		{"1073741825/1s", []string{"count 1073741825 is too large", "at most 1073741824"}},
		{"-" + huge + "9/1s", []string{"count must be at least 1"}},
		{"rate=" + huge + "/1s", []string{`"rate=` + huge + `/1s"`, "count " + huge + " is too large"}},
		{"concurrency=" + huge, []string{"concurrency " + huge + " is too large"}},
		{"rate=1/s,burst=" + huge, []string{"burst " + huge + " is too large"}},
		{"max_waiters=" + huge, []string{"max_waiters " + huge + " is too large"}},
		{"max_waiters=" + huge + huge, []string{"is too large"}},
	}
	for _, tt := range tests {
		_, err := meter.ParseSpec(tt.in)
		require.Error(t, err, "ParseSpec(%q)", tt.in)
		require.NotContains(t, err.Error(), "not a whole number", "ParseSpec(%q)", tt.in)
		for _, w := range tt.want {
			require.Contains(t, err.Error(), w, "ParseSpec(%q)", tt.in)
		}
	}
}

// TestParseSpecRefusesFractionsOfANanosecond pins a bug: "1/1.5ns" was
// stored as "1/1ns" without a word (time.Duration truncates a fraction of a
// nanosecond). A duration that is not a whole number of nanoseconds is
// refused, naming the item and what it rounds to.
func TestParseSpecRefusesFractionsOfANanosecond(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"1/1.5ns", []string{`"1/1.5ns"`, "not a whole number of nanoseconds", "1ns or 2ns"}},
		{"1/2.0000000005s", []string{`"1/2.0000000005s"`, "2s or 2.000000001s"}},
		{"1/1s0.5ns", []string{`"1/1s0.5ns"`, "not a whole number of nanoseconds"}},
		{"1/0.0000000000001d", []string{"8ns or 9ns"}},
		{"1/0.00000000000001d", []string{"less than a nanosecond"}},
		{"rate=1/1.0005us", []string{`"rate=1/1.0005us"`, "1µs or 1.001µs"}},
		{"max_wait=0.1ns", []string{`"max_wait=0.1ns"`, "less than a nanosecond"}},
		{"max_hold=1.25ns", []string{`"max_hold=1.25ns"`, "1ns or 2ns"}},
	}
	for _, tt := range tests {
		_, err := meter.ParseSpec(tt.in)
		require.Error(t, err, "ParseSpec(%q)", tt.in)
		for _, w := range tt.want {
			require.Contains(t, err.Error(), w, "ParseSpec(%q)", tt.in)
		}
	}
	// Exact fractions are still welcome.
	for in, want := range map[string]time.Duration{"1.5us": 1500, "0.000000001s": 1, "2.5ms": 2500 * time.Microsecond, "0.5d": 12 * time.Hour, "0.00000000000125d": 108} {
		got, err := meter.ParseDuration(in)
		require.NoError(t, err, "ParseDuration(%q)", in)
		require.Equal(t, want, got, "ParseDuration(%q)", in)
	}
}

// manyWindows returns n windows with distinct PERs: 1/1s,1/2s,…
func manyWindows(n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = "1/" + (time.Duration(i+1) * time.Second).String()
	}
	return strings.Join(items, ",")
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"ns", time.Nanosecond},
		{"us", time.Microsecond},
		{"ms", time.Millisecond},
		{"s", time.Second},
		{"m", time.Minute},
		{"h", time.Hour},
		{"d", day},
		{"500ms", 500 * time.Millisecond},
		{"10s", 10 * time.Second},
		{"1.5h", 90 * time.Minute},
		{"2.3h", 138 * time.Minute},
		{"0.3s", 300 * time.Millisecond},
		{".5s", 500 * time.Millisecond},
		{"1h30m", 90 * time.Minute},
		{"1d1h", 25 * time.Hour},
		{"1.25d", 30 * time.Hour},
	}
	for _, tt := range tests {
		got, err := meter.ParseDuration(tt.in)
		require.NoError(t, err, "ParseDuration(%q)", tt.in)
		require.Equal(t, tt.want, got, "ParseDuration(%q)", tt.in)
		if std, err := time.ParseDuration(tt.in); err == nil {
			require.Equal(t, std, got, "ParseDuration(%q), want time.ParseDuration's answer", tt.in)
		}
	}
	for _, bad := range []string{"", "5", "x", "-1s", "1s-", "1 s", "1e3s", "1.2.3s", ".", "1hh"} {
		_, err := meter.ParseDuration(bad)
		require.Error(t, err, "ParseDuration(%q)", bad)
	}
	// time.Duration reaches 2562047h; ParseDuration stops at half of it.
	for _, long := range []string{"2562047h", "1281024h", "53376d", "1281023h1281023h"} {
		_, err := meter.ParseDuration(long)
		require.ErrorContains(t, err, "too long", "ParseDuration(%q)", long)
	}
	got, err := meter.ParseDuration("1281023h")
	require.NoError(t, err, "ParseDuration(%q)", "1281023h")
	require.Equal(t, 1281023*time.Hour, got, "ParseDuration(%q)", "1281023h")
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"", "1/s", "20/h", "1/500ms,20/10s,50/30s", "concurrency=0", "rate=10/s,burst=20",
		"count=grant\nmax_wait=30s # wait\nmax_hold=1.5h,max_waiters=3", "5/1.5d", "1/2.3h",
		"0/s", "1/0s", "burst=3", "1/s,1/s",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		s, err := meter.ParseSpec(text)
		if err != nil {
			require.True(t, strings.HasPrefix(err.Error(), "meter: "), "ParseSpec(%q) = %v", text, err)
			return
		}
		again, err := meter.ParseSpec(s.String())
		require.NoError(t, err, "ParseSpec(%q), the String of ParseSpec(%q)", s.String(), text)
		require.Equal(t, s, again, "ParseSpec(%q), the String of ParseSpec(%q)", s.String(), text)
		require.Equal(t, s.String(), again.String())
	})
}
