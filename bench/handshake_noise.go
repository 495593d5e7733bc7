package bench

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"hash"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/anyguard/anyguard/wgkey"
)

// The initiator side of WireGuard's Noise_IKpsk2 handshake, the mirror image
// of device/handshake (which reads initiations), after wireguard-go's
// device/noise-protocol.go and cookie.go. It exists to generate a handshake
// storm cheaply: each initiator keeps ONE ephemeral key for all its attempts,
// so both of its Diffie-Hellman results are computed once and an initiation
// costs a 12-byte seal and two keyed hashes. A responder cannot tell (it
// keeps no record of ephemerals) and does its full work for every message;
// a real client must never do this, since its sessions would share keys.

// Message layouts (wireguard-go device/noise-protocol.go).
const (
	hsTypeInitiation = 1
	hsTypeResponse   = 2
	hsTypeCookie     = 3
	hsSizeInitiation = 148
	hsSizeResponse   = 92
	hsSizeCookie     = 64

	hsInitMAC1 = 116 // mac1 offset in an initiation; mac2 at 132
	hsInitMAC2 = 132
)

var (
	hsInitialChainKey = blake2s.Sum256([]byte("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"))
	hsInitialHash     = blake2s.Sum256(append(hsInitialChainKey[:], "WireGuard v1 zx2c4 Jason@zx2c4.com"...))
)

// Errors of response and cookie processing.
var (
	errHSMessage  = errors.New("handshake: wrong message type or size")
	errHSReceiver = errors.New("handshake: receiver index is not ours")
	errHSDecrypt  = errors.New("handshake: does not decrypt")
)

// hsResponder is what an initiator knows of the responder: its public key
// and the keys derived from it.
type hsResponder struct {
	public    wgkey.Key
	hash0     [32]byte // HASH(initial hash || responder public)
	mac1Key   [32]byte // HASH("mac1----" || public)
	cookieKey [32]byte // HASH("cookie--" || public)
}

func newHSResponder(public wgkey.Key) *hsResponder {
	r := &hsResponder{public: public}
	r.hash0 = hsInitialHash
	hsMixHash(&r.hash0, public[:])
	r.mac1Key = blake2s.Sum256(append([]byte("mac1----"), public[:]...))
	r.cookieKey = blake2s.Sum256(append([]byte("cookie--"), public[:]...))
	return r
}

// hsInitiator is one client's initiator with everything that does not
// change between its attempts precomputed.
type hsInitiator struct {
	resp     *hsResponder
	static   *ecdh.PrivateKey
	eph      *ecdh.PrivateKey
	prefix   [32 + 48]byte // ephemeral public || sealed static
	tsAEAD   cipher.AEAD   // seals the timestamp
	ckAfter  [32]byte      // chain key after the static-static mix
	hashTS   [32]byte      // transcript hash the timestamp is sealed under
	lastTime time.Time     // the last timestamp sent; each must be later
}

// newHSInitiator precomputes the initiations of the client with private key
// priv toward r (two X25519 and one key generation).
func newHSInitiator(r *hsResponder, priv wgkey.Key) (*hsInitiator, error) {
	x := ecdh.X25519()
	static, err := x.NewPrivateKey(priv[:])
	if err != nil {
		return nil, err
	}
	eph, err := x.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	rpub, err := x.NewPublicKey(r.public[:])
	if err != nil {
		return nil, err
	}
	in := &hsInitiator{resp: r, static: static, eph: eph}
	ck, h := hsInitialChainKey, r.hash0
	epub := eph.PublicKey().Bytes()
	copy(in.prefix[:32], epub)
	hsMixHash(&h, epub)
	hsKDF1(&ck, epub)

	es, err := eph.ECDH(rpub)
	if err != nil {
		return nil, err
	}
	var key [32]byte
	hsKDF2(&ck, &key, es)
	aead, _ := chacha20poly1305.New(key[:])
	var nonce [chacha20poly1305.NonceSize]byte
	aead.Seal(in.prefix[32:32], nonce[:], static.PublicKey().Bytes(), h[:])
	hsMixHash(&h, in.prefix[32:])

	ss, err := static.ECDH(rpub)
	if err != nil {
		return nil, err
	}
	hsKDF2(&ck, &key, ss)
	in.tsAEAD, _ = chacha20poly1305.New(key[:])
	in.ckAfter, in.hashTS = ck, h
	return in, nil
}

