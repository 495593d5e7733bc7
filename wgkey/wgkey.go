// Package wgkey is the WireGuard Curve25519 key as a value type, in the
// base64 form that wg(8) reads and writes: parsing, generation and
// public-key derivation. Exported APIs of anyguard (device, cluster, bench)
// take a wgkey.Key, so other modules can name it; reading key files with a
// permission check stays in the internal keys package.
package wgkey

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/curve25519"
)

// Len is the length in bytes of every WireGuard key.
const Len = 32

// Key is a Curve25519 private, public or preshared key. The zero value is
// no key (IsZero).
type Key [Len]byte

// ErrBadKey is returned (wrapped) for text that is not a base64 WireGuard key.
var ErrBadKey = errors.New("not a WireGuard key: want 44 characters of base64 encoding 32 bytes")

// Parse decodes a base64 key as printed by `wg genkey` or `wg pubkey`.
// Surrounding white space is ignored. As wg(8) does, it refuses text
// whose last character carries nonzero padding bits: each key has one
// text form, so two spellings of one key never pass as two keys.
func Parse(s string) (Key, error) {
	var k Key
	s = strings.TrimSpace(s)
	if len(s) != base64.StdEncoding.EncodedLen(Len) {
		return k, ErrBadKey
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != Len {
		return Key{}, ErrBadKey
	}
	copy(k[:], b)
	return k, nil
}

// Generate returns a new random private key, clamped as `wg genkey` does.
func Generate() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("generate key: %w", err)
	}
	k.clamp()
	return k, nil
}

func (k *Key) clamp() {
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
}

// Public derives the public key of private key k.
func (k Key) Public() Key {
	var pub Key
	priv := k
	priv.clamp()
	curve25519.ScalarBaseMult((*[32]byte)(&pub), (*[32]byte)(&priv))
	return pub
}

// IsZero reports whether k is all zeros (unset).
func (k Key) IsZero() bool { return k == Key{} }

// String returns the base64 form of k. Never log a private key.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// Hex returns the lower-case hex form used by the WireGuard UAPI.
func (k Key) Hex() string {
	const digits = "0123456789abcdef"
	b := make([]byte, 2*Len)
	for i, c := range k {
		b[2*i] = digits[c>>4]
		b[2*i+1] = digits[c&15]
	}
	return string(b)
}

// Compare orders keys bytewise, for sorting.
func (k Key) Compare(o Key) int { return bytes.Compare(k[:], o[:]) }
