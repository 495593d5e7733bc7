package admission

import (
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/device/handshake"
)

// The data-path probe's way past the queue.
//
// The probe (package probe) is a WireGuard peer of the client device that
// handshakes over loopback from a socket of its own. Behind a herd its
// initiation would wait in the queue with thousands of others, or be sent
// a cookie reply and retry only after 5 s: the probe fails, the gateway
// turns unready, and the load balancer moves still more flows onto the
// gateways that are left. So an initiation from the probe's own address
// and port (Config.ProbeEndpoint) is held apart, in a slot of one, and the
// worker takes it before the next queued initiation: it reads it (one
// X25519) and releases it, without pacing, only if it is the probe's key
// (Config.Reserved) and the probe is a device peer. Anything else from
// there is dropped and counted (unreadable, not_authentic).
//
// Nothing else gets this way: the address is loopback, which the kernel
// does not accept from the network, and its port is bound by the probe,
// and even then the key must be the probe's, whose private half never
// leaves memory. One that comes from there less than probeGap after the
// last goes the ordinary way, so a local process spoofing the probe's
// address costs the worker at most one X25519 per probeGap. The device
// itself checks the probe's timestamp, as for any peer of its own.

// probeGap is the least time between two probe initiations held apart:
// wireguard-go's own least time between two initiations of one peer that
// it consumes (HandshakeInitationRate). The probe sends one per
// RekeyTimeout (5 s) at most, except when its device restarts, which a
// round's failure and a test may both ask for at once.
const probeGap = 50 * time.Millisecond

// holdProbe holds msg apart for the worker if it comes from the probe's
// endpoint, reporting whether it did. Receive goroutines.
func (a *Admission) holdProbe(msg []byte, from conn.Endpoint, now time.Time) bool {
	if a.probeEndpoint == nil || from == nil {
		return false
	}
	ep := a.probeEndpoint()
	if !ep.IsValid() {
		return false
	}
	// A dual-stack socket names an IPv4 source as IPv4-mapped IPv6.
	if got := endpointAddr(from); got.Port() != ep.Port() || got.Addr().Unmap() != ep.Addr().Unmap() {
		return false
	}
	last := a.probeLast.Load()
	if now.UnixNano()-last < int64(probeGap) || !a.probeLast.CompareAndSwap(last, now.UnixNano()) {
		return false
	}
	if !a.reader.CheckMAC1(msg) {
		a.unreadable.Add(1)
		return true
	}
	h := heldInitiation{from: from, at: now.UnixNano()}
	copy(h.msg[:], msg)
	select {
	case a.probeHeld <- h:
		return true
	default:
		return false
	}
}

// handleProbe releases h, held apart by holdProbe, if it is the probe's
// initiation. Worker only.
func (a *Admission) handleProbe(h *heldInitiation, in *handshake.Initiation) {
	if err := a.reader.Read(h.msg[:], in); err != nil {
		a.unreadable.Add(1)
		return
	}
	if in.Static != a.reserved || !a.dev.HasPeer(in.Static) {
		a.notAuthentic.Add(1)
		return
	}
	if !a.bind.Release(h.msg[:], h.from) {
		return
	}
	a.accepted.Add(1)
	a.probeReleased.Add(1)
	a.released++ // the device answers it like any other
}
