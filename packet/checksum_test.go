package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// refSum is RFC 1071's loop over 16-bit words, the reference for Sum.
func refSum(b []byte, initial uint16) uint16 {
	sum := uint32(initial)
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

func TestSum(t *testing.T) {
	// RFC 1071 section 3's example: the sum of 0001 f203 f4f5 f6f7 is ddf2.
	if got := Sum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0); got != 0xddf2 {
		t.Errorf("RFC 1071 example: %#04x, want 0xddf2", got)
	}
	if Sum(nil, 0) != 0 || Sum(nil, 0x1234) != 0x1234 || Checksum(nil) != 0xffff {
		t.Error("empty input")
	}
	if got := Sum([]byte{0xff, 0xff, 0xff, 0xff}, 0xffff); got != 0xffff {
		t.Errorf("all ones: %#04x", got)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 300 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		init := uint16(rng.Uint32())
		if got, want := Sum(b, init), refSum(b, init); got != want {
			t.Fatalf("len %d: Sum %#04x, reference %#04x", n, got, want)
		}
	}
	big := make([]byte, 65535)
	for i := range big {
		big[i] = 0xff
	}
	if got, want := Sum(big, 0xffff), refSum(big, 0xffff); got != want {
		t.Errorf("64 KiB of ones: Sum %#04x, reference %#04x", got, want)
	}
}

// A header checksummed by Checksum verifies: it sums to 0xffff.
func TestChecksumVerifies(t *testing.T) {
	p := ip4(6, ProtoUDP, "198.51.100.1", "203.0.113.9", nil)
	if Sum(p[:24], 0) != 0xffff {
		t.Errorf("header % x does not verify", p[:24])
	}
	p[15]++
	if Sum(p[:24], 0) == 0xffff {
		t.Error("a changed header still verifies")
	}
}

func TestUpdateChecksum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, 20)
	for range 10000 {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if rng.IntN(8) == 0 {
			clear(b[:6]) // sums near zero, where RFC 1141's update went wrong
		}
		b[10], b[11] = 0, 0
		binary.BigEndian.PutUint16(b[10:], Checksum(b))
		i := 2 * rng.IntN(10)
		if i == 10 {
			continue
		}
		old := binary.BigEndian.Uint16(b[i:])
		neu := uint16(rng.Uint32())
		binary.BigEndian.PutUint16(b[i:], neu)
		got := UpdateChecksum(binary.BigEndian.Uint16(b[10:]), old, neu)
		binary.BigEndian.PutUint16(b[10:], got)
		if Sum(b, 0) != 0xffff {
			t.Fatalf("word %d %#04x→%#04x: updated checksum %#04x does not verify % x", i, old, neu, got, b)
		}
	}
}

func TestPseudoHeaderSum(t *testing.T) {
	src, dst := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("fe80::2")
	var ph [40]byte // RFC 8200 section 8.1
	s, d := src.As16(), dst.As16()
	copy(ph[:], s[:])
	copy(ph[16:], d[:])
	binary.BigEndian.PutUint32(ph[32:], 1234)
	ph[39] = ProtoICMPv6
	if got, want := PseudoHeaderSum(ProtoICMPv6, src, dst, 1234), refSum(ph[:], 0); got != want {
		t.Errorf("IPv6: %#04x, want %#04x", got, want)
	}
	src4, dst4 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.200")
	var ph4 [12]byte // RFC 768
	s4, d4 := src4.As4(), dst4.As4()
	copy(ph4[:], s4[:])
	copy(ph4[4:], d4[:])
	ph4[9] = ProtoUDP
	binary.BigEndian.PutUint16(ph4[10:], 999)
	if got, want := PseudoHeaderSum(ProtoUDP, src4, dst4, 999), refSum(ph4[:], 0); got != want {
		t.Errorf("IPv4: %#04x, want %#04x", got, want)
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	p := make([]byte, 1500)
	for i := range p {
		p[i] = byte(i)
	}
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		Checksum(p)
	}
}

func BenchmarkUpdateChecksum(b *testing.B) {
	b.ReportAllocs()
	var c uint16
	for i := 0; b.Loop(); i++ {
		c = UpdateChecksum(c, uint16(i), uint16(i>>3))
	}
	_ = c
}
