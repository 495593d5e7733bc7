// Package handshake reads WireGuard handshake initiations as the Noise
// IKpsk2 responder would, before wireguard-go does: the mac1 check, the
// initiator's static key (one X25519), and, with the static-static secret
// the caller keeps per client, the initiator's authenticity and TAI64N
// timestamp. The gateway uses it to admit clients that are not yet device
// peers (just-in-time peers) and to refuse replayed initiations.
//
// It shares nothing with wireguard-go's device: it reads the message bytes
// only, and never completes a handshake.
package handshake

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/anyguard/anyguard/wgkey"
)

// Reasons an initiation is refused, for callers to branch on and count.
var (
	// ErrNotInitiation: the datagram has the wrong type or size.
	ErrNotInitiation = errors.New("handshake: not an initiation message")
	// ErrBadMAC1: mac1 does not match, so the message is addressed to
	// another key, or was altered or made up by someone who does not know
	// the responder's public key. This is the cheap reject (one keyed hash).
	ErrBadMAC1 = errors.New("handshake: bad mac1")
	// ErrDecrypt: mac1 matched but the encrypted static key did not open
	// (or the ephemeral key is a low-order point). Only someone who knows
	// the responder's public key can produce this.
	ErrDecrypt = errors.New("handshake: cannot decrypt initiator static key")
	// ErrNotAuthentic: the initiator does not hold the private key of the
	// static key it names (the encrypted timestamp did not open).
	ErrNotAuthentic = errors.New("handshake: initiator not authentic")
	// ErrLowOrder: a public key is a low-order point, so any Diffie-Hellman
	// with it gives zero.
	ErrLowOrder = errors.New("handshake: low-order public key")
)

// Noise parameters of WireGuard (whitepaper section 5.4), and the
// initiation's type and size on the wire.
const (
	msgInitiation  = 1
	sizeInitiation = 148

	noiseConstruction = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
	wgIdentifier      = "WireGuard v1 zx2c4 Jason@zx2c4.com"
	labelMAC1         = "mac1----"
)

// Offsets inside a handshake initiation (148 bytes): type and reserved (4),
// sender index (4), unencrypted ephemeral (32), encrypted static (32 + 16),
// encrypted timestamp (12 + 16), mac1 (16), mac2 (16).
const (
	initOffSender    = 4
	initOffEphemeral = 8
	initOffStatic    = initOffEphemeral + 32
	initOffTimestamp = initOffStatic + 32 + chacha20poly1305.Overhead
	initOffMAC1      = initOffTimestamp + 12 + chacha20poly1305.Overhead
	initOffMAC2      = initOffMAC1 + 16
	sizeStampCT      = initOffMAC1 - initOffTimestamp
	tai64nBase       = 0x400000000000000a // TAI64 label of the Unix epoch (2^62 + 10 s TAI-UTC)
	sizeTimestamp    = 12
)

// InitiationReader recovers the initiator's static public key from WireGuard
// handshake initiations addressed to the holder of a private key, doing the
// first steps of the Noise IKpsk2 responder: the mac1 check, then
// DH(responder static, initiator ephemeral) and the AEAD-open of the
// encrypted static. It does not check the timestamp nor complete the
// handshake: wireguard-go still does both.
//
// A recovered static key is NOT proof of identity: anyone who knows the
// responder's public key (every client does) can encrypt any static key they
// like. Use Read and Initiation.Authenticate when the answer must be trusted.
//
// An InitiationReader is safe for concurrent use, and its methods do not
// allocate. Create it with NewInitiationReader; do not copy it.
type InitiationReader struct {
	static    x25519Static // responder private key
	public    wgkey.Key
	mac1Key   [32]byte // HASH(labelMAC1 || public)
	chainKey0 [32]byte // HASH(construction)
	hash0     [32]byte // HASH(HASH(chainKey0 || identifier) || public)
	macs      sync.Pool
}

// mac1Scratch is a keyed BLAKE2s-128 with room for its input and output,
// pooled because x/crypto only offers keyed hashing behind hash.Hash.
type mac1Scratch struct {
	h   hash.Hash
	in  [initOffMAC1]byte
	sum [16]byte
}

