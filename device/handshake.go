package device

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
	"math/bits"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/anyguard/anyguard/internal/keys"
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

// Noise parameters of WireGuard (whitepaper section 5.4).
const (
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
	private   [32]byte // clamped responder private key
	public    keys.Key
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
func NewInitiationReader(priv keys.Key) *InitiationReader {
	r := &InitiationReader{private: priv, public: priv.Public()}
	clampScalar(&r.private)
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
func (r *InitiationReader) PublicKey() keys.Key { return r.public }

// Static returns the initiator's static public key named by the handshake
// initiation msg. Errors: ErrNotInitiation (wrong type or size), ErrBadMAC1
// (not addressed to this key, or forged), ErrDecrypt (AEAD failure). The
// key is not authenticated (see InitiationReader).
//
// A message with a valid mac1 costs one X25519 (about 60 µs of CPU); one
// with a bad mac1 costs one keyed hash (about 0.5 µs).
func (r *InitiationReader) Static(msg []byte) (keys.Key, error) {
	var in Initiation
	err := r.Read(msg, &in)
	return in.Static, err
}

// Initiation is what a responder learns from the first half of an
// initiation message; Authenticate finishes the check.
type Initiation struct {
	Sender uint32   // the initiator's session index
	Static keys.Key // the initiator's static public key, not yet authenticated

	chainKey, hash [32]byte
	timestamp      [sizeStampCT]byte // still encrypted
}

// Read fills in from the handshake initiation msg, with the errors of
// Static. in is overwritten even on error; msg is not retained.
func (r *InitiationReader) Read(msg []byte, in *Initiation) error {
	*in = Initiation{}
	if len(msg) != sizeInitiation || binary.LittleEndian.Uint32(msg) != msgInitiation {
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
	x25519(&shared, &r.private, ephemeral)
	if isZero32(&shared) {
		return ErrDecrypt
	}
	noiseKDF2(&ck, &key, shared[:])
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		panic(err) // the key is always 32 bytes
	}
	var nonce [chacha20poly1305.NonceSize]byte
	if _, err := aead.Open(in.Static[:0], nonce[:], msg[initOffStatic:initOffTimestamp], h[:]); err != nil {
		in.Static = keys.Key{}
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
func (r *InitiationReader) SharedSecret(initiator keys.Key) ([32]byte, error) {
	var out [32]byte
	x25519(&out, &r.private, (*[32]byte)(&initiator))
	if isZero32(&out) {
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

func clampScalar(k *[32]byte) {
	k[0] &= 248
	k[31] = k[31]&127 | 64
}

// --- X25519 (RFC 7748), constant time. x/crypto's curve25519 goes through
// crypto/ecdh, which allocates several objects per call; this one works on
// the stack. Field elements are five 51-bit limbs, value Σ l[i]·2^(51i)
// modulo p = 2^255 - 19; every operation leaves limbs below 2^51 + 2^15 and
// accepts limbs below 2^52.

type fieldElem [5]uint64

const mask51 = 1<<51 - 1

// x25519 sets out = scalar·point (the u-coordinate), clamping scalar.
func x25519(out, scalar, point *[32]byte) {
	k := *scalar
	clampScalar(&k)
	var x1, x2, z2, x3, z3, a, aa, b, bb, e, c, d, da, cb fieldElem
	feFromBytes(&x1, point)
	x2[0], z3[0] = 1, 1
	x3 = x1
	var swap uint64
	for i := 254; i >= 0; i-- {
		bit := uint64(k[i>>3]>>(i&7)) & 1
		swap ^= bit
		feSwap(&x2, &x3, swap)
		feSwap(&z2, &z3, swap)
		swap = bit

		feAdd(&a, &x2, &z2)
		feSquare(&aa, &a)
		feSub(&b, &x2, &z2)
		feSquare(&bb, &b)
		feSub(&e, &aa, &bb)
		feAdd(&c, &x3, &z3)
		feSub(&d, &x3, &z3)
		feMul(&da, &d, &a)
		feMul(&cb, &c, &b)
		feAdd(&x3, &da, &cb)
		feSquare(&x3, &x3)
		feSub(&z3, &da, &cb)
		feSquare(&z3, &z3)
		feMul(&z3, &z3, &x1)
		feMul(&x2, &aa, &bb)
		feMul121665(&a, &e)
		feAdd(&a, &a, &aa)
		feMul(&z2, &e, &a)
	}
	feSwap(&x2, &x3, swap)
	feSwap(&z2, &z3, swap)
	feInvert(&z2, &z2)
	feMul(&x2, &x2, &z2)
	feToBytes(out, &x2)
	clear(k[:])
}

// feFromBytes decodes a little-endian u-coordinate, ignoring bit 255.
func feFromBytes(v *fieldElem, b *[32]byte) {
	x0 := binary.LittleEndian.Uint64(b[0:])
	x1 := binary.LittleEndian.Uint64(b[8:])
	x2 := binary.LittleEndian.Uint64(b[16:])
	x3 := binary.LittleEndian.Uint64(b[24:])
	v[0] = x0 & mask51
	v[1] = (x0>>51 | x1<<13) & mask51
	v[2] = (x1>>38 | x2<<26) & mask51
	v[3] = (x2>>25 | x3<<39) & mask51
	v[4] = x3 >> 12 & mask51
}

// feToBytes encodes v fully reduced modulo p.
func feToBytes(b *[32]byte, v *fieldElem) {
	var l fieldElem
	feCarry(&l, v[0], v[1], v[2], v[3], v[4])
	// l < 2p: subtract p once if l + 19 reaches 2^255.
	c := (l[0] + 19) >> 51
	c = (l[1] + c) >> 51
	c = (l[2] + c) >> 51
	c = (l[3] + c) >> 51
	c = (l[4] + c) >> 51
	l[0] += 19 * c
	l[1] += l[0] >> 51
	l[0] &= mask51
	l[2] += l[1] >> 51
	l[1] &= mask51
	l[3] += l[2] >> 51
	l[2] &= mask51
	l[4] += l[3] >> 51
	l[3] &= mask51
	l[4] &= mask51 // drops the 2^255
	binary.LittleEndian.PutUint64(b[0:], l[0]|l[1]<<51)
	binary.LittleEndian.PutUint64(b[8:], l[1]>>13|l[2]<<38)
	binary.LittleEndian.PutUint64(b[16:], l[2]>>26|l[3]<<25)
	binary.LittleEndian.PutUint64(b[24:], l[3]>>39|l[4]<<12)
}

// feCarry sets v from limbs l0..l4 (held in registers by the callers),
// bringing every limb below 2^51 + 2^15 and keeping the value mod p.
func feCarry(v *fieldElem, l0, l1, l2, l3, l4 uint64) {
	v[0] = l0&mask51 + 19*(l4>>51)
	v[1] = l1&mask51 + l0>>51
	v[2] = l2&mask51 + l1>>51
	v[3] = l3&mask51 + l2>>51
	v[4] = l4&mask51 + l3>>51
}

func feAdd(v, a, b *fieldElem) {
	feCarry(v, a[0]+b[0], a[1]+b[1], a[2]+b[2], a[3]+b[3], a[4]+b[4])
}

// feSub sets v = a - b, adding 2p first so that no limb goes negative.
func feSub(v, a, b *fieldElem) {
	const p0x2, pix2 = 2*mask51 - 36, 2 * mask51 // limbs of 2p
	feCarry(v, a[0]+p0x2-b[0], a[1]+pix2-b[1], a[2]+pix2-b[2], a[3]+pix2-b[3], a[4]+pix2-b[4])
}

// feSwap swaps a and b if bit is 1, in constant time.
func feSwap(a, b *fieldElem, bit uint64) {
	m := -bit
	for i := range a {
		t := m & (a[i] ^ b[i])
		a[i] ^= t
		b[i] ^= t
	}
}

// wide128 is an unsigned 128-bit accumulator.
type wide128 struct{ lo, hi uint64 }

func wideMul(a, b uint64) wide128 {
	hi, lo := bits.Mul64(a, b)
	return wide128{lo, hi}
}

func wideMulAdd(v wide128, a, b uint64) wide128 {
	hi, lo := bits.Mul64(a, b)
	lo, c := bits.Add64(lo, v.lo, 0)
	hi, _ = bits.Add64(hi, v.hi, c)
	return wide128{lo, hi}
}

func wideShr51(v wide128) uint64 { return v.hi<<13 | v.lo>>51 }

// mul19 returns 19·x with shifts and adds.
func mul19(x uint64) uint64 { return x + (x+x<<3)<<1 }

// feMul sets v = a·b. 2^255 = 19 mod p folds the high products back. Each
// wide limb stays below 2^115, and the reduction is written out in place
// (not in a helper) so that the compiler keeps it in registers.
func feMul(v, a, b *fieldElem) {
	a0, a1, a2, a3, a4 := a[0], a[1], a[2], a[3], a[4]
	b0, b1, b2, b3, b4 := b[0], b[1], b[2], b[3], b[4]

	r0 := wideMul(a0, b0)
	r0 = wideMulAdd(r0, mul19(a1), b4)
	r0 = wideMulAdd(r0, mul19(a2), b3)
	r0 = wideMulAdd(r0, mul19(a3), b2)
	r0 = wideMulAdd(r0, mul19(a4), b1)

	r1 := wideMul(a0, b1)
	r1 = wideMulAdd(r1, a1, b0)
	r1 = wideMulAdd(r1, mul19(a2), b4)
	r1 = wideMulAdd(r1, mul19(a3), b3)
	r1 = wideMulAdd(r1, mul19(a4), b2)

	r2 := wideMul(a0, b2)
	r2 = wideMulAdd(r2, a1, b1)
	r2 = wideMulAdd(r2, a2, b0)
	r2 = wideMulAdd(r2, mul19(a3), b4)
	r2 = wideMulAdd(r2, mul19(a4), b3)

	r3 := wideMul(a0, b3)
	r3 = wideMulAdd(r3, a1, b2)
	r3 = wideMulAdd(r3, a2, b1)
	r3 = wideMulAdd(r3, a3, b0)
	r3 = wideMulAdd(r3, mul19(a4), b4)

	r4 := wideMul(a0, b4)
	r4 = wideMulAdd(r4, a1, b3)
	r4 = wideMulAdd(r4, a2, b2)
	r4 = wideMulAdd(r4, a3, b1)
	r4 = wideMulAdd(r4, a4, b0)

	feCarry(v, r0.lo&mask51+mul19(wideShr51(r4)), r1.lo&mask51+wideShr51(r0),
		r2.lo&mask51+wideShr51(r1), r3.lo&mask51+wideShr51(r2), r4.lo&mask51+wideShr51(r3))
}

// feSquare sets v = a², sharing the symmetric products of feMul.
func feSquare(v, a *fieldElem) {
	a0, a1, a2, a3, a4 := a[0], a[1], a[2], a[3], a[4]

	r0 := wideMul(a0, a0)
	r0 = wideMulAdd(r0, 2*a1, mul19(a4))
	r0 = wideMulAdd(r0, 2*a2, mul19(a3))

	r1 := wideMul(2*a0, a1)
	r1 = wideMulAdd(r1, 2*a2, mul19(a4))
	r1 = wideMulAdd(r1, a3, mul19(a3))

	r2 := wideMul(2*a0, a2)
	r2 = wideMulAdd(r2, a1, a1)
	r2 = wideMulAdd(r2, 2*a3, mul19(a4))

	r3 := wideMul(2*a0, a3)
	r3 = wideMulAdd(r3, 2*a1, a2)
	r3 = wideMulAdd(r3, a4, mul19(a4))

	r4 := wideMul(2*a0, a4)
	r4 = wideMulAdd(r4, 2*a1, a3)
	r4 = wideMulAdd(r4, a2, a2)

	feCarry(v, r0.lo&mask51+mul19(wideShr51(r4)), r1.lo&mask51+wideShr51(r0),
		r2.lo&mask51+wideShr51(r1), r3.lo&mask51+wideShr51(r2), r4.lo&mask51+wideShr51(r3))
}

// feMul121665 sets v = a·121665, the curve constant (A - 2) / 4.
func feMul121665(v, a *fieldElem) {
	const k = 121665
	r0, r1, r2, r3, r4 := wideMul(a[0], k), wideMul(a[1], k), wideMul(a[2], k), wideMul(a[3], k), wideMul(a[4], k)
	feCarry(v, r0.lo&mask51+mul19(wideShr51(r4)), r1.lo&mask51+wideShr51(r0),
		r2.lo&mask51+wideShr51(r1), r3.lo&mask51+wideShr51(r2), r4.lo&mask51+wideShr51(r3))
}

// feSquareN sets v = a^(2^n), n >= 1.
func feSquareN(v, a *fieldElem, n int) {
	feSquare(v, a)
	for range n - 1 {
		feSquare(v, v)
	}
}

// feInvert sets v = z^(p-2) = 1/z (0 for z = 0), by the usual chain of 254
// squarings and 11 multiplications.
func feInvert(v, z *fieldElem) {
	// zN holds z^(2^N - 1); the comments give the exponent reached.
	var z2, z9, z11, z5, z10, z20, z50, z100, t fieldElem
	feSquare(&z2, z)      // 2
	feSquareN(&t, &z2, 2) // 8
	feMul(&z9, &t, z)     // 9
	feMul(&z11, &z9, &z2) // 11
	feSquare(&t, &z11)    // 22
	feMul(&z5, &t, &z9)   // 31 = 2^5 - 1
	feSquareN(&t, &z5, 5)
	feMul(&z10, &t, &z5) // 2^10 - 1
	feSquareN(&t, &z10, 10)
	feMul(&z20, &t, &z10) // 2^20 - 1
	feSquareN(&t, &z20, 20)
	feMul(&t, &t, &z20) // 2^40 - 1
	feSquareN(&t, &t, 10)
	feMul(&z50, &t, &z10) // 2^50 - 1
	feSquareN(&t, &z50, 50)
	feMul(&z100, &t, &z50) // 2^100 - 1
	feSquareN(&t, &z100, 100)
	feMul(&t, &t, &z100) // 2^200 - 1
	feSquareN(&t, &t, 50)
	feMul(&t, &t, &z50)  // 2^250 - 1
	feSquareN(&t, &t, 5) // 2^255 - 32
	feMul(v, &t, &z11)   // 2^255 - 21 = p - 2
}
