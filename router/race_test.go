//go:build race

package router_test

// The race detector's sync.Pool drops items at random, so allocation counts
// are meaningless under it.
const raceEnabled = true
