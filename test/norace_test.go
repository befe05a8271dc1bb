//go:build !race

package test

// raceEnabled reports whether the test binary is built with -race; the daemon
// is then built with -race too.
const raceEnabled = false