// initiation writes a handshake initiation with sender index sender into
// msg, with mac2 made from cookie when cookie is not nil. It returns the
// transcript hash after the message, which verifyResponse needs. The
// timestamp is now, or just after the previous one if the clock has not
// moved on: the responder refuses one that is not later.
func (in *hsInitiator) initiation(msg *[hsSizeInitiation]byte, sender uint32, now time.Time, cookie *[16]byte) [32]byte {
	if !now.After(in.lastTime) {
		now = in.lastTime.Add(time.Nanosecond)
	}
	in.lastTime = now
	var ts [12]byte
	binary.BigEndian.PutUint64(ts[:], 0x400000000000000a+uint64(now.Unix()))
	binary.BigEndian.PutUint32(ts[8:], uint32(now.Nanosecond()))

	binary.LittleEndian.PutUint32(msg[0:], hsTypeInitiation)
	binary.LittleEndian.PutUint32(msg[4:], sender)
	copy(msg[8:], in.prefix[:])
	var nonce [chacha20poly1305.NonceSize]byte
	sealed := in.tsAEAD.Seal(msg[88:88], nonce[:], ts[:], in.hashTS[:])
	h := in.hashTS
	hsMixHash(&h, sealed)
	hsMAC(msg[hsInitMAC1:hsInitMAC2], in.resp.mac1Key[:], msg[:hsInitMAC1])
	if cookie != nil {
		hsMAC(msg[hsInitMAC2:], cookie[:], msg[:hsInitMAC2])
	} else {
		clear(msg[hsInitMAC2:])
	}
	return h
}

// verifyResponse completes the handshake from the initiator's side: it
// checks that msg is a response to the initiation with index sender and
// transcript hash h, and that its empty payload decrypts (which proves the
// responder holds the private key and derived the same session). Two
// X25519: the storm does not call it, tests do.
func (in *hsInitiator) verifyResponse(msg []byte, sender uint32, h [32]byte) error {
	if len(msg) != hsSizeResponse || binary.LittleEndian.Uint32(msg) != hsTypeResponse {
		return errHSMessage
	}
	if binary.LittleEndian.Uint32(msg[8:]) != sender {
		return errHSReceiver
	}
	rEph, err := ecdh.X25519().NewPublicKey(msg[12:44])
	if err != nil {
		return err
	}
	ck := in.ckAfter
	hsMixHash(&h, msg[12:44])
	hsKDF1(&ck, msg[12:44])
	ee, err := in.eph.ECDH(rEph)
	if err != nil {
		return err
	}
	hsKDF1(&ck, ee)
	se, err := in.static.ECDH(rEph)
	if err != nil {
		return err
	}
	hsKDF1(&ck, se)
	var tau, key, psk [32]byte
	hsKDF3(&ck, &tau, &key, psk[:])
	hsMixHash(&h, tau[:])
	aead, _ := chacha20poly1305.New(key[:])
	var nonce [chacha20poly1305.NonceSize]byte
	if _, err := aead.Open(nil, nonce[:], msg[44:60], h[:]); err != nil {
		return errHSDecrypt
	}
	return nil
}

// openCookie decrypts a cookie reply to the initiation whose mac1 was
// mac1, giving the cookie that keys the mac2 of the next initiations.
func (r *hsResponder) openCookie(msg []byte, mac1 []byte) ([16]byte, error) {
	var cookie [16]byte
	if len(msg) != hsSizeCookie || binary.LittleEndian.Uint32(msg) != hsTypeCookie {
		return cookie, errHSMessage
	}
	aead, _ := chacha20poly1305.NewX(r.cookieKey[:])
	if _, err := aead.Open(cookie[:0], msg[8:32], msg[32:64], mac1); err != nil {
		return cookie, errHSDecrypt
	}
	return cookie, nil
}

// hsMAC sets out (16 bytes) to keyed BLAKE2s-128 of data.
func hsMAC(out, key, data []byte) {
	m, _ := blake2s.New128(key)
	m.Write(data)
	m.Sum(out[:0])
}

func hsMixHash(h *[32]byte, data []byte) {
	d, _ := blake2s.New256(nil)
	d.Write(h[:])
	d.Write(data)
	d.Sum(h[:0])
}

func hsHMAC(out *[32]byte, key []byte, in ...[]byte) {
	m := hmac.New(func() hash.Hash { h, _ := blake2s.New256(nil); return h }, key)
	for _, b := range in {
		m.Write(b)
	}
	m.Sum(out[:0])
}

// hsKDF1 sets ck to the first output of the Noise KDF.
func hsKDF1(ck *[32]byte, input []byte) {
	var t0 [32]byte
	hsHMAC(&t0, ck[:], input)
	hsHMAC(ck, t0[:], []byte{1})
}

// hsKDF2 sets ck and key to the two outputs of the Noise KDF.
func hsKDF2(ck, key *[32]byte, input []byte) {
	var t0, t1 [32]byte
	hsHMAC(&t0, ck[:], input)
	hsHMAC(&t1, t0[:], []byte{1})
	hsHMAC(key, t0[:], t1[:], []byte{2})
	*ck = t1
}

// hsKDF3 sets ck, t2 and t3 to the three outputs of the Noise KDF.
func hsKDF3(ck, t2, t3 *[32]byte, input []byte) {
	var t0, t1 [32]byte
	hsHMAC(&t0, ck[:], input)
	hsHMAC(&t1, t0[:], []byte{1})
	hsHMAC(t2, t0[:], t1[:], []byte{2})
	hsHMAC(t3, t0[:], t2[:], []byte{3})
	*ck = t1
}
