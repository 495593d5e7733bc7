package handshake

import (
	"crypto/ecdh"
)

// x25519Static is the responder's static private key as a crypto/ecdh key,
// made once, so that each Diffie-Hellman with it is ONE Montgomery ladder.
//
// golang.org/x/crypto/curve25519.X25519 (which wireguard-go and this package
// used before) builds a new ecdh.PrivateKey on every call, and
// ecdh.NewPrivateKey derives the key's public key at once: a second full
// ladder, with the base point, whose result is thrown away. Every X25519
// therefore cost two ladders. Here the private key never changes, so that
// derivation happens once, in newX25519Static, and dh does only the ladder
// the protocol needs. The curve and field code is the standard library's
// (crypto/ecdh over crypto/internal/fips140/edwards25519/field); nothing
// here does arithmetic of its own.
type x25519Static struct {
	priv *ecdh.PrivateKey
}

// newX25519Static makes the static key from the 32-byte private key priv
// (clamped by X25519 itself, so any 32 bytes will do).
func newX25519Static(priv *[32]byte) x25519Static {
	k, err := ecdh.X25519().NewPrivateKey(priv[:])
	if err != nil {
		// Only for a key of the wrong length, or in FIPS 140-only mode,
		// where WireGuard cannot run at all.
		panic("handshake: " + err.Error())
	}
	return x25519Static{priv: k}
}

// public returns the static key's public key.
func (s x25519Static) public() (pub [32]byte) {
	copy(pub[:], s.priv.PublicKey().Bytes())
	return pub
}

// dh sets out = X25519(static private key, point) and reports true, or
// clears out and reports false when the result is zero (point is of low
// order, so the result carries no secret: RFC 7748 section 6.1). The top
// bit of point is ignored and non-canonical values are reduced, as RFC 7748
// section 5 asks. Safe for concurrent use; it allocates the two small
// slices crypto/ecdh returns.
func (s x25519Static) dh(out, point *[32]byte) bool {
	pub, err := ecdh.X25519().NewPublicKey(point[:])
	if err == nil {
		var shared []byte
		if shared, err = s.priv.ECDH(pub); err == nil {
			copy(out[:], shared)
			return true
		}
	}
	clear(out[:])
	return false
}
