package gateway

import (
	"net/netip"
	"testing"

	"github.com/anyguard/anyguard/internal/gateway/recovery"
	"github.com/anyguard/anyguard/router"
	"github.com/anyguard/anyguard/router/routertest"
)

const headroom = 16

var (
	clientAddr = netip.MustParseAddr("10.99.0.2")
	serverAddr = netip.MustParseAddr("10.1.0.5")
)

// hopGateway is a Gateway with just its router and ports: what the named
// hops of the data path use. clients and egress are where packets land.
func hopGateway(t *testing.T, clients, egress router.Port) *Gateway {
	t.Helper()
	g := &Gateway{router: router.New()}
	g.clientPort = g.router.AddPort("clients", router.KindClient, clients)
	g.egressPort = g.router.AddPort("egress", router.KindEgress, egress)
	err := g.router.SetRoutes([]router.Route{
		{Prefix: netip.PrefixFrom(clientAddr, 32), Port: g.clientPort},
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Port: g.egressPort},
	})
	if err == nil {
		err = g.router.SetSources(g.clientPort, []router.SourceRule{{Prefix: netip.PrefixFrom(clientAddr, 32), Allow: true}})
	}
	if err == nil {
		err = g.router.SetSources(g.egressPort, []router.SourceRule{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Allow: true}})
	}
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestDataPathHops: fromClients carries a decrypted client packet to the
// egress and fromEgress a reply to the client device, alone and with fast
// recovery wired in (nothing pending).
func TestDataPathHops(t *testing.T) {
	for _, clustered := range []bool{false, true} {
		clients, egress := &routertest.Sink{}, &routertest.Sink{}
		g := hopGateway(t, clients, egress)
		if clustered {
			g.sessions.p.Store(recovery.New(recovery.Config{}))
		}
		g.fromClients([][]byte{routertest.Packet(headroom, clientAddr, serverAddr, 64, []byte("up"))}, headroom)
		g.fromEgress([][]byte{routertest.Packet(headroom, serverAddr, clientAddr, 64, []byte("down"))}, headroom)
		if got := egress.Packets(); len(got) != 1 || string(got[0][len(got[0])-2:]) != "up" {
			t.Errorf("clustered %v: egress got %q, want the client's packet", clustered, got)
		}
		if got := clients.Packets(); len(got) != 1 || string(got[0][len(got[0])-4:]) != "down" {
			t.Errorf("clustered %v: client device got %q, want the reply", clustered, got)
		}
		for r, n := range g.router.Stats().Drops {
			if n != 0 {
				t.Errorf("clustered %v: %d dropped (%v)", clustered, n, r)
			}
		}
	}
}

// TestDataPathDoesNotAllocate: the gateway's own hops add no allocation to
// the router's (which has its own guard).
func TestDataPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector (sync.Pool drops items)")
	}
	g := hopGateway(t, routertest.Discard{}, routertest.Discard{})
	g.sessions.p.Store(recovery.New(recovery.Config{}))
	up := [][]byte{routertest.Packet(headroom, clientAddr, serverAddr, 64, nil)}
	down := [][]byte{routertest.Packet(headroom, serverAddr, clientAddr, 64, nil)}
	g.fromClients(up, headroom) // warm the router's pool
	g.fromEgress(down, headroom)
	allocs := testing.AllocsPerRun(100, func() {
		up[0][headroom+8], down[0][headroom+8] = 64, 64 // the router decrements the TTL
		g.fromClients(up, headroom)
		g.fromEgress(down, headroom)
	})
	if allocs != 0 {
		t.Fatalf("the data-path hops allocated %.1f times per batch, want 0", allocs)
	}
}
