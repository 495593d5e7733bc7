//go:build !race

package handshake

const handshakeRaceEnabled = false
