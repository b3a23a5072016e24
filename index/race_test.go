//go:build race

package index_test

// raceEnabled thins the fault sweeps, which the race detector slows
// tenfold; the plain test run sweeps them whole.
const raceEnabled = true
