//go:build race

package dedupe

// raceEnabled: the race detector is on, and some appends the compiler
// otherwise does in place allocate (counting allocations tells nothing).
const raceEnabled = true
