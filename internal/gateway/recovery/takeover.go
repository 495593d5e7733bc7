package recovery

import (
	"net/netip"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway/probe"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/packet"
)

// takeover initiates a handshake to a client whose flow arrived here.
func (r *Recovery) takeover(req takeoverRequest) {
	now := time.Now()
	if now.Sub(r.lastTry[req.client]) < takeoverRetry || r.answered(req.endpoint, now) {
		return
	}
	r.lastTry[req.client] = now
	if r.ownsLive(req.client) {
		return
	}
	if r.retryInFlight(req.client, now) {
		return
	}
	// The client may not be a device peer here (yet, or any more): add
	// it, as its own initiation would.
	peer, ok, err := r.admitter.EnsureLive(req.client)
	if err != nil {
		r.logger.Warn("cannot add a moved client to the device", "client", peer.Name, "err", err)
		return
	}
	if !ok || len(peer.AllowedIPs) == 0 {
		return
	}
	addr := peer.AllowedIPs[0].Addr()
	r.setPending(addr, pendingClaim{client: req.client, endpoint: req.endpoint, reason: cluster.ReasonTakeover, at: now})
	live := r.isLive(req.client)
	if !live {
		// No confirmed session here: whatever handshake the device holds
		// is not the client's (perhaps a replayed initiation it answered)
		// and must not hold back the one that wins the client back. With
		// it gone, the device sends the client nothing until a new
		// session, so the first transport packet to the client's endpoint
		// with the new response's index proves the client (OnSentTransport).
		r.dev.ForgetHandshake(req.client)
		r.watchHandshake(req.endpoint, addr, now)
	}
	if err := r.dev.SetEndpoint(req.client, req.endpoint); err != nil {
		r.logger.Warn("cannot point a moved client's peer at its endpoint", "client", peer.Name, "err", err)
		return
	}
	// An echo request to the client makes the device handshake with it
	// (it has no session) and then deliver the request, which carries the
	// device's proof that it accepted the client's response
	// (OnSentTransport); the client's reply, decrypted over the new
	// session, claims it too (CheckPending), even when the client has
	// nothing else to send. (The device's TUN reader, not this worker,
	// computes the initiation: a burst of takeovers is not serialised
	// behind their X25519s and sends.)
	if !r.sendEcho(peer, addr) {
		if err := r.dev.Initiate(req.client, req.endpoint); err != nil {
			r.logger.Warn("cannot initiate a handshake to a moved client", "client", peer.Name, "err", err)
			return
		}
	}
	r.initiated.Add(1)
	r.logger.Info("client flow arrived here: initiating handshake", "client", peer.Name, "endpoint", req.endpoint)
}

// retryInFlight handles a request for a client whose takeover is under
// way: it started less than pendingTTL ago and waits for the client's
// first packet over the new session. The client's packets over its old
// session keep asking for a takeover meanwhile, and on a loaded machine
// the handshake takes longer than takeoverRetry: starting over would
// forget the handshake in flight (its response then matches nothing) and
// no takeover would complete while the load lasts. So a retry only asks
// again (an echo request: the device sends it over the new session if it
// has one, else stages it, and does not initiate again within
// REKEY_TIMEOUT, after which it retransmits its initiation itself), and
// costs no device reconfiguration. It reports whether req was handled.
func (r *Recovery) retryInFlight(client keys.Key, now time.Time) bool {
	peer, ok := r.index.Peer(client)
	if !ok || len(peer.AllowedIPs) == 0 {
		return false
	}
	addr := peer.AllowedIPs[0].Addr()
	v, ok := r.pending.Load(addr)
	if !ok {
		return false
	}
	p := v.(pendingClaim)
	if p.client != client || p.reason != cluster.ReasonTakeover || now.Sub(p.at) > pendingTTL {
		return false
	}
	r.sendEcho(peer, addr)
	r.retried.Add(1)
	return true
}

