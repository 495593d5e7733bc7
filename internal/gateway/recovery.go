package gateway

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/keys"
)

// Claims need a live session, and fast recovery when a load balancer moves
// a client's flow.
//
// A gateway claims a client only once the client has proven, with data
// that decrypted here, that it holds a session with this gateway: the
// first packet from the client's address that the client device delivers
// (wireguard-go checked it against the client's AllowedIPs, so it came
// from that client's peer). A handshake initiation alone proves nothing:
// it can be captured and replayed to another gateway of the fleet, whose
// device has never seen it and answers it. Its answer goes to the replayer,
// who cannot derive the session, so nothing decrypts, nothing is claimed,
// and the owner keeps the client and its session. A replay costs the
// receiving gateway one handshake response and a pending entry that
// expires after pendingTTL.
//
// After the client's own initiation: the just-in-time worker registers the
// authenticated initiation by its sender index (expectConfirmation); when
// the device sends its response (the bind's response hook, onResponse), the
// client's tunnel address becomes pending and the claim worker queues an
// ICMP echo request to it. The device sends that request once the client
// confirms the session (wireguard-go holds it until then, and will not
// initiate a handshake of its own for REKEY_TIMEOUT after a response), so
// a client that has nothing to send still answers and is claimed; one with
// traffic is claimed on its first packet.
//
// After a move: the gateway that starts receiving a client's transport
// packets has no session to decrypt them, and a stock client would only
// re-handshake after 15 s or more. But the ownership record names the
// client's endpoint, so the new gateway knows at the first packet whose
// flow it is: it initiates a handshake to the client at once (with the
// shared identity the client accepts from any gateway), and claims the
// client when the client's first packet decrypts over the new session.
// A spoofed packet from a client's address can make a gateway send a
// handshake, but cannot move the client.
//
// A gateway that restarts under its old name finds records naming itself
// for clients it holds no session with. Only clients whose session this
// process confirmed count as its own (live): the others' endpoints are
// recognised for fast recovery like any other gateway's clients, so a flow
// that comes back to the restarted gateway recovers as fast as any move.

// takeoverRetry is how soon a gateway tries again to win back a client.
const takeoverRetry = time.Second

// pendingTTL is how long a takeover waits for the client's first packet
// over the new session; a client that sends none by then has gone
// elsewhere, and its next packet here starts a new takeover.
const pendingTTL = 10 * time.Second

// awaitingMax bounds the authenticated initiations waiting for the
// device's response; beyond it (an insider with one client key sending
// fresh initiations as fast as the worker reads them) the oldest wait
// their turn to expire and new ones are not registered: their clients are
// claimed on their next initiation.
const awaitingMax = 1 << 16

type recovery struct {
	// foreign maps the endpoints of clients whose session is not here
	// (owned by another gateway, or by this one before a restart) to the
	// client.
	foreign  sync.Map // netip.AddrPort → keys.Key
	requests chan takeoverRequest
	// awaiting holds authenticated client initiations released to the
	// device until its response: initiation sender index → pendingClaim.
	awaiting  sync.Map
	awaitingN atomic.Int32
	// confirms carries the clients the device has answered to the claim
	// worker, which asks them to answer in turn.
	confirms chan pendingClaim
	pending  sync.Map // netip.Addr (client tunnel address) → pendingClaim
	pendingN atomic.Int32
	// live holds the clients whose session this process has seen
	// confirmed: keys.Key → struct{}.
	live    sync.Map
	lastTry map[keys.Key]time.Time // claim worker only
	seq     uint16                 // claim worker only

	initiated   atomic.Uint64 // takeovers begun
	taken       atomic.Uint64 // claims written after a takeover
	confirmed   atomic.Uint64 // claims written after the client's own handshake
	unconfirmed atomic.Uint64 // answered initiations whose session never confirmed
}

// takeoverRequest asks the claim worker to win back a client whose
// transport packets arrive here.
type takeoverRequest struct {
	client   keys.Key
	endpoint netip.AddrPort
}

// pendingClaim is a claim that waits for the client's first packet over a
// session with this gateway.
type pendingClaim struct {
	client   keys.Key
	endpoint netip.AddrPort
	reason   cluster.Reason // cluster.ReasonHandshake or cluster.ReasonTakeover
	at       time.Time      // when the wait began
}

// expire forgets claims that have waited longer than pendingTTL for the
// client's first packet (or the device's response), so checkPending's
// per-batch work stops once nothing is pending, and retry times that no
// longer hold anything back. Claim worker only.
func (r *recovery) expire(now time.Time) {
	r.pending.Range(func(k, v any) bool {
		p := v.(pendingClaim)
		if now.Sub(p.at) > pendingTTL && r.pending.CompareAndDelete(k, v) {
			r.pendingN.Add(-1)
			if p.reason == cluster.ReasonHandshake {
				r.unconfirmed.Add(1)
			}
		}
		return true
	})
	r.awaiting.Range(func(k, v any) bool {
		if now.Sub(v.(pendingClaim).at) > pendingTTL && r.awaiting.CompareAndDelete(k, v) {
			r.awaitingN.Add(-1)
		}
		return true
	})
	for k, t := range r.lastTry {
		if now.Sub(t) > takeoverRetry {
			delete(r.lastTry, k)
		}
	}
}

