package gateway_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/internal/wgclient"

	"github.com/anyguard/anyguard/internal/testwait"
)

// BenchmarkFirstContactClaim measures how long a client's first contact
// takes to become a claim that the gateway's own table holds: from the
// client's handshake initiation (a real wireguard-go client, no data) to
// the record naming the gateway. Each iteration is a new client, so no
// flap damping or rekey pause applies. Report: ms/claim.
func BenchmarkFirstContactClaim(b *testing.B) {
	const clients = 64
	if b.N > clients {
		b.Skipf("at most %d iterations (-benchtime=%dx)", clients, clients)
	}
	e, ra, rb := newClusterEnv(b)
	ks := make([]keys.Key, clients)
	peers := make([]config.Peer, clients)
	for i := range ks {
		ks[i], _ = keys.Generate()
		peers[i] = config.Peer{Name: fmt.Sprintf("c%d", i), PublicKey: ks[i].Public(),
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, 1, byte(i + 1)}), 32)}}
	}
	withClients := func(cfg *config.Config) { cfg.Clients.Peers = append(cfg.Clients.Peers, peers...) }
	a1 := e.startWith(b, "a1", ra, nil, 0, withClients)
	b1 := e.startWith(b, "b1", rb, []string{gossipAddr(a1)}, 0, withClients)
	testwait.Until(b, 10*time.Second, "2 gateways joined", func() bool { return len(a1.Cluster().Members()) == 2 })
	cls := make([]*wgclient.Client, b.N)
	for i := range cls {
		c, err := wgclient.New(wgclient.Config{
			PrivateKey: ks[i], Address: peers[i].AllowedIPs[0].Addr(), Peer: e.clientsKey.Public(),
			Endpoint: clientEndpoint(b1), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/16")},
		})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		cls[i] = c
	}
	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if err := cls[i].Handshake(); err != nil {
			b.Fatal(err)
		}
		for {
			if rec, ok := b1.Cluster().Owner(ks[i].Public()); ok && rec.Owner == "b1" {
				break
			}
			if time.Since(start) > 5*time.Second {
				b.Fatalf("client %d not claimed after 5 s", i)
			}
			time.Sleep(50 * time.Microsecond)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/claim")
}
