package netstack

import (
	"sync"
	"sync/atomic"

	"github.com/anyguard/anyguard/packet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
)

// Receive offload from the clients.
//
// Deliver passes each batch through gVisor's GRO engine, which merges
// consecutive in-order TCP segments of one flow into one packet of up to
// 64 KiB before the stack sees them: the stack's IP and TCP input and its
// ACK generation then run once per merged packet rather than once per
// MSS. A batch is flushed completely before Deliver returns, so GRO adds
// no delay and holds no packet between calls; each call borrows its own
// engine from a pool, since Deliver runs on many goroutines at once.

// link is the NIC's link endpoint: a channel endpoint (outbound queue,
// GSO capability) that also remembers the stack's dispatcher so Deliver
// can feed it through GRO.
type link struct {
	*channel.Endpoint
	dispatcher atomic.Pointer[dispatcher]
}

type dispatcher struct{ stack.NetworkDispatcher }

// Attach implements stack.LinkEndpoint.
func (l *link) Attach(d stack.NetworkDispatcher) {
	l.Endpoint.Attach(d)
	if d == nil {
		l.dispatcher.Store(nil)
		return
	}
	l.dispatcher.Store(&dispatcher{d})
}

// GSOMaxSize implements stack.GSOEndpoint: super-segments up to gVisor's
// software GSO limit, 64 KiB, twice the channel endpoint's.
func (l *link) GSOMaxSize() uint32 { return stack.GVisorGSOMaxSize }

// groBucketSize is gro's per-bucket capacity: Flush delivers only the
// oldest packet of each bucket (its loop stops after the first removal),
// so emptying the engine takes this many calls.
const groBucketSize = 8

var groPool = sync.Pool{New: func() any {
	g := new(gro.GRO)
	g.Init(true)
	return g
}}

// flushGRO delivers every packet g still holds.
func flushGRO(g *gro.GRO) {
	for range groBucketSize {
		g.Flush()
	}
}

// checksumsValid verifies the checksums of packet p with header h the way
// a NIC with receive checksum offload does, so that the stack can skip
// them (the link reports stack.CapabilityRXChecksumOffload): GRO's merged
// packets carry the first segment's checksums, which no longer match.
// It checks the IPv4 header and the TCP, UDP, ICMPv4 or ICMPv6 checksum
// of an unfragmented packet whose transport header follows the IP header
// directly. Fragments (reassembled by the stack) and IPv6 packets with
// extension headers have only their IPv4 header checked: they reach the
// stack unverified, and as every packet has passed WireGuard's
// authentication first, a wrong sum there can only be the client's own
// corruption of its own flow. A transport header too short for its
// checksum is left to the stack to reject.
func checksumsValid(h *packet.Header, p []byte) bool {
	if h.Version == 4 && packet.Sum(p[:h.HeaderLen], 0) != 0xffff {
		return false
	}
	if h.Fragment {
		return true
	}
	l4 := h.Payload
	switch h.Proto {
	case packet.ProtoTCP:
		if len(l4) < header.TCPMinimumSize {
			return true
		}
	case packet.ProtoUDP:
		if len(l4) < header.UDPMinimumSize {
			return true
		}
		if h.Version == 4 && l4[6] == 0 && l4[7] == 0 {
			return true // no checksum (IPv4 only)
		}
	case packet.ProtoICMPv4:
		return h.Version != 4 || len(l4) < header.ICMPv4MinimumSize || packet.Sum(l4, 0) == 0xffff
	case packet.ProtoICMPv6:
		if h.Version != 6 || len(l4) < header.ICMPv6MinimumSize {
			return true
		}
	default:
		return true
	}
	return packet.Sum(l4, packet.PseudoHeaderSum(h.Proto, h.Src, h.Dst, len(l4))) == 0xffff
}
