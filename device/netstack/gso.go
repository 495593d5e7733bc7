package netstack

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Segmentation offload toward the clients.
//
// The NIC tells gVisor it segments TCP itself (stack.HostGSOSupported), so
// a sending endpoint hands over up to netstackGSOMaxSize of payload as one
// packet instead of one per MSS: one pass through gVisor's TCP, IP and
// link code, one PacketBuffer, one queue entry, where there were twenty.
// The emit loop then cuts it into MSS-sized IP packets the way a NIC
// would (tcpSegment), copying each straight into its emit buffer and
// computing the TCP checksum over it, which gVisor leaves to the
// "hardware" (the checksum field holds only the pseudo-header's sum).

// gsoSegments returns how many IP packets pkt becomes when emitted: 1
// unless it is a TCP super-segment bigger than one MSS.
func gsoSegments(pkt *stack.PacketBuffer) int {
	g := pkt.GSOOptions
	if g.Type != stack.GSOTCPv4 && g.Type != stack.GSOTCPv6 || g.MSS == 0 {
		return 1
	}
	hdr := len(pkt.NetworkHeader().Slice()) + len(pkt.TransportHeader().Slice())
	payload := pkt.Size() - hdr
	if payload <= int(g.MSS) {
		return 1
	}
	return (payload + int(g.MSS) - 1) / int(g.MSS)
}

// viewCursor reads a PacketBuffer's bytes in order without copying them
// into one slice first.
type viewCursor struct {
	v    *buffer.View
	skip int // bytes of v already read
}

// newPacketCursor returns a cursor at the first byte of pkt's headers.
func newPacketCursor(pkt *stack.PacketBuffer) viewCursor {
	views, off := pkt.AsViewList()
	c := viewCursor{v: views.Front()}
	c.advance(off)
	return c
}

// newPayloadCursor returns a cursor at the first byte after pkt's headers.
func newPayloadCursor(pkt *stack.PacketBuffer) viewCursor {
	c := newPacketCursor(pkt)
	c.advance(pkt.HeaderSize())
	return c
}

// gsoHeadersOK reports whether ip and tcp are the headers of a TCP packet
// tcpSegment can cut: an IPv4 header with its options or an IPv6 header
// with extension headers, and a whole TCP header.
func gsoHeadersOK(ip, tcp []byte) bool {
	switch {
	case len(tcp) < header.TCPMinimumSize || len(tcp) != int(header.TCP(tcp).DataOffset()):
		return false
	case len(ip) >= header.IPv4MinimumSize && ip[0]>>4 == 4:
		return len(ip) == int(header.IPv4(ip).HeaderLength())
	case len(ip) >= header.IPv6MinimumSize && ip[0]>>4 == 6:
		return true
	}
	return false
}

// advance skips n bytes.
func (c *viewCursor) advance(n int) {
	for c.v != nil {
		left := c.v.Size() - c.skip
		if n < left {
			c.skip += n
			return
		}
		n -= left
		c.v, c.skip = c.v.Next(), 0
	}
}

// read fills dst and returns how many bytes it could.
func (c *viewCursor) read(dst []byte) int {
	w := 0
	for w < len(dst) && c.v != nil {
		s := c.v.AsSlice()[c.skip:]
		k := copy(dst[w:], s)
		w += k
		if k < len(s) {
			c.skip += k
		} else {
			c.v, c.skip = c.v.Next(), 0
		}
	}
	return w
}

// tcpSegment writes the next segment, at most mss bytes of payload read
// from pay, of the TCP packet with IP header ip and TCP header tcp into
// dst, which has room for it, and returns its length. seg is the segment's
// number and off its payload's offset; last says whether the payload ends
// with it. It fixes the lengths, the IPv4 ID and header checksum, the
// sequence number and the flags that belong only to the first (CWR) or
// last (FIN, PSH) segment, and computes the TCP checksum. ip and tcp are
// not modified.
func tcpSegment(dst, ip, tcp []byte, pay *viewCursor, size, seg, off int, last bool) int {
	n := copy(dst, ip)
	th := dst[n : n+len(tcp)]
	n += copy(th, tcp)
	n += pay.read(dst[n : n+size])
	tcpLen := n - len(ip)

	var xsum uint16
	if ip[0]>>4 == 4 {
		h := header.IPv4(dst[:len(ip)])
		h.SetTotalLength(uint16(n))
		h.SetID(header.IPv4(ip).ID() + uint16(seg))
		h.SetChecksum(0)
		h.SetChecksum(^h.CalculateChecksum())
		xsum = checksum.Checksum(ip[12:20], 0)
	} else {
		binary.BigEndian.PutUint16(dst[4:6], uint16(n-header.IPv6MinimumSize))
		xsum = checksum.Checksum(ip[8:40], 0)
	}
	xsum = checksum.Combine(xsum, uint16(header.TCPProtocolNumber))
	xsum = checksum.Combine(xsum, uint16(tcpLen))

	t := header.TCP(th)
	t.SetSequenceNumber(header.TCP(tcp).SequenceNumber() + uint32(off))
	flags := t.Flags()
	if !last {
		flags &^= header.TCPFlagFin | header.TCPFlagPsh
	}
	if seg > 0 {
		flags &^= header.TCPFlagCwr
	}
	th[header.TCPFlagsOffset] = uint8(flags)
	t.SetChecksum(0)
	t.SetChecksum(^checksum.Checksum(dst[len(ip):n], xsum))
	return n
}