func newRecovery() *recovery {
	return &recovery{
		requests: make(chan takeoverRequest, 256),
		confirms: make(chan pendingClaim, 256),
		lastTry:  make(map[keys.Key]time.Time),
	}
}

// claimStats returns the claim counters (anyguard_claims_total).
func (cp *clusterPart) claimStats() map[string]uint64 {
	r := cp.rec
	return map[string]uint64{
		"confirmed": r.confirmed.Load(), "unconfirmed": r.unconfirmed.Load(),
		"takeover_started": r.initiated.Load(), "takeover_claimed": r.taken.Load(),
	}
}

// isLive reports whether this process has seen the client's session with
// it confirmed (and not lost since).
func (r *recovery) isLive(client keys.Key) bool {
	_, ok := r.live.Load(client)
	return ok
}

// ownsLive reports whether this gateway owns client and holds its session:
// then neither the client's handshakes nor its packets need a claim.
func (cp *clusterPart) ownsLive(client keys.Key) bool {
	if !cp.rec.isLive(client) {
		return false
	}
	rec, ok := cp.c.Owner(client)
	return ok && rec.Owner == cp.self
}

// expectConfirmation registers the authenticated initiation of client,
// from endpoint, with sender index sender, before it is released to the
// device: the device's response to it starts the wait for the client's
// first packet (onResponse). A client this gateway owns with a live
// session needs no claim. Just-in-time worker only.
func (cp *clusterPart) expectConfirmation(sender uint32, client keys.Key, endpoint netip.AddrPort) {
	if cp.ownsLive(client) || cp.rec.awaitingN.Load() >= awaitingMax {
		return
	}
	p := pendingClaim{client: client, endpoint: endpoint, reason: cluster.ReasonHandshake, at: time.Now()}
	if _, loaded := cp.rec.awaiting.Swap(sender, p); !loaded {
		cp.rec.awaitingN.Add(1)
	}
}

// onResponse is the client bind's response hook: the device answered the
// initiation with sender index receiver. If it was a client's registered
// initiation, the client's first packet from now on claims it, and the
// claim worker asks the client for one.
func (cp *clusterPart) onResponse(receiver uint32) {
	if cp.rec.awaitingN.Load() == 0 {
		return
	}
	v, ok := cp.rec.awaiting.LoadAndDelete(receiver)
	if !ok {
		return
	}
	cp.rec.awaitingN.Add(-1)
	p := v.(pendingClaim)
	peer, ok := cp.g.peer(p.client)
	if !ok || len(peer.AllowedIPs) == 0 {
		return
	}
	p.at = time.Now()
	cp.rec.setPending(peer.AllowedIPs[0].Addr(), p)
	select {
	case cp.rec.confirms <- p:
	default: // the client's own traffic will do
	}
}

func (r *recovery) setPending(addr netip.Addr, p pendingClaim) {
	if _, loaded := r.pending.Swap(addr, p); !loaded {
		r.pendingN.Add(1)
	}
}

// askConfirmation sends an echo request to a client whose initiation the
// device has answered: the device holds it until the client confirms the
// session, and the client's reply then claims it even when it has nothing
// else to send. Claim worker only.
func (cp *clusterPart) askConfirmation(p pendingClaim) {
	peer, ok := cp.g.peer(p.client)
	if !ok || len(peer.AllowedIPs) == 0 {
		return
	}
	cp.sendEcho(peer, peer.AllowedIPs[0].Addr())
}

// onTransport runs per received transport packet: one map lookup, and a
// request to the worker when the sender is a client another gateway owns.
func (cp *clusterPart) onTransport(from conn.Endpoint) {
	ep, ok := from.(*conn.StdNetEndpoint)
	if !ok {
		return
	}
	v, ok := cp.rec.foreign.Load(ep.AddrPort)
	if !ok {
		return
	}
	select {
	case cp.rec.requests <- takeoverRequest{client: v.(keys.Key), endpoint: ep.AddrPort}:
	default:
	}
}