// takeoverHandshake is a takeover's handshake initiated by this gateway:
// the client's tunnel address (the key of its pending claim), when it
// began, and the client's latest response to it.
type takeoverHandshake struct {
	addr netip.Addr
	at   time.Time
	// response is 1<<32 | the sender index of the latest handshake
	// response from the client's endpoint (0: none yet); respondedAt its
	// arrival (unix ns).
	response    atomic.Uint64
	respondedAt atomic.Int64
}

// watchHandshake starts following the handshake of a takeover of the
// client at endpoint ep with tunnel address addr. Claim worker only.
func (r *Recovery) watchHandshake(ep netip.AddrPort, addr netip.Addr, now time.Time) {
	if _, loaded := r.handshakes.Swap(ep, &takeoverHandshake{addr: addr, at: now}); !loaded {
		r.handshakesN.Add(1)
	}
}

// answered reports whether the client at ep answered this gateway's
// handshake less than takeoverRetry ago: the device has yet to read that
// answer, and a retry would forget the handshake it answers. It holds a
// retry back at most once per handshake (for up to 2 × takeoverRetry after
// it began), so responses spoofed from the client's address cannot stop
// the takeover's retries.
func (r *Recovery) answered(ep netip.AddrPort, now time.Time) bool {
	if r.handshakesN.Load() == 0 {
		return false
	}
	v, ok := r.handshakes.Load(ep)
	if !ok {
		return false
	}
	h := v.(*takeoverHandshake)
	at := h.respondedAt.Load()
	return at != 0 && now.Sub(time.Unix(0, at)) < takeoverRetry && now.Sub(h.at) < 2*takeoverRetry
}

// watched returns the takeover handshake followed for endpoint e, if any:
// the bind's hooks cost one atomic load while none is.
func (r *Recovery) watched(e conn.Endpoint) (netip.AddrPort, *takeoverHandshake, bool) {
	if r.handshakesN.Load() == 0 {
		return netip.AddrPort{}, nil, false
	}
	ep, ok := e.(*conn.StdNetEndpoint)
	if !ok {
		return netip.AddrPort{}, nil, false
	}
	v, ok := r.handshakes.Load(ep.AddrPort)
	if !ok {
		return netip.AddrPort{}, nil, false
	}
	return ep.AddrPort, v.(*takeoverHandshake), true
}

// OnReceivedResponse is the client bind's hook for handshake responses
// arriving: one from the endpoint of a client this gateway is taking over
// is remembered by its sender index (unauthenticated: only the device's
// use of it, OnSentTransport, counts).
func (r *Recovery) OnReceivedResponse(sender uint32, from conn.Endpoint) {
	_, h, ok := r.watched(from)
	if !ok {
		return
	}
	h.response.Store(1<<32 | uint64(sender))
	h.respondedAt.Store(time.Now().UnixNano())
}

// OnSentTransport is the client bind's hook for transport packets sent:
// the first one to the endpoint of a client being taken over whose
// receiver is the sender index of the client's response is the device's
// proof that it accepted that response (which needs the client's private
// key and answers this gateway's fresh initiation), and claims the client.
func (r *Recovery) OnSentTransport(receiver uint32, to conn.Endpoint) {
	ep, h, ok := r.watched(to)
	if !ok {
		return
	}
	if h.response.Load() != 1<<32|uint64(receiver) || !r.handshakes.CompareAndDelete(ep, h) {
		return
	}
	r.handshakesN.Add(-1)
	if p, ok := r.pending.LoadAndDelete(h.addr); ok {
		r.pendingN.Add(-1)
		r.confirmedClaim(p.(pendingClaim))
	}
}

// sendEcho hands the client device an echo request from the gateway's
// own client-network address to the client's address addr. It reports
// false when the gateway has no address of addr's family.
func (r *Recovery) sendEcho(peer config.Peer, addr netip.Addr) bool {
	gw, ok := r.gatewayAddr(addr)
	if !ok {
		return false
	}
	r.seq++
	pkt := append(make([]byte, echoHeadroom), probe.EchoRequest(gw, addr, takeoverEchoID, r.seq)...)
	if err := r.port.Deliver([][]byte{pkt}, echoHeadroom); err != nil {
		r.logger.Warn("cannot send to a client", "client", peer.Name, "err", err)
	}
	return true
}

