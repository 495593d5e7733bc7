package recovery

import (
	"net/netip"
	"testing"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/internal/gateway/probe"
	"github.com/anyguard/anyguard/internal/keys"
)

// fakeClaimer is an ownership table that grants every claim.
type fakeClaimer struct {
	claims []keys.Key
}

func (f *fakeClaimer) Owner(keys.Key) (cluster.Record, bool) { return cluster.Record{}, false }

func (f *fakeClaimer) Claim(client keys.Key, endpoint netip.AddrPort, reason cluster.Reason) (cluster.Record, bool) {
	f.claims = append(f.claims, client)
	return cluster.Record{Client: client, Owner: "a1", Endpoint: endpoint, Reason: reason}, true
}

// TestCheckPendingClaimsOnFirstPacket: while a claim waits, junk and
// packets from other sources claim nothing; the client's first packet
// claims it once, and it is live from then on.
func TestCheckPendingClaimsOnFirstPacket(t *testing.T) {
	fc := &fakeClaimer{}
	r := New(Config{Self: "a1", Claimer: fc})
	var alice keys.Key
	alice[0] = 1
	addr := netip.MustParseAddr("10.99.0.2")
	r.setPending(addr, pendingClaim{client: alice, endpoint: netip.MustParseAddrPort("192.0.2.7:51820"),
		reason: cluster.ReasonHandshake, at: time.Now()})
	const off = 4
	pkt := func(src string) []byte {
		return append(make([]byte, off), probe.EchoRequest(netip.MustParseAddr(src), netip.MustParseAddr("10.99.0.1"), 1, 1)...)
	}
	junk := [][]byte{make([]byte, off), append(make([]byte, off), 0x45, 0, 0), append(make([]byte, off), 0x60), pkt("10.99.0.3")}
	r.CheckPending(junk, off)
	if len(fc.claims) != 0 || r.isLive(alice) {
		t.Fatalf("claimed %v on packets not from the client", fc.claims)
	}
	r.CheckPending([][]byte{pkt("10.99.0.2"), pkt("10.99.0.2")}, off)
	if len(fc.claims) != 1 || fc.claims[0] != alice || !r.isLive(alice) {
		t.Fatalf("claims %v, live %v; want alice once", fc.claims, r.isLive(alice))
	}
	if n := r.pendingN.Load(); n != 0 {
		t.Fatalf("%d claims still pending", n)
	}
	if got := r.Stats()["confirmed"]; got != 1 {
		t.Fatalf("confirmed %d, want 1", got)
	}
}