// NewInitiationReader precomputes everything that depends only on the
// responder's private key priv.
func NewInitiationReader(priv wgkey.Key) *InitiationReader {
	r := &InitiationReader{static: newX25519Static((*[32]byte)(&priv))}
	r.public = r.static.public()
	r.mac1Key = blake2s.Sum256(slices.Concat([]byte(labelMAC1), r.public[:]))
	r.chainKey0 = blake2s.Sum256([]byte(noiseConstruction))
	r.hash0 = blake2s.Sum256(slices.Concat(r.chainKey0[:], []byte(wgIdentifier)))
	noiseMixHash(&r.hash0, r.public[:])
	r.macs.New = func() any {
		h, err := blake2s.New128(r.mac1Key[:])
		if err != nil {
			panic(err) // only for a key longer than 32 bytes
		}
		return &mac1Scratch{h: h}
	}
	return r
}

// PublicKey returns the responder's public key.
func (r *InitiationReader) PublicKey() wgkey.Key { return r.public }

// Static returns the initiator's static public key named by the handshake
// initiation msg. Errors: ErrNotInitiation (wrong type or size), ErrBadMAC1
// (not addressed to this key, or forged), ErrDecrypt (AEAD failure). The
// key is not authenticated (see InitiationReader).
//
// A message with a valid mac1 costs one X25519 ladder (about 36 µs of CPU
// here, half of what x/crypto's curve25519.X25519 costs: see x25519.go);
// one with a bad mac1 costs one keyed hash (about 0.5 µs).
func (r *InitiationReader) Static(msg []byte) (wgkey.Key, error) {
	var in Initiation
	err := r.Read(msg, &in)
	return in.Static, err
}

// Initiation is what a responder learns from the first half of an
// initiation message; Authenticate finishes the check.
type Initiation struct {
	Sender uint32    // the initiator's session index
	Static wgkey.Key // the initiator's static public key, not yet authenticated

	chainKey, hash [32]byte
	timestamp      [sizeStampCT]byte // still encrypted
}

// Read fills in from the handshake initiation msg, with the errors of
// Static. in is overwritten even on error; msg is not retained.
func (r *InitiationReader) Read(msg []byte, in *Initiation) error {
	*in = Initiation{}
	if !IsInitiation(msg) {
		return ErrNotInitiation
	}
	if !r.checkMAC1(msg) {
		return ErrBadMAC1
	}
	ephemeral := (*[32]byte)(msg[initOffEphemeral:initOffStatic])
	ck, h := r.chainKey0, r.hash0
	noiseMixHash(&h, ephemeral[:])
	noiseKDF1(&ck, ephemeral[:])

	var shared, key [32]byte
	if !r.static.dh(&shared, ephemeral) {
		return ErrDecrypt
	}
	noiseKDF2(&ck, &key, shared[:])
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		panic(err) // the key is always 32 bytes
	}
	var nonce [chacha20poly1305.NonceSize]byte
	if _, err := aead.Open(in.Static[:0], nonce[:], msg[initOffStatic:initOffTimestamp], h[:]); err != nil {
		in.Static = wgkey.Key{}
		return ErrDecrypt
	}
	noiseMixHash(&h, msg[initOffStatic:initOffTimestamp])

	in.Sender = binary.LittleEndian.Uint32(msg[initOffSender:])
	in.chainKey, in.hash = ck, h
	copy(in.timestamp[:], msg[initOffTimestamp:initOffMAC1])
	return nil
}

// SharedSecret returns DH(responder private key, initiator static key), the
// static-static secret that Authenticate needs. It costs one X25519 and
// depends only on the client, so callers compute it once per configured
// client and keep it (32 bytes each). ErrLowOrder for a low-order key.
func (r *InitiationReader) SharedSecret(initiator wgkey.Key) ([32]byte, error) {
	var out [32]byte
	if !r.static.dh(&out, (*[32]byte)(&initiator)) {
		return out, ErrLowOrder
	}
	return out, nil
}

// Authenticate proves that the initiator holds the private key of
// in.Static: it opens the encrypted timestamp with staticShared, which must
// be SharedSecret(in.Static). It returns the initiator's timestamp, which
// callers compare with the last one accepted from that client to refuse
// replays (a captured initiation authenticates again if replayed). Cheap:
// hashing and one AEAD-open, no curve operation. ErrNotAuthentic on failure.
func (in *Initiation) Authenticate(staticShared *[32]byte) (Timestamp, error) {
	var ts Timestamp
	if isZero32(staticShared) {
		return ts, ErrNotAuthentic
	}
	ck := in.chainKey
	var key [32]byte
	noiseKDF2(&ck, &key, staticShared[:])
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		panic(err)
	}
	var nonce [chacha20poly1305.NonceSize]byte
	if _, err := aead.Open(ts[:0], nonce[:], in.timestamp[:], in.hash[:]); err != nil {
		return Timestamp{}, ErrNotAuthentic
	}
	return ts, nil
}