// CheckPending looks at packets decrypted from clients while a claim
// waits: the first one from the client proves its session with this
// gateway, which then claims it.
func (r *Recovery) CheckPending(bufs [][]byte, offset int) {
	if r.pendingN.Load() == 0 {
		return
	}
	for _, b := range bufs {
		src, ok := sourceAddr(b[offset:])
		if !ok {
			continue
		}
		v, ok := r.pending.LoadAndDelete(src)
		if !ok {
			continue
		}
		r.pendingN.Add(-1)
		r.confirmedClaim(v.(pendingClaim))
	}
}

// confirmedClaim claims a client whose first packet over a session with
// this gateway just decrypted.
func (r *Recovery) confirmedClaim(p pendingClaim) {
	r.live.Store(p.client, struct{}{})
	if p.reason == cluster.ReasonTakeover && r.handshakesN.Load() != 0 {
		if _, ok := r.handshakes.LoadAndDelete(p.endpoint); ok {
			r.handshakesN.Add(-1)
		}
	}
	rec, ok := r.claimer.Claim(p.client, p.endpoint, p.reason)
	switch {
	case ok && p.reason == cluster.ReasonTakeover:
		r.taken.Add(1)
	case ok:
		r.confirmed.Add(1)
	}
	if rec.Owner == r.self && rec.Endpoint.IsValid() {
		// Ours again with a live session (after a restart, the record
		// did not change): its packets need no takeover any more.
		r.foreign.CompareAndDelete(rec.Endpoint, p.client)
	}
}

// Lost forgets that client's session lives here: it moved away, or its
// peer left the device. If this gateway still owns it, its endpoint is
// recognised again for fast recovery.
func (r *Recovery) Lost(client keys.Key) {
	r.live.Delete(client)
	// A takeover under way has lost its peer and handshake: the client's
	// next packet starts a new one instead of waiting for it.
	if peer, ok := r.index.Peer(client); ok && len(peer.AllowedIPs) > 0 {
		addr := peer.AllowedIPs[0].Addr()
		if v, ok := r.pending.Load(addr); ok {
			if p := v.(pendingClaim); p.client == client && p.reason == cluster.ReasonTakeover && r.pending.CompareAndDelete(addr, v) {
				r.pendingN.Add(-1)
			}
		}
	}
	if rec, ok := r.claimer.Owner(client); ok && rec.Owner == r.self && rec.Endpoint.IsValid() {
		r.foreign.Store(rec.Endpoint, client)
	}
}

// gatewayAddr returns the gateway's own client-network address of the
// family of a.
func (r *Recovery) gatewayAddr(a netip.Addr) (netip.Addr, bool) {
	for _, p := range r.addrs {
		if p.Addr().Is4() == a.Is4() {
			return p.Addr(), true
		}
	}
	return netip.Addr{}, false
}

// echoHeadroom is the room left before packets handed to the client port.
const echoHeadroom = 16

// takeoverEchoID marks the echo requests of takeovers (the probe's
// echoRequest builds them).
const takeoverEchoID = 0x6167

// sourceAddr returns the source address of an IP packet.
func sourceAddr(p []byte) (netip.Addr, bool) {
	h, err := packet.Parse(p)
	return h.Src, err == nil
}

// OwnerChanged follows a change of a client's ownership record (or, with
// a zero old, a record known at start): a client lost to another gateway
// is no longer live here, and the map of endpoints of clients whose
// session is not here stays in step.
func (r *Recovery) OwnerChanged(old, rec cluster.Record) {
	if old.Owner == r.self && rec.Owner != r.self {
		r.live.Delete(rec.Client)
	}
	r.trackEndpoint(old, rec)
}

func (r *Recovery) trackEndpoint(old, rec cluster.Record) {
	if old.Endpoint.IsValid() {
		r.foreign.CompareAndDelete(old.Endpoint, old.Client)
	}
	if rec.Owner != "" && rec.Endpoint.IsValid() && (rec.Owner != r.self || !r.isLive(rec.Client)) {
		r.foreign.Store(rec.Endpoint, rec.Client)
	}
}
