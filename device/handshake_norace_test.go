//go:build !race

package device

const handshakeRaceEnabled = false
