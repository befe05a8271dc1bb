// Package gcra holds the yardsticks of issue 17's cost figures: one GCRA
// decision as a Redis function (gcra.lua), which meter/redis's cost tests
// and the bench's fleet step run beside rlfs's functions on the same
// server. Function is the bare rule (three commands, two numbers back);
// RateFunction the same rule shaped as a limiter library serves it
// (redis_rate's allow_n: its arguments, a key that expires, four values
// back). The figures' verdicts are judged against the bare rule; the
// other says what a real peer costs the same Redis.
package gcra

import _ "embed"

// Library is the function library (name rlfsbench).
//
//go:embed gcra.lua
var Library string

// The two functions (one key each: the TAT).
const (
	Function     = "rlfsbench_gcra"
	RateFunction = "rlfsbench_gcra_rate"
)

// Args and RateArgs are the functions' arguments for the same limiter, one
// that never refuses in a measurement: a call every µs, a burst of 10^9
// (Args: interval µs, burst; RateArgs: burst, rate, period in s, cost).
var (
	Args     = []string{"1", "1000000000"}
	RateArgs = []string{"1000000000", "1000000", "1", "1"}
)
