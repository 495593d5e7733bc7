package packet

import (
	"encoding/binary"
	"net/netip"
)

// Sum returns the 16-bit ones' complement sum (RFC 1071) of b added to
// initial, folded but not complemented: a received message whose checksum
// field is right sums to 0xffff. An odd trailing byte counts as the high
// byte of a last word.
func Sum(b []byte, initial uint16) uint16 {
	// 32-bit words summed in 64 bits, folded at the end: 2^16 ≡ 1 modulo
	// 0xffff, so this equals the sum of 16-bit words. The accumulator cannot
	// overflow for any b shorter than 2^33 bytes.
	s := uint64(initial)
	for len(b) >= 8 {
		s += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	if len(b) >= 4 {
		s += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return fold(s)
}

func fold(s uint64) uint16 {
	s = s&0xffffffff + s>>32
	s = s&0xffffffff + s>>32
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return uint16(s)
}

// Checksum returns the Internet checksum of b: the complement of its
// ones' complement sum, the value to store in a checksum field that was
// zero while summing (the IPv4 header, ICMPv4).
func Checksum(b []byte) uint16 { return ^Sum(b, 0) }

// PseudoHeaderSum returns the ones' complement sum of the pseudo-header
// that the checksums of TCP, UDP and ICMPv6 cover (RFC 768/793 for IPv4,
// RFC 8200 section 8.1 for IPv6), for an upper-layer message of length
// bytes with protocol proto; pass it as Sum's initial value. src and dst
// must be of one family (an IPv4-mapped IPv6 address counts as IPv6).
func PseudoHeaderSum(proto uint8, src, dst netip.Addr, length int) uint16 {
	var s uint64
	if src.Is4() {
		s4, d4 := src.As4(), dst.As4()
		s = uint64(binary.BigEndian.Uint32(s4[:])) + uint64(binary.BigEndian.Uint32(d4[:]))
	} else {
		s16, d16 := src.As16(), dst.As16()
		for i := 0; i < 16; i += 4 {
			s += uint64(binary.BigEndian.Uint32(s16[i:])) + uint64(binary.BigEndian.Uint32(d16[i:]))
		}
	}
	// IPv4: zero, protocol, 16-bit length; IPv6: 32-bit length, zeros,
	// next header. Both sum to length + proto.
	s += uint64(uint32(length)) + uint64(proto)
	return fold(s)
}

// UpdateChecksum returns checksum field cksum after a 16-bit word of the
// data it covers changed from old to new, without summing the data again
// (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
func UpdateChecksum(cksum, old, new uint16) uint16 {
	return ^fold(uint64(^cksum) + uint64(^old) + uint64(new))
}
