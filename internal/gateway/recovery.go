package gateway

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/internal/keys"
)

// Fast recovery when a load balancer moves a client's flow.
//
// The gateway that starts receiving a client's transport packets after a
// move has no session to decrypt them, and a stock client would only
// re-handshake after 15 s or more. But the ownership record names the
// client's endpoint, so the new gateway knows at the first packet whose
// flow it is: it initiates a handshake to the client at once (with the
// shared identity the client accepts from any gateway), and claims the
// client when the client's first packet decrypts over the new session.
// Claiming only then means a spoofed packet from a client's address can
// make a gateway send a handshake, but cannot move the client.

// takeoverRetry is how soon a gateway tries again to win back a client.
const takeoverRetry = time.Second

// pendingTTL is how long a takeover waits for the client's first packet
// over the new session; a client that sends none by then has gone
// elsewhere, and its next packet here starts a new takeover.
const pendingTTL = 10 * time.Second

type recovery struct {
	foreign   sync.Map // netip.AddrPort → keys.Key: endpoints of clients others own
	requests  chan takeoverRequest
	pending   sync.Map // netip.Addr (client tunnel address) → takeoverRequest
	pendingN  atomic.Int32
	lastTry   map[keys.Key]time.Time // claim worker only
	seq       uint16                 // claim worker only
	initiated atomic.Uint64
	taken     atomic.Uint64
}

type takeoverRequest struct {
	client   keys.Key
	endpoint netip.AddrPort
	at       time.Time // when the takeover began (set by takeover)
}

// expire forgets takeovers that have waited longer than pendingTTL, so
// checkPending's per-batch work stops once nothing is pending, and retry
// times that no longer hold anything back. Claim worker only.
func (r *recovery) expire(now time.Time) {
	r.pending.Range(func(k, v any) bool {
		if now.Sub(v.(takeoverRequest).at) > pendingTTL {
			if r.pending.CompareAndDelete(k, v) {
				r.pendingN.Add(-1)
			}
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
	return &recovery{requests: make(chan takeoverRequest, 256), lastTry: make(map[keys.Key]time.Time)}
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
	if rec, ok := cp.c.Owner(req.client); ok && rec.Owner == cp.self {
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
	req.at = now
	if _, loaded := cp.rec.pending.Swap(addr, req); !loaded {
		cp.rec.pendingN.Add(1)
	}
	// An echo request to the client makes the device handshake with it
	// (it has no session) and then deliver the request; the client's reply,
	// decrypted over the new session, is what claims it (checkPending),
	// even when the client has nothing else to send.
	gw, ok := cp.gatewayAddr(addr)
	if err := cp.g.clients.SetEndpoint(req.client, req.endpoint); err != nil {
		cp.logger.Warn("cannot point a moved client's peer at its endpoint", "client", peer.Name, "err", err)
		return
	}
	if ok {
		cp.rec.seq++
		pkt := append(make([]byte, echoHeadroom), echoRequest(gw, addr, takeoverEchoID, cp.rec.seq)...)
		if err := cp.g.port.Deliver([][]byte{pkt}, echoHeadroom); err != nil {
			cp.logger.Warn("cannot send to a moved client", "client", peer.Name, "err", err)
			return
		}
	} else if err := cp.g.clients.Initiate(req.client, req.endpoint); err != nil {
		cp.logger.Warn("cannot initiate a handshake to a moved client", "client", peer.Name, "err", err)
		return
	}
	cp.rec.initiated.Add(1)
	cp.logger.Info("client flow arrived here: initiating handshake", "client", peer.Name, "endpoint", req.endpoint)
}

// checkPending looks at packets decrypted from clients while a takeover
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
		req := v.(takeoverRequest)
		if _, ok := cp.c.Claim(req.client, req.endpoint, cluster.ReasonTakeover); ok {
			cp.rec.taken.Add(1)
		}
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

// trackEndpoint keeps the map of endpoints whose clients other gateways
// own in step with an ownership change.
func (cp *clusterPart) trackEndpoint(old, rec cluster.Record) {
	if old.Endpoint.IsValid() {
		if v, ok := cp.rec.foreign.Load(old.Endpoint); ok && v.(keys.Key) == old.Client {
			cp.rec.foreign.Delete(old.Endpoint)
		}
	}
	if rec.Owner != "" && rec.Owner != cp.self && rec.Endpoint.IsValid() {
		cp.rec.foreign.Store(rec.Endpoint, rec.Client)
	}
}
