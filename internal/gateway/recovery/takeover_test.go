package recovery

import (
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/internal/keys"
)

// claimLog is a Claimer that records claims.
type claimLog struct{ claims []keys.Key }

func (c *claimLog) Owner(keys.Key) (cluster.Record, bool) { return cluster.Record{}, false }
func (c *claimLog) Claim(k keys.Key, ep netip.AddrPort, _ cluster.Reason) (cluster.Record, bool) {
	c.claims = append(c.claims, k)
	return cluster.Record{Client: k, Owner: "self", Endpoint: ep}, true
}

// TestSentTransportClaimsOnlyTheResponse: a takeover's client is claimed
// by the first transport packet the device sends to its endpoint with the
// sender index of the client's response as receiver, and by nothing else:
// packets to other endpoints, with another index (an old session, or a
// spoofed response the device refused), before any response, or on
// endpoints of other kinds claim nothing, and the claim happens once.
func TestSentTransportClaimsOnlyTheResponse(t *testing.T) {
	log := &claimLog{}
	r := New(Config{Self: "self", Claimer: log})
	var client keys.Key
	client[0] = 7
	ep := netip.MustParseAddrPort("127.0.0.9:4000")
	other := netip.MustParseAddrPort("127.0.0.9:4001")
	addr := netip.MustParseAddr("10.99.0.9")
	std := func(a netip.AddrPort) conn.Endpoint { return &conn.StdNetEndpoint{AddrPort: a} }
	now := time.Now()
	r.setPending(addr, pendingClaim{client: client, endpoint: ep, reason: cluster.ReasonTakeover, at: now})
	r.watchHandshake(ep, addr, now)

	r.OnSentTransport(41, std(ep)) // an old session's packet, before any response
	if r.answered(ep, now) {
		t.Fatal("answered before any response")
	}
	r.OnReceivedResponse(42, std(other))                  // another endpoint's response
	r.OnReceivedResponse(42, bindtest.ChannelEndpoint(1)) // not a socket endpoint
	r.OnSentTransport(42, std(ep))
	if len(log.claims) != 0 {
		t.Fatalf("claimed %d times before the client's response", len(log.claims))
	}
	r.OnReceivedResponse(42, std(ep))
	if !r.answered(ep, time.Now()) {
		t.Fatal("a response just arrived, yet a retry would forget its handshake")
	}
	if r.answered(ep, time.Now().Add(takeoverRetry)) {
		t.Fatal("a response older than takeoverRetry still holds retries back")
	}
	// Responses keep coming (spoofed from the client's address, say): a
	// handshake older than 2 × takeoverRetry holds no retry back.
	late := now.Add(2 * takeoverRetry)
	v, _ := r.handshakes.Load(ep)
	v.(*takeoverHandshake).respondedAt.Store(late.UnixNano())
	if r.answered(ep, late) {
		t.Fatal("responses hold a handshake's retries back for ever")
	}
	r.OnReceivedResponse(42, std(ep))
	r.OnSentTransport(41, std(ep))    // not the response's index
	r.OnSentTransport(42, std(other)) // the index, another endpoint
	r.OnSentTransport(42, bindtest.ChannelEndpoint(1))
	if len(log.claims) != 0 {
		t.Fatalf("claimed %d times without the device using the response", len(log.claims))
	}
	r.OnSentTransport(42, std(ep))
	r.OnSentTransport(42, std(ep))
	if len(log.claims) != 1 || log.claims[0] != client {
		t.Fatalf("claims %v, want one of the client", log.claims)
	}
	if r.pendingN.Load() != 0 || r.handshakesN.Load() != 0 || !r.isLive(client) {
		t.Fatalf("after the claim: pending %d, handshakes %d, live %v", r.pendingN.Load(), r.handshakesN.Load(), r.isLive(client))
	}
}

// TestSentTransportAllocs: the per-packet hooks allocate nothing, with
// and without a takeover in progress.
func TestSentTransportAllocs(t *testing.T) {
	r := New(Config{Self: "self", Claimer: &claimLog{}})
	ep := &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("127.0.0.9:4000")}
	other := &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("127.0.0.9:4001")}
	if n := testing.AllocsPerRun(1000, func() { r.OnSentTransport(1, ep); r.OnReceivedResponse(1, ep) }); n != 0 {
		t.Fatalf("idle hooks: %v allocs per packet", n)
	}
	r.watchHandshake(ep.AddrPort, netip.MustParseAddr("10.99.0.9"), time.Now())
	if n := testing.AllocsPerRun(1000, func() { r.OnSentTransport(1, other); r.OnReceivedResponse(1, other) }); n != 0 {
		t.Fatalf("hooks during a takeover: %v allocs per packet", n)
	}
}
