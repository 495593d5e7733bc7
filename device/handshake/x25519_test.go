package handshake

import (
	"bytes"
	"encoding/hex"
	"testing"

	"golang.org/x/crypto/curve25519"
)

func hex32(t testing.TB, s string) (b [32]byte) {
	t.Helper()
	if n, err := hex.Decode(b[:], []byte(s)); err != nil || n != 32 {
		t.Fatalf("bad test vector %q: %v", s, err)
	}
	return b
}

// TestX25519RFC7748 checks dh against the test vectors of RFC 7748
// section 5.2 (two single multiplications, with unclamped scalars and a u
// with its top bit set) and section 6.1 (both sides of a Diffie-Hellman).
func TestX25519RFC7748(t *testing.T) {
	for _, v := range []struct{ name, scalar, u, out string }{
		{"5.2 first",
			"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
			"e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
			"c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
		{"5.2 second",
			"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
			"e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
			"95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
		{"6.1 Alice's public key",
			"77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
			"0900000000000000000000000000000000000000000000000000000000000000",
			"8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"},
		{"6.1 Bob's public key",
			"5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
			"0900000000000000000000000000000000000000000000000000000000000000",
			"de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"},
		{"6.1 Alice's shared secret",
			"77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
			"de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
			"4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"},
		{"6.1 Bob's shared secret",
			"5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
			"8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
			"4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"},
	} {
		scalar, u, want := hex32(t, v.scalar), hex32(t, v.u), hex32(t, v.out)
		var got [32]byte
		if !newX25519Static(&scalar).dh(&got, &u) || got != want {
			t.Errorf("%s: X25519 = %x, want %x", v.name, got, want)
		}
	}
	alice := hex32(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
	if got, want := newX25519Static(&alice).public(), hex32(t, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"); got != want {
		t.Errorf("public = %x, want %x", got, want)
	}
}

// TestX25519RFC7748Iterated runs the iterated test of RFC 7748 section 5.2
// (k = X25519(k, u), u = the old k, from k = u = 9) to 1,000 iterations
// (-short: 1).
func TestX25519RFC7748Iterated(t *testing.T) {
	k := [32]byte{9}
	u := k
	after := map[int]string{
		1:    "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079",
		1000: "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51",
	}
	n := 1000
	if testing.Short() {
		n = 1
	}
	for i := 1; i <= n; i++ {
		var next [32]byte
		if !newX25519Static(&k).dh(&next, &u) {
			t.Fatalf("iteration %d: zero result", i)
		}
		u, k = k, next
		if want, ok := after[i]; ok && k != hex32(t, want) {
			t.Fatalf("after %d iterations: %x, want %s", i, k, want)
		}
	}
}

// TestX25519LowOrder: every low-order point gives false and a cleared
// output, never a secret.
func TestX25519LowOrder(t *testing.T) {
	s := newX25519Static((*[32]byte)(&fuzzResponderKey))
	for _, p := range lowOrderPoints(t) {
		out := [32]byte{1, 2, 3}
		if s.dh(&out, (*[32]byte)(&p)) || out != ([32]byte{}) {
			t.Errorf("point %x: dh = %x, want false and zero", p, out)
		}
	}
}

// FuzzX25519 cross-checks dh against golang.org/x/crypto/curve25519.X25519
// (two independent entry points into the standard library's curve code,
// one of them the way wireguard-go calls it) for any scalar and point.
func FuzzX25519(f *testing.F) {
	f.Add(make([]byte, 32), make([]byte, 32))
	f.Add(bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0xff}, 32)) // u ≥ p, top bit set
	f.Add(fuzzResponderKey[:], fuzzInitiatorKey[:])
	nine := [32]byte{9}
	f.Add(fuzzInitiatorKey[:], nine[:])
	f.Fuzz(func(t *testing.T, scalar, point []byte) {
		if len(scalar) != 32 || len(point) != 32 {
			return
		}
		var got [32]byte
		ok := newX25519Static((*[32]byte)(scalar)).dh(&got, (*[32]byte)(point))
		want, err := curve25519.X25519(scalar, point)
		if ok != (err == nil) {
			t.Fatalf("dh ok = %v, x/crypto err = %v", ok, err)
		}
		if ok && !bytes.Equal(got[:], want) {
			t.Fatalf("dh = %x, x/crypto = %x", got, want)
		}
		if !ok && got != ([32]byte{}) {
			t.Fatalf("refused dh left %x", got)
		}
	})
}

// BenchmarkX25519 compares one dh with the cached key against x/crypto's
// X25519, which derives the key's public key again on every call.
func BenchmarkX25519(b *testing.B) {
	point := fuzzInitiatorKey.Public()
	b.Run("static", func(b *testing.B) {
		s := newX25519Static((*[32]byte)(&fuzzResponderKey))
		var out [32]byte
		for b.Loop() {
			s.dh(&out, (*[32]byte)(&point))
		}
	})
	b.Run("x-crypto", func(b *testing.B) {
		for b.Loop() {
			curve25519.X25519(fuzzResponderKey[:], point[:])
		}
	})
}