// Timestamp is a TAI64N timestamp as sent in a handshake initiation: the
// initiator's wall clock, big-endian, so byte order is time order.
type Timestamp [sizeTimestamp]byte

// After reports whether t is later than u.
func (t Timestamp) After(u Timestamp) bool { return bytes.Compare(t[:], u[:]) > 0 }

// Time converts t to a time.Time.
func (t Timestamp) Time() time.Time {
	secs := binary.BigEndian.Uint64(t[:8]) - tai64nBase
	return time.Unix(int64(secs), int64(binary.BigEndian.Uint32(t[8:])))
}

// IsInitiation reports whether msg has the type and size of a handshake
// initiation. It checks nothing else.
func IsInitiation(msg []byte) bool {
	return len(msg) == sizeInitiation && binary.LittleEndian.Uint32(msg) == msgInitiation
}

// CheckMAC1 reports whether msg is a handshake initiation addressed to
// this key: the right type and size, and a valid mac1 (one keyed BLAKE2s,
// no allocation; safe for concurrent use). It is the check a responder
// makes before it answers anything, a cookie reply included.
func (r *InitiationReader) CheckMAC1(msg []byte) bool {
	return IsInitiation(msg) && r.checkMAC1(msg)
}

// checkMAC1 reports whether msg (an initiation) carries a valid mac1:
// keyed BLAKE2s-128 of everything before it.
func (r *InitiationReader) checkMAC1(msg []byte) bool {
	s := r.macs.Get().(*mac1Scratch)
	copy(s.in[:], msg[:initOffMAC1]) // hash a copy so that msg does not escape
	s.h.Reset()
	s.h.Write(s.in[:])
	s.h.Sum(s.sum[:0])
	ok := subtle.ConstantTimeCompare(s.sum[:], msg[initOffMAC1:initOffMAC2]) == 1
	r.macs.Put(s)
	return ok
}

// --- Noise symmetric state, with BLAKE2s on stack buffers (no hash.Hash,
// which would allocate).

// noiseMixHash sets h = HASH(h || data), for data of at most 64 bytes.
func noiseMixHash(h *[32]byte, data []byte) {
	var buf [32 + 64]byte
	copy(buf[:], h[:])
	n := copy(buf[32:], data)
	*h = blake2s.Sum256(buf[:32+n])
}

// noiseHMAC sets out = HMAC-BLAKE2s(key, a || b), for len(a)+len(b) <= 64.
func noiseHMAC(out, key *[32]byte, a, b []byte) {
	var buf [blake2s.BlockSize + 64]byte
	for i := range blake2s.BlockSize {
		buf[i] = 0x36
		if i < len(key) {
			buf[i] ^= key[i]
		}
	}
	n := copy(buf[blake2s.BlockSize:], a)
	n += copy(buf[blake2s.BlockSize+n:], b)
	inner := blake2s.Sum256(buf[:blake2s.BlockSize+n])
	for i := range blake2s.BlockSize {
		buf[i] = 0x5c
		if i < len(key) {
			buf[i] ^= key[i]
		}
	}
	copy(buf[blake2s.BlockSize:], inner[:])
	*out = blake2s.Sum256(buf[:blake2s.BlockSize+len(inner)])
	clear(buf[:])
}

// noiseKDF1 sets ck to the first output of KDF(ck, input).
func noiseKDF1(ck *[32]byte, input []byte) {
	var t0 [32]byte
	noiseHMAC(&t0, ck, input, nil)
	noiseHMAC(ck, &t0, []byte{1}, nil)
	clear(t0[:])
}

// noiseKDF2 sets ck and key to the two outputs of KDF(ck, input).
func noiseKDF2(ck, key *[32]byte, input []byte) {
	var t0, t1 [32]byte
	noiseHMAC(&t0, ck, input, nil)
	noiseHMAC(&t1, &t0, []byte{1}, nil)
	noiseHMAC(key, &t0, t1[:], []byte{2})
	*ck = t1
	clear(t0[:])
}

func isZero32(b *[32]byte) bool {
	var acc byte
	for _, c := range b {
		acc |= c
	}
	return subtle.ConstantTimeByteEq(acc, 0) == 1
}
