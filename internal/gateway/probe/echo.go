package probe

import (
	"encoding/binary"
	"net/netip"
)

// EchoRequest builds an ICMP or ICMPv6 echo request carrying the probe
// payload (the takeovers of fast recovery send them too).
func EchoRequest(src, dst netip.Addr, id, seq uint16) []byte {
	icmp := make([]byte, 8+len(probePayload))
	icmp[4], icmp[5] = byte(id>>8), byte(id)
	icmp[6], icmp[7] = byte(seq>>8), byte(seq)
	copy(icmp[8:], probePayload)
	if src.Is4() {
		icmp[0] = 8
		binary.BigEndian.PutUint16(icmp[2:], ^csum(0, icmp))
		h := make([]byte, 20, 20+len(icmp))
		h[0], h[8], h[9] = 0x45, 64, 1
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(icmp)))
		s, d := src.As4(), dst.As4()
		copy(h[12:], s[:])
		copy(h[16:], d[:])
		binary.BigEndian.PutUint16(h[10:], ^csum(0, h))
		return append(h, icmp...)
	}
	icmp[0] = 128
	s, d := src.As16(), dst.As16()
	var pseudo [40]byte
	copy(pseudo[:], s[:])
	copy(pseudo[16:], d[:])
	binary.BigEndian.PutUint32(pseudo[32:], uint32(len(icmp)))
	pseudo[39] = 58
	binary.BigEndian.PutUint16(icmp[2:], ^csum(uint32(csum(0, pseudo[:])), icmp))
	h := make([]byte, 40, 40+len(icmp))
	h[0], h[6], h[7] = 0x60, 58, 64
	binary.BigEndian.PutUint16(h[4:], uint16(len(icmp)))
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(h, icmp...)
}

// echoReplySeq returns the sequence number of an echo reply with the
// given id carrying the probe payload.
func echoReplySeq(p []byte, id uint16) (uint16, bool) {
	var icmp []byte
	switch {
	case len(p) >= 20 && p[0]>>4 == 4 && p[9] == 1:
		ihl := int(p[0]&0xf) * 4
		if ihl < 20 || len(p) < ihl+8 {
			return 0, false
		}
		icmp = p[ihl:]
		if icmp[0] != 0 {
			return 0, false
		}
	case len(p) >= 48 && p[0]>>4 == 6 && p[6] == 58:
		icmp = p[40:]
		if icmp[0] != 129 {
			return 0, false
		}
	default:
		return 0, false
	}
	if binary.BigEndian.Uint16(icmp[4:]) != id || len(icmp) < 8+len(probePayload) || string(icmp[8:8+len(probePayload)]) != probePayload {
		return 0, false
	}
	return binary.BigEndian.Uint16(icmp[6:]), true
}

// csum adds b to a ones' complement sum.
func csum(sum uint32, b []byte) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}
