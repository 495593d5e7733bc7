package recovery

import (
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/internal/keys"
)

// isLive reports whether this process has seen the client's session with
// it confirmed (and not lost since).
func (r *Recovery) isLive(client keys.Key) bool {
	_, ok := r.live.Load(client)
	return ok
}

// ownsLive reports whether this gateway owns client and holds its session:
// then neither the client's handshakes nor its packets need a claim.
func (r *Recovery) ownsLive(client keys.Key) bool {
	if !r.isLive(client) {
		return false
	}
	rec, ok := r.claimer.Owner(client)
	return ok && rec.Owner == r.self
}

// NeedsClaim reports whether an initiation of client would need
// ExpectConfirmation: false when this gateway owns the client with a live
// session, so admission may release it unread. Admission worker.
func (r *Recovery) NeedsClaim(client keys.Key) bool { return !r.ownsLive(client) }

// ExpectConfirmation registers the authenticated initiation of client,
// from endpoint, with sender index sender, before it is released to the
// device: the device's response to it starts the wait for the client's
// first packet (OnResponse). A client this gateway owns with a live
// session needs no claim. Just-in-time worker only.
func (r *Recovery) ExpectConfirmation(sender uint32, client keys.Key, endpoint netip.AddrPort) {
	if r.ownsLive(client) || r.awaitingN.Load() >= awaitingMax {
		return
	}
	p := pendingClaim{client: client, endpoint: endpoint, reason: cluster.ReasonHandshake, at: time.Now()}
	if _, loaded := r.awaiting.Swap(sender, p); !loaded {
		r.awaitingN.Add(1)
	}
}

// OnResponse is the client bind's response hook: the device answered the
// initiation with sender index receiver. If it was a client's registered
// initiation, the client's first packet from now on claims it, and the
// claim worker asks the client for one.
func (r *Recovery) OnResponse(receiver uint32) {
	if r.awaitingN.Load() == 0 {
		return
	}
	v, ok := r.awaiting.LoadAndDelete(receiver)
	if !ok {
		return
	}
	r.awaitingN.Add(-1)
	p := v.(pendingClaim)
	peer, ok := r.index.Peer(p.client)
	if !ok || len(peer.AllowedIPs) == 0 {
		return
	}
	p.at = time.Now()
	r.setPending(peer.AllowedIPs[0].Addr(), p)
	select {
	case r.confirms <- p:
	default: // the client's own traffic will do
	}
}

func (r *Recovery) setPending(addr netip.Addr, p pendingClaim) {
	if _, loaded := r.pending.Swap(addr, p); !loaded {
		r.pendingN.Add(1)
	}
}

// askConfirmation sends an echo request to a client whose initiation the
// device has answered: the device holds it until the client confirms the
// session, and the client's reply then claims it even when it has nothing
// else to send. Claim worker only.
func (r *Recovery) askConfirmation(p pendingClaim) {
	peer, ok := r.index.Peer(p.client)
	if !ok || len(peer.AllowedIPs) == 0 {
		return
	}
	r.sendEcho(peer, peer.AllowedIPs[0].Addr())
}

// OnTransport runs per received transport packet: one map lookup, and a
// request to the worker when the sender is a client another gateway owns.
func (r *Recovery) OnTransport(from conn.Endpoint) {
	ep, ok := from.(*conn.StdNetEndpoint)
	if !ok {
		return
	}
	v, ok := r.foreign.Load(ep.AddrPort)
	if !ok {
		return
	}
	select {
	case r.requests <- takeoverRequest{client: v.(keys.Key), endpoint: ep.AddrPort}:
	default:
	}
}

// Foreign returns the client whose recorded endpoint ep is, when this
// gateway holds no confirmed session with it (another gateway owns it, or
// this one did before a restart): the drain relay's candidates.
func (r *Recovery) Foreign(ep netip.AddrPort) (keys.Key, bool) {
	v, ok := r.foreign.Load(ep)
	if !ok {
		return keys.Key{}, false
	}
	return v.(keys.Key), true
}
