// Package routertest has helpers for testing code around the router:
// packet builders and recording Ports (Sink, and ViaSink for a ViaPort).
package routertest

import (
	"encoding/binary"
	"net/netip"
	"sync"

	"github.com/anyguard/anyguard/packet"
)

// Packet returns a UDP packet from src to dst (both IPv4 or both IPv6) with
// the given TTL or hop limit and payload, preceded by headroom zero bytes.
// IPv4 packets carry a valid header checksum.
func Packet(headroom int, src, dst netip.Addr, ttl uint8, payload []byte) []byte {
	const udpLen = 8
	if src.Is4() {
		total := 20 + udpLen + len(payload)
		b := make([]byte, headroom+total)
		p := b[headroom:]
		p[0] = 0x45
		binary.BigEndian.PutUint16(p[2:], uint16(total))
		p[8] = ttl
		p[9] = 17
		s, d := src.As4(), dst.As4()
		copy(p[12:], s[:])
		copy(p[16:], d[:])
		binary.BigEndian.PutUint16(p[10:], packet.Checksum(p[:20]))
		binary.BigEndian.PutUint16(p[20:], 1234)
		binary.BigEndian.PutUint16(p[22:], 5678)
		binary.BigEndian.PutUint16(p[24:], uint16(udpLen+len(payload)))
		copy(p[28:], payload)
		return b
	}
	total := 40 + udpLen + len(payload)
	b := make([]byte, headroom+total)
	p := b[headroom:]
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(udpLen+len(payload)))
	p[6] = 17
	p[7] = ttl
	s, d := src.As16(), dst.As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	binary.BigEndian.PutUint16(p[40:], 1234)
	binary.BigEndian.PutUint16(p[42:], 5678)
	binary.BigEndian.PutUint16(p[44:], uint16(udpLen+len(payload)))
	copy(p[48:], payload)
	return b
}

// Checksum is the Internet checksum (RFC 1071) of b: zero over an IPv4
// header whose checksum is right.
func Checksum(b []byte) uint16 { return packet.Checksum(b) }

// Sink is a Port that records copies of the packets delivered to it.
type Sink struct {
	mu      sync.Mutex
	packets [][]byte
	Err     error // returned by Deliver when set
}

// Deliver records a copy of every packet (without headroom).
func (s *Sink) Deliver(bufs [][]byte, offset int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Err != nil {
		return s.Err
	}
	for _, b := range bufs {
		s.packets = append(s.packets, append([]byte(nil), b[offset:]...))
	}
	return nil
}

// Packets returns the packets recorded so far.
func (s *Sink) Packets() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.packets...)
}

// Discard is a Port that drops everything without error and without allocating.
type Discard struct{}

// Deliver does nothing.
func (Discard) Deliver([][]byte, int) error { return nil }

// ViaSink is a router.ViaPort that records copies of the packets delivered
// to it and the next hop of each: Vias()[i] belongs to Packets()[i].
type ViaSink struct {
	Sink
	vias []netip.Addr
}

// DeliverVia records a copy of every packet (without headroom) and its via.
func (s *ViaSink) DeliverVia(bufs [][]byte, vias []netip.Addr, offset int) error {
	if len(vias) != len(bufs) {
		panic("routertest: DeliverVia with len(vias) != len(bufs)")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Err != nil {
		return s.Err
	}
	for i, b := range bufs {
		s.packets = append(s.packets, append([]byte(nil), b[offset:]...))
		s.vias = append(s.vias, vias[i])
	}
	return nil
}

// Deliver records the packets as if they had no next hop (the zero Addr).
// The router never calls it on a ViaPort.
func (s *ViaSink) Deliver(bufs [][]byte, offset int) error {
	return s.DeliverVia(bufs, make([]netip.Addr, len(bufs)), offset)
}

// Vias returns the next hops recorded so far, one per packet.
func (s *ViaSink) Vias() []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.Addr(nil), s.vias...)
}

// DiscardVia is a router.ViaPort that drops everything without error and
// without allocating.
type DiscardVia struct{}

// Deliver does nothing.
func (DiscardVia) Deliver([][]byte, int) error { return nil }

// DeliverVia does nothing.
func (DiscardVia) DeliverVia([][]byte, []netip.Addr, int) error { return nil }
