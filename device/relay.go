package device

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
)

// Relayed client datagrams between gateways (see docs/failover.md, "Drain
// relay"). A gateway that receives a moved client's transport datagrams
// it cannot decrypt sends them to the gateway holding the client's
// session, which sends back the datagrams it encrypts for the client:
// both cross the backbone, inside the same authenticated WireGuard
// sessions as routed packets, as an outer IPv4 header of protocol
// relayProto followed by
//
//	kind (1 byte) | client endpoint address (16 bytes, IPv4 mapped) | port (2 bytes, big endian) | the WireGuard datagram
//
// The outer source is the sending gateway's backbone address, which the
// backbone device has checked against the peer's allowed IPs: relayed
// datagrams come from gateways of the cluster and from nothing else.

// RelayKind is the direction of a relayed client datagram.
type RelayKind uint8

const (
	// RelayToOwner is a client's transport datagram, received by the
	// relaying gateway from the client's endpoint, for the gateway that
	// holds the session to decrypt as if it came from that endpoint.
	RelayToOwner RelayKind = 1
	// RelayToClient is a transport datagram that the session's gateway
	// encrypted for the client, for the relaying gateway to send to the
	// client's endpoint from its client socket, unchanged.
	RelayToClient RelayKind = 2
)

const (
	relayProto     = 253 // RFC 3692 experimental protocol number; never leaves the backbone
	relayHeaderLen = 1 + 16 + 2
	// MaxRelayed is the largest WireGuard datagram relayed: a transport
	// message of a 9,000-byte packet (clients.mtu's maximum) with its
	// padding, header and tag.
	MaxRelayed = 9000 + 16 + 32
)

// RelayFunc receives the relayed datagrams that the backbone decrypted:
// from is the sending gateway's backbone address, endpoint the client's,
// and datagram a transport message (its type and size are checked). It
// runs on the backbone device's receive goroutines, per datagram: it must
// not block for long and must not retain datagram.
type RelayFunc func(from netip.Addr, kind RelayKind, endpoint netip.AddrPort, datagram []byte)

// SetRelayHandler installs fn (nil removes it: relayed datagrams are then
// dropped and counted as bad_relay).
func (b *BackbonePort) SetRelayHandler(fn RelayFunc) {
	if fn == nil {
		b.relay.Store(nil)
		return
	}
	b.relay.Store(&fn)
}

// SendRelay sends a client's WireGuard transport datagram to the gateway
// with backbone address via, as one packet of kind. It blocks while the
// backbone device is behind, as DeliverVia does, and returns os.ErrClosed
// once the port is closed. Datagrams that are no transport message, too
// big, or without a usable via or endpoint are dropped, counted, and
// return nil. It is safe for concurrent use and retains nothing.
func (b *BackbonePort) SendRelay(via netip.Addr, kind RelayKind, endpoint netip.AddrPort, datagram []byte) error {
	switch {
	case !via.Is4() || via == b.local || via.IsUnspecified() || via.IsMulticast():
		b.badVia.Add(1)
		return nil
	case kind != RelayToOwner && kind != RelayToClient, !endpoint.Addr().IsValid(), endpoint.Port() == 0,
		len(datagram) > MaxRelayed, Classify(datagram) != msgTransport:
		b.badRelay.Add(1)
		return nil
	}
	total := ipipHeaderLen + relayHeaderLen + len(datagram)
	w := batchWriter{p: b.port}
	pkt, err := w.next(total)
	if err != nil {
		return err
	}
	if pkt == nil {
		return nil // counted by the port as oversized
	}
	b.putHeaderProto(pkt[:ipipHeaderLen], total, via.As4(), relayProto)
	r := pkt[ipipHeaderLen:]
	r[0] = byte(kind)
	a := endpoint.Addr().As16()
	copy(r[1:17], a[:])
	binary.BigEndian.PutUint16(r[17:19], endpoint.Port())
	copy(r[relayHeaderLen:], datagram)
	if err := w.flush(); err != nil {
		return err
	}
	b.relayedOut.Add(1)
	return nil
}

// receiveRelay checks a relayed datagram (p is the outer packet, hl its
// header length) and hands it to the relay handler.
func (b *BackbonePort) receiveRelay(p []byte, hl int) {
	fn := b.relay.Load()
	r := p[hl:]
	if fn == nil || len(r) < relayHeaderLen {
		b.badRelay.Add(1)
		return
	}
	kind := RelayKind(r[0])
	addr := netip.AddrFrom16([16]byte(r[1:17])).Unmap()
	endpoint := netip.AddrPortFrom(addr, binary.BigEndian.Uint16(r[17:19]))
	datagram := r[relayHeaderLen:]
	if (kind != RelayToOwner && kind != RelayToClient) || endpoint.Port() == 0 || addr.IsUnspecified() ||
		len(datagram) > MaxRelayed || Classify(datagram) != msgTransport {
		b.badRelay.Add(1)
		return
	}
	b.relayedIn.Add(1)
	(*fn)(netip.AddrFrom4([4]byte(p[12:16])), kind, endpoint, datagram)
}

// relayCounters are the BackbonePort's counters of relayed datagrams.
type relayCounters struct {
	relay                           atomic.Pointer[RelayFunc]
	relayedOut, relayedIn, badRelay atomic.Uint64
}
