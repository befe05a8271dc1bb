// Package gcra holds the yardstick of issue 17's cost figures: one GCRA
// decision as a Redis function (gcra.lua), which meter/redis's cost tests
// and the bench's fleet step run beside rlfs's functions on the same
// server.
package gcra

import _ "embed"

// Library is the function library (name rlfsbench, function
// rlfsbench_gcra: one key, the TAT; ARGV 1 the emission interval, 2 the
// burst).
//
//go:embed gcra.lua
var Library string

// Function is the name of its one function.
const Function = "rlfsbench_gcra"
