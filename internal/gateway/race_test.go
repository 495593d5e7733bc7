//go:build race

package gateway

// The race detector's sync.Pool drops items at random, so allocation counts
// are meaningless under it.
const raceEnabled = true
