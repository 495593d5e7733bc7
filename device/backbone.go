package device

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"github.com/anyguard/anyguard/packet"
	"golang.zx2c4.com/wireguard/tun"
)

// Outer header of backbone packets: IPv4 without options, carrying IP in IP.
const (
	ipipHeaderLen = 20
	ipipProto     = packet.ProtoIPIP // the payload is an IPv4 or IPv6 packet
	ipipTTL       = 64               // the outer packet crosses one WireGuard hop
	ipv4MaxLen    = 65535            // largest total length an IPv4 header can state
	ipv4FlagDF    = 0x4000
)

// BackboneStats are the counters of a BackbonePort. Each drop is counted
// under exactly one reason; the metric label of each is in its comment.
type BackboneStats struct {
	Encapsulated uint64 // packets sent toward a next-hop gateway
	Decapsulated uint64 // packets received from the backbone and forwarded

	NoVia            uint64 // no_via: no next hop (zero via, or Deliver without vias)
	BadVia           uint64 // bad_via: the via is not an IPv4 gateway address, or is our own
	NotIPIP          uint64 // not_ipip: received packet is not unfragmented IPv4 carrying protocol 4
	WrongDestination uint64 // wrong_destination: received outer destination is not our backbone address
	Truncated        uint64 // truncated: received outer header or length inconsistent with the packet
	Oversized        uint64 // oversized: too big for an outer IPv4 header or for the port's buffers

	// Relayed client datagrams (see RelayKind): sent, received and handed
	// to the relay handler, and dropped for a bad relay header, a
	// datagram that is no transport message, or no handler (bad_relay).
	RelayedOut, RelayedIn, BadRelay uint64
}

// BackbonePort is the tun.Device of the backbone WireGuard device. Every
// packet crosses the backbone inside an outer IPv4 header (IP in IP, protocol
// 4) from this gateway's backbone address to the next-hop gateway's, so each
// backbone peer's AllowedIPs stay just its own backbone /32 while it carries
// traffic for any prefix or client.
//
// Toward the device (DeliverVia, which the router calls as a ViaPort), the
// outer header is written in front of the single copy that Port makes of
// every packet. From the device (Write), decrypted packets are checked,
// their outer header is skipped without copying, and the inner packets go to
// forward. Batching, backpressure and closing behave as in Port.
type BackbonePort struct {
	port    *Port // the batches toward the device; its forward is decapsulate
	local   netip.Addr
	local4  [4]byte
	forward ForwardFunc
	hdrSum  uint32    // checksum of the outer header's fixed words (all but length and destination)
	runs    sync.Pool // *[][]byte: decapsulate's scratch, one per concurrent Write

	encapsulated, decapsulated                  atomic.Uint64
	noVia, badVia, notIPIP, wrongDst, truncated atomic.Uint64
	oversized                                   atomic.Uint64 // beyond the IPv4 length field; the port counts the rest
	relayCounters
}

// NewBackbonePort returns a BackbonePort for the backbone address local,
// which must be IPv4. mtu is what the device is told (client MTU plus the
// 20 bytes of the outer header); inner packets from the backbone go to
// forward.
func NewBackbonePort(name string, mtu int, local netip.Addr, forward ForwardFunc) *BackbonePort {
	if !local.Is4() {
		panic(fmt.Sprintf("device: backbone address %v is not IPv4", local))
	}
	b := &BackbonePort{local: local, local4: local.As4(), forward: forward}
	b.port = NewPort(name, mtu, b.decapsulate)
	b.runs.New = func() any { return new([][]byte) }
	// Version/IHL, DF, TTL/protocol and the source: the same in every header.
	b.hdrSum = 0x4500 + ipv4FlagDF + (ipipTTL<<8 | ipipProto)
	b.hdrSum += uint32(binary.BigEndian.Uint16(b.local4[0:2])) + uint32(binary.BigEndian.Uint16(b.local4[2:4]))
	return b
}

