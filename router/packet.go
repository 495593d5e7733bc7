package router

import (
	"encoding/binary"
	"net/netip"
)

// Drop reasons. Each dropped packet is counted under exactly one of them.
type DropReason uint8

const (
	DropTruncated     DropReason = iota // shorter than its header or its length field says
	DropBadHeader                       // bad IP version, header length or length field
	DropTTLExpired                      // TTL or hop limit would reach zero
	DropNoRoute                         // no route for the destination
	DropSourceInvalid                   // source address not allowed on the ingress port
	DropSplitHorizon                    // arrived from the backbone, routed back into it
	DropLoop                            // routed back out of the egress it came in on
	DropPortError                       // the next hop's port refused the packet
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	DropTruncated:     "truncated",
	DropBadHeader:     "bad_header",
	DropTTLExpired:    "ttl_expired",
	DropNoRoute:       "no_route",
	DropSourceInvalid: "source_invalid",
	DropSplitHorizon:  "split_horizon",
	DropLoop:          "loop",
	DropPortError:     "port_error",
}

// String returns the metric label of the reason.
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropReasonNames[r]
	}
	return "unknown"
}

// DropReasons lists every reason, for exporting counters.
func DropReasons() []DropReason {
	rs := make([]DropReason, numDropReasons)
	for i := range rs {
		rs[i] = DropReason(i)
	}
	return rs
}

const (
	ipv4HeaderMin = 20
	ipv6HeaderLen = 40
)

// header is what the router needs of an IP packet.
type header struct {
	src, dst netip.Addr
	length   int // total length of the packet per its header
}

// parse validates the IP header of p and returns its addresses and length.
// It never reads beyond len(p). ok is false with the reason for a bad packet.
func parse(p []byte) (h header, reason DropReason, ok bool) {
	if len(p) < 1 {
		return h, DropTruncated, false
	}
	switch p[0] >> 4 {
	case 4:
		if len(p) < ipv4HeaderMin {
			return h, DropTruncated, false
		}
		ihl := int(p[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(p[2:4]))
		if ihl < ipv4HeaderMin || total < ihl {
			return h, DropBadHeader, false
		}
		if len(p) < ihl || len(p) < total {
			return h, DropTruncated, false
		}
		h.src = netip.AddrFrom4([4]byte(p[12:16]))
		h.dst = netip.AddrFrom4([4]byte(p[16:20]))
		h.length = total
		return h, 0, true
	case 6:
		if len(p) < ipv6HeaderLen {
			return h, DropTruncated, false
		}
		payload := int(binary.BigEndian.Uint16(p[4:6]))
		if payload == 0 {
			// A zero payload length announces a jumbogram, which no port here carries.
			if len(p) == ipv6HeaderLen {
				h.length = ipv6HeaderLen
			} else {
				return h, DropBadHeader, false
			}
		} else {
			h.length = ipv6HeaderLen + payload
		}
		if len(p) < h.length {
			return h, DropTruncated, false
		}
		h.src = netip.AddrFrom16([16]byte(p[8:24]))
		h.dst = netip.AddrFrom16([16]byte(p[24:40]))
		return h, 0, true
	default:
		return h, DropBadHeader, false
	}
}

// decrementTTL lowers the IPv4 TTL or IPv6 hop limit of a packet that parse
// accepted, updating the IPv4 header checksum incrementally (RFC 1624). It
// returns false, changing nothing, when the packet must not be forwarded.
func decrementTTL(p []byte) bool {
	if p[0]>>4 == 4 {
		ttl := p[8]
		if ttl <= 1 {
			return false
		}
		old := binary.BigEndian.Uint16(p[8:10])
		p[8] = ttl - 1
		updated := binary.BigEndian.Uint16(p[8:10])
		sum := uint32(^binary.BigEndian.Uint16(p[10:12])) + uint32(^old) + uint32(updated)
		sum = (sum & 0xffff) + sum>>16
		sum = (sum & 0xffff) + sum>>16
		binary.BigEndian.PutUint16(p[10:12], ^uint16(sum))
		return true
	}
	if p[7] <= 1 {
		return false
	}
	p[7]--
	return true
}
