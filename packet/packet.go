// Package packet reads and writes the IP and ICMP headers that anyguard
// handles: it parses an IPv4 or IPv6 header once into a small value
// (Header), hashes a packet's addresses for queue selection (FlowHash),
// parses and builds ICMP and ICMPv6 echo messages (ParseEcho, AppendEcho),
// and computes the Internet checksum, in full (Checksum, Sum,
// PseudoHeaderSum) and incrementally (UpdateChecksum, RFC 1624).
//
// Nothing here allocates unless it appends to a slice without room, and
// nothing reads beyond len(p): every function is safe on any input,
// including packets an attacker wrote.
package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Header sizes.
const (
	IPv4MinHeaderLen = 20 // an IPv4 header without options
	IPv6HeaderLen    = 40 // the fixed IPv6 header
)

// IP protocol numbers (IPv4 protocol, IPv6 next header) named here.
const (
	ProtoICMPv4 = 1
	ProtoIPIP   = 4 // IPv4 in IPv4 (also carries IPv6 in anyguard's backbone)
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// Why Parse refused a packet. Callers branch on them with errors.Is; a
// packet is refused for exactly one of them.
var (
	// ErrTruncated: the packet is shorter than its fixed header, than its
	// IPv4 header length, or than its length field says.
	ErrTruncated = errors.New("packet: truncated")
	// ErrVersion: the version field is neither 4 nor 6 (or the packet is empty).
	ErrVersion = errors.New("packet: not IPv4 or IPv6")
	// ErrHeaderLen: the IPv4 header length (IHL) is below 5 words.
	ErrHeaderLen = errors.New("packet: bad IPv4 header length")
	// ErrLength: the IPv4 total length is below the header length, or an
	// IPv6 payload length of zero announces a jumbogram (RFC 2675), which
	// anyguard does not carry.
	ErrLength = errors.New("packet: bad length field")
)

// Header is the parsed IP header of a packet. The zero value is no packet
// (Version 0). Payload aliases the packet Parse was given.
type Header struct {
	Src, Dst netip.Addr
	// Payload is what follows the header, up to the length the header
	// states (trailing bytes beyond it are not part of the packet). For
	// IPv6 it starts right after the fixed header, so it begins with any
	// extension headers.
	Payload []byte
	// Length is the packet's total length per its header: the IPv4 total
	// length, or 40 plus the IPv6 payload length.
	Length int
	// HeaderLen is the IPv4 header length with options (IHL×4), or 40 for
	// IPv6: extension headers are not walked.
	HeaderLen int
	Version   uint8 // 4 or 6
	// Proto is the IPv4 protocol or the IPv6 next header: for an IPv6
	// packet with extension headers, the type of the first one.
	Proto uint8
	TTL   uint8 // IPv4 TTL or IPv6 hop limit
	// Fragment is true for an IPv4 fragment (MF set or a fragment offset).
	// IPv6 fragments carry a fragment extension header (Proto 44).
	Fragment bool
}

// Parse validates the IP header of p and returns it. It checks the version,
// the IPv4 header length and the length field against len(p) (the IPv4
// header checksum is not verified); bytes beyond the stated length are
// allowed and ignored. The error is one of ErrTruncated, ErrVersion,
// ErrHeaderLen or ErrLength.
func Parse(p []byte) (Header, error) {
	var h Header
	err := h.Decode(p)
	return h, err
}

// Decode is Parse writing into h, for the packet path: it leaves h the zero
// Header when it returns an error.
func (h *Header) Decode(p []byte) error {
	if len(p) == 0 {
		*h = Header{}
		return ErrTruncated
	}
	var err error
	switch p[0] >> 4 {
	case 4:
		if err = h.decode4(p); err == nil {
			return nil
		}
	case 6:
		if err = h.decode6(p); err == nil {
			return nil
		}
	default:
		err = ErrVersion
	}
	*h = Header{}
	return err
}

func (h *Header) decode4(p []byte) error {
	ihl, total, err := IPv4Lengths(p)
	if err != nil {
		return err
	}
	h.Src = netip.AddrFrom4([4]byte(p[12:16]))
	h.Dst = netip.AddrFrom4([4]byte(p[16:20]))
	h.Payload = p[ihl:total:total]
	h.Length = total
	h.HeaderLen = ihl
	h.Version = 4
	h.TTL = p[8]
	h.Proto = p[9]
	h.Fragment = p[6]&0x3f != 0 || p[7] != 0 // MF or a fragment offset
	return nil
}

func (h *Header) decode6(p []byte) error {
	if len(p) < IPv6HeaderLen {
		return ErrTruncated
	}
	payload := int(binary.BigEndian.Uint16(p[4:6]))
	if payload == 0 && len(p) > IPv6HeaderLen {
		return ErrLength
	}
	total := IPv6HeaderLen + payload
	if len(p) < total {
		return ErrTruncated
	}
	h.Src = netip.AddrFrom16([16]byte(p[8:24]))
	h.Dst = netip.AddrFrom16([16]byte(p[24:40]))
	h.Payload = p[IPv6HeaderLen:total:total]
	h.Length = total
	h.HeaderLen = IPv6HeaderLen
	h.Version = 6
	h.TTL = p[7]
	h.Proto = p[6]
	h.Fragment = false
	return nil
}

// IPv4Lengths makes Parse's checks of an IPv4 header's lengths against
// len(p), without building a Header, and returns the header length (IHL×4)
// and the total length. It does not look at the version. The error is one
// of ErrTruncated, ErrHeaderLen or ErrLength.
func IPv4Lengths(p []byte) (headerLen, total int, err error) {
	if len(p) < IPv4MinHeaderLen {
		return 0, 0, ErrTruncated
	}
	headerLen = int(p[0]&0x0f) * 4
	total = int(binary.BigEndian.Uint16(p[2:4]))
	switch {
	case headerLen < IPv4MinHeaderLen:
		return 0, 0, ErrHeaderLen
	case total < headerLen:
		return 0, 0, ErrLength
	case len(p) < total: // total ≥ headerLen: covers len(p) < headerLen too
		return 0, 0, ErrTruncated
	}
	return headerLen, total, nil
}

// DecrementTTL lowers the IPv4 TTL or IPv6 hop limit of p, a packet that
// Parse accepted, updating the IPv4 header checksum incrementally (RFC
// 1624). It returns false, changing nothing, when the TTL is 1 or 0 and the
// packet must not be forwarded.
func DecrementTTL(p []byte) bool {
	if p[0]>>4 == 4 {
		ttl := p[8]
		if ttl <= 1 {
			return false
		}
		old := binary.BigEndian.Uint16(p[8:10])
		p[8] = ttl - 1
		binary.BigEndian.PutUint16(p[10:12], UpdateChecksum(binary.BigEndian.Uint16(p[10:12]), old, binary.BigEndian.Uint16(p[8:10])))
		return true
	}
	if p[7] <= 1 {
		return false
	}
	p[7]--
	return true
}

// FlowHash mixes the source and destination addresses of an IP packet into
// a hash for choosing a queue, so that the packets of one flow keep their
// order. It looks only at the version and the address fields (no
// validation: a TUN write of a bad packet fails anyway) and returns 0 when
// p is too short to hold them or is neither IPv4 nor IPv6.
func FlowHash(p []byte) uint32 {
	var a []byte
	switch {
	case len(p) >= IPv4MinHeaderLen && p[0]>>4 == 4:
		a = p[12:20]
	case len(p) >= IPv6HeaderLen && p[0]>>4 == 6:
		a = p[8:40]
	default:
		return 0
	}
	var h uint32 = 2166136261 // FNV-1a over 32-bit words
	for len(a) >= 4 {
		h = (h ^ binary.BigEndian.Uint32(a)) * 16777619
		a = a[4:]
	}
	return h ^ h>>16
}