// DeliverVia encapsulates packet bufs[i][offset:] toward the gateway whose
// backbone address is vias[i] and queues it for the device, like
// Port.Deliver (it blocks while the device is behind and returns
// os.ErrClosed once the port is closed). Packets without a usable via are
// dropped and counted. It is safe for concurrent use and retains nothing.
func (b *BackbonePort) DeliverVia(bufs [][]byte, vias []netip.Addr, offset int) error {
	if len(vias) != len(bufs) {
		panic(fmt.Sprintf("device: DeliverVia with %d vias for %d packets", len(vias), len(bufs)))
	}
	var encapsulated, noVia, badVia, oversized uint64
	w := batchWriter{p: b.port}
	var err error
	for i, buf := range bufs {
		inner := buf[offset:]
		via := vias[i]
		switch {
		case !via.IsValid():
			noVia++
			continue
		case !via.Is4() || via == b.local || via.IsUnspecified() || via.IsMulticast():
			badVia++
			continue
		}
		total := ipipHeaderLen + len(inner)
		if total > ipv4MaxLen {
			oversized++
			continue
		}
		var pkt []byte
		if pkt, err = w.next(total); err != nil {
			break
		}
		if pkt == nil {
			continue // counted by the port as oversized
		}
		b.putHeaderProto(pkt[:ipipHeaderLen], total, via.As4(), ipipProto)
		copy(pkt[ipipHeaderLen:], inner)
		encapsulated++
	}
	if err == nil {
		err = w.flush()
	}
	if err == nil { // on error the batch is lost, and the caller counts it
		addNonZero(&b.encapsulated, encapsulated)
	}
	addNonZero(&b.noVia, noVia)
	addNonZero(&b.badVia, badVia)
	addNonZero(&b.oversized, oversized)
	return err
}

// putHeaderProto writes the outer IPv4 header of a packet of total bytes
// to dst, carrying protocol proto. The identification is zero, as RFC 6864
// allows for atomic (DF, never fragmented) datagrams.
func (b *BackbonePort) putHeaderProto(h []byte, total int, dst [4]byte, proto byte) {
	_ = h[ipipHeaderLen-1]
	h[0] = 0x45
	h[1] = 0
	binary.BigEndian.PutUint16(h[2:4], uint16(total))
	h[4], h[5] = 0, 0
	binary.BigEndian.PutUint16(h[6:8], ipv4FlagDF)
	h[8] = ipipTTL
	h[9] = proto
	copy(h[12:16], b.local4[:])
	copy(h[16:20], dst[:])
	sum := b.hdrSum - ipipProto + uint32(proto) + uint32(total) + uint32(binary.BigEndian.Uint16(dst[0:2])) + uint32(binary.BigEndian.Uint16(dst[2:4]))
	sum = (sum & 0xffff) + sum>>16
	sum = (sum & 0xffff) + sum>>16
	binary.BigEndian.PutUint16(h[10:12], ^uint16(sum))
}

// Deliver drops every packet and counts it as no_via: a packet for the
// backbone needs a next hop (DeliverVia). The router never calls it.
func (b *BackbonePort) Deliver(bufs [][]byte, offset int) error {
	addNonZero(&b.noVia, uint64(len(bufs)))
	return nil
}

// decapsulate is the port's forward function: it receives the packets the
// device decrypted, which WireGuard has authenticated as coming from the
// peer whose backbone /32 is their outer source. It checks each outer
// header, and hands forward the inner packets in place: the outer header
// becomes part of the headroom. Consecutive packets with the same outer
// header length go to forward in one batch (they share the offset).
func (b *BackbonePort) decapsulate(bufs [][]byte, offset int) {
	runp := b.runs.Get().(*[][]byte)
	run := (*runp)[:0]
	runHeader := 0
	var decapsulated, notIPIP, wrongDst, truncated uint64
	for _, buf := range bufs {
		if len(buf) < offset {
			truncated++
			continue
		}
		hl, total, reason := b.checkOuter(buf[offset:])
		switch reason {
		case dropNone:
		case dropNotIPIP:
			notIPIP++
			continue
		case dropWrongDestination:
			wrongDst++
			continue
		case relayed:
			b.receiveRelay(buf[offset:offset+total], hl)
			continue
		default:
			truncated++
			continue
		}
		if len(run) > 0 && hl != runHeader {
			b.forward(run, offset+runHeader)
			clear(run)
			run = run[:0]
		}
		runHeader = hl
		run = append(run, buf[:offset+total])
		decapsulated++
	}
	if len(run) > 0 {
		b.forward(run, offset+runHeader)
		clear(run) // retain no packet buffers in the pool
	}
	*runp = run[:0]
	b.runs.Put(runp)
	addNonZero(&b.decapsulated, decapsulated)
	addNonZero(&b.notIPIP, notIPIP)
	addNonZero(&b.wrongDst, wrongDst)
	addNonZero(&b.truncated, truncated)
}

