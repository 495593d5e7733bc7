package device

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// ICMP echo toward served prefixes is not left to the stack, which would
// either ignore it or answer for hosts it knows nothing about. Deliver
// intercepts echo requests, a goroutine per request performs the echo from
// the host (cfg.Ping), and the reply is synthesized as an IP packet and
// handed to the emit goroutine.

const (
	icmpv4EchoRequest = 8
	icmpv4EchoReply   = 0
	icmpv6EchoRequest = 128
	icmpv6EchoReply   = 129
	protoICMPv4       = 1
	protoICMPv6       = 58
	icmpEchoHeaderLen = 8
	echoReplyTTL      = 64
)

// echoRequest is an ICMP echo request; payload aliases the packet.
type echoRequest struct {
	src, dst netip.Addr
	id, seq  uint16
	payload  []byte
	valid    bool // the ICMP checksum is right
}

// parseEchoRequest recognizes an unfragmented ICMP or ICMPv6 echo request
// whose IP header and length have already been checked (ipv4Length,
// ipv6Length trimmed p to the packet). IPv6 packets with extension headers
// are left to the stack.
func parseEchoRequest(p []byte) (e echoRequest, ok bool) {
	var icmp []byte
	switch p[0] >> 4 {
	case 4:
		ihl := int(p[0]&0xf) * 4
		if p[9] != protoICMPv4 || binary.BigEndian.Uint16(p[6:8])&0x3fff != 0 { // MF or fragment offset
			return e, false
		}
		icmp = p[ihl:]
		if len(icmp) < icmpEchoHeaderLen || icmp[0] != icmpv4EchoRequest || icmp[1] != 0 {
			return e, false
		}
		e.src = netip.AddrFrom4([4]byte(p[12:16]))
		e.dst = netip.AddrFrom4([4]byte(p[16:20]))
		e.valid = checksum.Checksum(icmp, 0) == 0xffff
	case 6:
		if p[6] != protoICMPv6 {
			return e, false
		}
		icmp = p[40:]
		if len(icmp) < icmpEchoHeaderLen || icmp[0] != icmpv6EchoRequest || icmp[1] != 0 {
			return e, false
		}
		e.src = netip.AddrFrom16([16]byte(p[8:24]))
		e.dst = netip.AddrFrom16([16]byte(p[24:40]))
		e.valid = checksum.Checksum(icmp, pseudoHeaderSum(p[8:24], p[24:40], len(icmp))) == 0xffff
	default:
		return e, false
	}
	e.id = binary.BigEndian.Uint16(icmp[4:6])
	e.seq = binary.BigEndian.Uint16(icmp[6:8])
	e.payload = icmp[icmpEchoHeaderLen:]
	return e, true
}

// pseudoHeaderSum is the unfolded-complement sum of the ICMPv6 pseudo-header.
func pseudoHeaderSum(src, dst []byte, length int) uint16 {
	var ph [40]byte
	copy(ph[0:16], src)
	copy(ph[16:32], dst)
	binary.BigEndian.PutUint32(ph[32:36], uint32(length))
	ph[39] = protoICMPv6
	return checksum.Checksum(ph[:], 0)
}

// appendEchoReply appends to b an IP packet carrying an ICMP echo reply from
// src to dst with the given id, seq and payload, all checksums set.
func appendEchoReply(b []byte, src, dst netip.Addr, id, seq uint16, payload []byte) []byte {
	icmpLen := icmpEchoHeaderLen + len(payload)
	if src.Is4() {
		start := len(b)
		b = append(b, 0x45, 0, 0, 0, 0, 0, 0, 0, echoReplyTTL, protoICMPv4, 0, 0)
		binary.BigEndian.PutUint16(b[start+2:], uint16(20+icmpLen))
		s4, d4 := src.As4(), dst.As4()
		b = append(b, s4[:]...)
		b = append(b, d4[:]...)
		binary.BigEndian.PutUint16(b[start+10:], ^checksum.Checksum(b[start:start+20], 0))
		i := len(b)
		b = append(b, icmpv4EchoReply, 0, 0, 0, byte(id>>8), byte(id), byte(seq>>8), byte(seq))
		b = append(b, payload...)
		binary.BigEndian.PutUint16(b[i+2:], ^checksum.Checksum(b[i:], 0))
		return b
	}
	s16, d16 := src.As16(), dst.As16()
	b = append(b, 0x60, 0, 0, 0, byte(icmpLen>>8), byte(icmpLen), protoICMPv6, echoReplyTTL)
	b = append(b, s16[:]...)
	b = append(b, d16[:]...)
	i := len(b)
	b = append(b, icmpv6EchoReply, 0, 0, 0, byte(id>>8), byte(id), byte(seq>>8), byte(seq))
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[i+2:], ^checksum.Checksum(b[i:], pseudoHeaderSum(s16[:], d16[:], icmpLen)))
	return b
}

// handleEcho starts the host-side echo for a request that Deliver
// intercepted, or drops it. It copies what it keeps of e.
func (n *Netstack) handleEcho(e echoRequest) {
	switch {
	case !e.valid || !e.src.IsValid() || e.src.IsUnspecified() || e.src.IsMulticast():
		n.drop(NetstackDropMalformed)
		return
	case n.pingUnavailable.Load():
		n.echoDropped.Add(1)
		n.drop(NetstackDropPingUnavailable)
		return
	}
	select {
	case n.pingSem <- struct{}{}:
	default:
		n.echoDropped.Add(1)
		n.drop(NetstackDropPingOverload)
		return
	}
	if !n.startGoroutine() {
		<-n.pingSem
		n.drop(NetstackDropClosed)
		return
	}
	payload := append([]byte(nil), e.payload...)
	go n.echo(e.src, e.dst, e.id, e.seq, payload)
}

// echo performs one echo from the host and queues the reply for emit.
func (n *Netstack) echo(src, dst netip.Addr, id, seq uint16, payload []byte) {
	defer n.wg.Done()
	defer func() { <-n.pingSem }()
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.PingTimeout)
	defer cancel()
	reply, err := n.ping(ctx, dst, id, seq, payload)
	if err != nil {
		n.echoDropped.Add(1)
		if errors.Is(err, ErrPingUnavailable) {
			n.drop(NetstackDropPingUnavailable)
			if !n.pingUnavailable.Swap(true) {
				n.log.Warn("netstack: ICMP echo toward served prefixes is unavailable; echo requests will be dropped", "err", err)
			}
			return
		}
		n.echoSent.Add(1)
		n.drop(NetstackDropPingFailed)
		if n.log.Enabled(ctx, slog.LevelDebug) {
			n.log.Debug("netstack: echo failed", "client", src, "endpoint", dst, "err", err)
		}
		return
	}
	n.echoSent.Add(1)
	hdr := 20
	if dst.Is6() {
		hdr = 40
	}
	if hdr+icmpEchoHeaderLen+len(reply) > n.cfg.MTU {
		n.echoDropped.Add(1)
		n.drop(NetstackDropEmitOverflow)
		return
	}
	pkt := appendEchoReply(make([]byte, 0, hdr+icmpEchoHeaderLen+len(reply)), dst, src, id, seq, reply)
	select {
	case n.replies <- pkt:
		n.echoAnswered.Add(1)
	default:
		n.echoDropped.Add(1)
		n.drop(NetstackDropEmitOverflow)
	}
}
