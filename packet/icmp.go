package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// ICMP echo message types.
const (
	ICMPv4EchoReply   = 0
	ICMPv4EchoRequest = 8
	ICMPv6EchoRequest = 128
	ICMPv6EchoReply   = 129

	EchoHeaderLen = 8  // type, code, checksum, identifier, sequence number
	EchoTTL       = 64 // TTL or hop limit of the packets AppendEcho builds
)

// Echo is an ICMP or ICMPv6 echo request or reply.
type Echo struct {
	Reply   bool // an echo reply, not a request
	Code    uint8
	ID, Seq uint16
	// Data is the echoed payload; from ParseEcho it aliases the packet.
	Data []byte
	// ChecksumOK reports from ParseEcho that the ICMP checksum is right
	// (for ICMPv6, with the pseudo-header). AppendEcho ignores it.
	ChecksumOK bool
}

// ParseEcho recognizes in a packet Parse accepted an ICMP echo request or
// reply: an unfragmented IPv4 packet of protocol 1, or an IPv6 packet whose
// next header is ICMPv6 (58), carrying a message of echo type at least 8
// bytes long. IPv6 packets with extension headers are not recognized. It
// does not reject a wrong checksum: it reports it in ChecksumOK.
func ParseEcho(h Header) (e Echo, ok bool) {
	icmp := h.Payload
	if len(icmp) < EchoHeaderLen {
		return e, false
	}
	switch {
	case h.Version == 4 && h.Proto == ProtoICMPv4 && !h.Fragment:
		switch icmp[0] {
		case ICMPv4EchoRequest:
		case ICMPv4EchoReply:
			e.Reply = true
		default:
			return e, false
		}
		e.ChecksumOK = Sum(icmp, 0) == 0xffff
	case h.Version == 6 && h.Proto == ProtoICMPv6:
		switch icmp[0] {
		case ICMPv6EchoRequest:
		case ICMPv6EchoReply:
			e.Reply = true
		default:
			return e, false
		}
		e.ChecksumOK = Sum(icmp, PseudoHeaderSum(ProtoICMPv6, h.Src, h.Dst, len(icmp))) == 0xffff
	default:
		return e, false
	}
	e.Code = icmp[1]
	e.ID = binary.BigEndian.Uint16(icmp[4:6])
	e.Seq = binary.BigEndian.Uint16(icmp[6:8])
	e.Data = icmp[EchoHeaderLen:]
	return e, true
}

// AppendEcho appends to b an IP packet from src to dst carrying e as an
// ICMP (IPv4) or ICMPv6 (IPv6) echo message, with TTL or hop limit
// EchoTTL and every checksum set. The IPv4 header has no options, a zero
// identification and no flags. src and dst must be valid addresses of one
// family, and e.Data short enough for the packet to fit the IP length
// field; anything else is a programmer error and panics.
func AppendEcho(b []byte, src, dst netip.Addr, e Echo) []byte {
	if !src.IsValid() || src.Is4() != dst.Is4() || !dst.IsValid() {
		panic(fmt.Sprintf("packet: echo from %v to %v", src, dst))
	}
	icmpLen := EchoHeaderLen + len(e.Data)
	var typ uint8
	if src.Is4() {
		if IPv4MinHeaderLen+icmpLen > 0xffff {
			panic(fmt.Sprintf("packet: echo of %d bytes is too long for IPv4", len(e.Data)))
		}
		typ = ICMPv4EchoRequest
		if e.Reply {
			typ = ICMPv4EchoReply
		}
		start := len(b)
		total := IPv4MinHeaderLen + icmpLen
		b = append(b, 0x45, 0, byte(total>>8), byte(total), 0, 0, 0, 0, EchoTTL, ProtoICMPv4, 0, 0)
		s4, d4 := src.As4(), dst.As4()
		b = append(b, s4[:]...)
		b = append(b, d4[:]...)
		binary.BigEndian.PutUint16(b[start+10:], Checksum(b[start:]))
		i := len(b)
		b = appendEchoMessage(b, typ, e)
		binary.BigEndian.PutUint16(b[i+2:], Checksum(b[i:]))
		return b
	}
	if icmpLen > 0xffff {
		panic(fmt.Sprintf("packet: echo of %d bytes is too long for IPv6", len(e.Data)))
	}
	typ = ICMPv6EchoRequest
	if e.Reply {
		typ = ICMPv6EchoReply
	}
	s16, d16 := src.As16(), dst.As16()
	b = append(b, 0x60, 0, 0, 0, byte(icmpLen>>8), byte(icmpLen), ProtoICMPv6, EchoTTL)
	b = append(b, s16[:]...)
	b = append(b, d16[:]...)
	i := len(b)
	b = appendEchoMessage(b, typ, e)
	binary.BigEndian.PutUint16(b[i+2:], ^Sum(b[i:], PseudoHeaderSum(ProtoICMPv6, src, dst, icmpLen)))
	return b
}

// appendEchoMessage appends the ICMP message with a zero checksum.
func appendEchoMessage(b []byte, typ uint8, e Echo) []byte {
	b = append(b, typ, e.Code, 0, 0, byte(e.ID>>8), byte(e.ID), byte(e.Seq>>8), byte(e.Seq))
	return append(b, e.Data...)
}