type backboneDrop uint8

const (
	dropNone backboneDrop = iota
	dropNotIPIP
	dropWrongDestination
	dropTruncated
	relayed // not dropped: a relayed client datagram (receiveRelay)
)

// checkOuter validates the outer header of a received packet p and returns
// its header length and total length. The header checksum is not verified:
// WireGuard's AEAD has already authenticated every byte from the peer.
func (b *BackbonePort) checkOuter(p []byte) (hl, total int, reason backboneDrop) {
	if len(p) < ipipHeaderLen {
		return 0, 0, dropTruncated
	}
	if p[0]>>4 != 4 {
		return 0, 0, dropNotIPIP
	}
	// Not a whole packet.Header: this runs for every backbone packet, and
	// the lengths, the protocol, the flags and the destination are all it
	// needs.
	hl, total, err := packet.IPv4Lengths(p)
	switch {
	case err == packet.ErrHeaderLen:
		return 0, 0, dropNotIPIP
	case err != nil, total == hl: // ErrLength, ErrTruncated, or no inner packet
		return 0, 0, dropTruncated
	case (p[9] != ipipProto && p[9] != relayProto) || binary.BigEndian.Uint16(p[6:8])&0x3fff != 0: // MF or a fragment offset
		return 0, 0, dropNotIPIP
	case [4]byte(p[16:20]) != b.local4:
		return 0, 0, dropWrongDestination
	case p[9] == relayProto:
		return hl, total, relayed
	}
	return hl, total, dropNone
}

func addNonZero(c *atomic.Uint64, n uint64) {
	if n != 0 {
		c.Add(n)
	}
}

// Stats returns the counters so far.
func (b *BackbonePort) Stats() BackboneStats {
	return BackboneStats{
		Encapsulated:     b.encapsulated.Load(),
		Decapsulated:     b.decapsulated.Load(),
		NoVia:            b.noVia.Load(),
		BadVia:           b.badVia.Load(),
		NotIPIP:          b.notIPIP.Load(),
		WrongDestination: b.wrongDst.Load(),
		Truncated:        b.truncated.Load(),
		Oversized:        b.oversized.Load() + b.port.Oversized(),
		RelayedOut:       b.relayedOut.Load(),
		RelayedIn:        b.relayedIn.Load(),
		BadRelay:         b.badRelay.Load(),
	}
}

// Local returns the port's backbone address, the outer source of its packets.
func (b *BackbonePort) Local() netip.Addr { return b.local }

// Read implements tun.Device for the device's single reader goroutine, as
// Port.Read: it returns encapsulated packets.
func (b *BackbonePort) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return b.port.Read(bufs, sizes, offset)
}

// Write implements tun.Device: the device hands over decrypted packets,
// whose inner packets go to the forward function before Write returns.
// It returns os.ErrClosed once the port is closed.
func (b *BackbonePort) Write(bufs [][]byte, offset int) (int, error) {
	return b.port.Write(bufs, offset)
}

// MTU implements tun.Device.
func (b *BackbonePort) MTU() (int, error) { return b.port.MTU() }

// Name implements tun.Device.
func (b *BackbonePort) Name() (string, error) { return b.port.Name() }

// File implements tun.Device; a BackbonePort has no file.
func (b *BackbonePort) File() *os.File { return nil }

// Events implements tun.Device, as Port.Events.
func (b *BackbonePort) Events() <-chan tun.Event { return b.port.Events() }

// BatchSize implements tun.Device.
func (b *BackbonePort) BatchSize() int { return b.port.BatchSize() }

// Close implements tun.Device: Read, Write and DeliverVia return
// os.ErrClosed.
func (b *BackbonePort) Close() error { return b.port.Close() }

var _ tun.Device = (*BackbonePort)(nil)