// takeover initiates a handshake to a client whose flow arrived here.
func (cp *clusterPart) takeover(req takeoverRequest) {
	now := time.Now()
	if now.Sub(cp.rec.lastTry[req.client]) < takeoverRetry {
		return
	}
	cp.rec.lastTry[req.client] = now
	if cp.ownsLive(req.client) {
		return
	}
	// The client may not be a device peer here (yet, or any more): add
	// it, as its own initiation would.
	peer, ok, err := cp.g.jit.ensureLive(req.client)
	if err != nil {
		cp.logger.Warn("cannot add a moved client to the device", "client", peer.Name, "err", err)
		return
	}
	if !ok || len(peer.AllowedIPs) == 0 {
		return
	}
	addr := peer.AllowedIPs[0].Addr()
	cp.rec.setPending(addr, pendingClaim{client: req.client, endpoint: req.endpoint, reason: cluster.ReasonTakeover, at: now})
	if !cp.rec.isLive(req.client) {
		// No confirmed session here: whatever handshake the device holds
		// is not the client's (perhaps a replayed initiation it answered)
		// and must not hold back the one that wins the client back.
		cp.g.clients.ForgetHandshake(req.client)
	}
	if err := cp.g.clients.SetEndpoint(req.client, req.endpoint); err != nil {
		cp.logger.Warn("cannot point a moved client's peer at its endpoint", "client", peer.Name, "err", err)
		return
	}
	// An echo request to the client makes the device handshake with it
	// (it has no session) and then deliver the request; the client's reply,
	// decrypted over the new session, is what claims it (checkPending),
	// even when the client has nothing else to send.
	if !cp.sendEcho(peer, addr) {
		if err := cp.g.clients.Initiate(req.client, req.endpoint); err != nil {
			cp.logger.Warn("cannot initiate a handshake to a moved client", "client", peer.Name, "err", err)
			return
		}
	}
	cp.rec.initiated.Add(1)
	cp.logger.Info("client flow arrived here: initiating handshake", "client", peer.Name, "endpoint", req.endpoint)
}

// sendEcho hands the client device an echo request from the gateway's
// own client-network address to the client's address addr. It reports
// false when the gateway has no address of addr's family.
func (cp *clusterPart) sendEcho(peer config.Peer, addr netip.Addr) bool {
	gw, ok := cp.gatewayAddr(addr)
	if !ok {
		return false
	}
	cp.rec.seq++
	pkt := append(make([]byte, echoHeadroom), echoRequest(gw, addr, takeoverEchoID, cp.rec.seq)...)
	if err := cp.g.port.Deliver([][]byte{pkt}, echoHeadroom); err != nil {
		cp.logger.Warn("cannot send to a client", "client", peer.Name, "err", err)
	}
	return true
}

// checkPending looks at packets decrypted from clients while a claim
// waits: the first one from the client proves its session with this
// gateway, which then claims it.
func (cp *clusterPart) checkPending(bufs [][]byte, offset int) {
	if cp.rec.pendingN.Load() == 0 {
		return
	}
	for _, b := range bufs {
		src, ok := sourceAddr(b[offset:])
		if !ok {
			continue
		}
		v, ok := cp.rec.pending.LoadAndDelete(src)
		if !ok {
			continue
		}
		cp.rec.pendingN.Add(-1)
		cp.confirmedClaim(v.(pendingClaim))
	}
}

// confirmedClaim claims a client whose first packet over a session with
// this gateway just decrypted.
func (cp *clusterPart) confirmedClaim(p pendingClaim) {
	cp.rec.live.Store(p.client, struct{}{})
	rec, ok := cp.c.Claim(p.client, p.endpoint, p.reason)
	switch {
	case ok && p.reason == cluster.ReasonTakeover:
		cp.rec.taken.Add(1)
	case ok:
		cp.rec.confirmed.Add(1)
	}
	if rec.Owner == cp.self && rec.Endpoint.IsValid() {
		// Ours again with a live session (after a restart, the record
		// did not change): its packets need no takeover any more.
		cp.rec.foreign.CompareAndDelete(rec.Endpoint, p.client)
	}
}

// lost forgets that client's session lives here: it moved away, or its
// peer left the device. If this gateway still owns it, its endpoint is
// recognised again for fast recovery.
func (cp *clusterPart) lost(client keys.Key) {
	cp.rec.live.Delete(client)
	if rec, ok := cp.c.Owner(client); ok && rec.Owner == cp.self && rec.Endpoint.IsValid() {
		cp.rec.foreign.Store(rec.Endpoint, client)
	}
}

// gatewayAddr returns the gateway's own client-network address of the
// family of a.
func (cp *clusterPart) gatewayAddr(a netip.Addr) (netip.Addr, bool) {
	for _, p := range cp.g.Config().Clients.Address {
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
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		return netip.AddrFrom4([4]byte(p[12:16])), true
	case len(p) >= 40 && p[0]>>4 == 6:
		return netip.AddrFrom16([16]byte(p[8:24])), true
	}
	return netip.Addr{}, false
}

// trackEndpoint keeps the map of endpoints of clients whose session is
// not here in step with an ownership change.
func (cp *clusterPart) trackEndpoint(old, rec cluster.Record) {
	if old.Endpoint.IsValid() {
		cp.rec.foreign.CompareAndDelete(old.Endpoint, old.Client)
	}
	if rec.Owner != "" && rec.Endpoint.IsValid() && (rec.Owner != cp.self || !cp.rec.isLive(rec.Client)) {
		cp.rec.foreign.Store(rec.Endpoint, rec.Client)
	}
}
