//go:build race

package handshake

// The race detector's sync.Pool drops items at random, so allocation counts
// are meaningless under it.
const handshakeRaceEnabled = true
