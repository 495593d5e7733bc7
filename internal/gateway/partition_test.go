package gateway_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/cluster/clustertest"
	"github.com/anyguard/anyguard/internal/wgclient"

	"github.com/anyguard/anyguard/internal/testwait"
)

// TestPartitionHealsRoutes: two regions of two gateways, gossip between
// the regions cut for longer than memberlist keeps a dead member (shrunk
// to 1 s here; the profile's timings otherwise). While cut, region A has
// no route to region B. Within 10 s of the link returning every gateway
// lists all four alive, and a client on region A reaches region B's
// service again.
func TestPartitionHealsRoutes(t *testing.T) {
	p := clustertest.NewPartition()
	e, ra, rb := newClusterEnv(t)
	e.clusterConfig = func(name string, c *cluster.Config) {
		tr, _, err := p.Transport(int(name[0])) // region by first letter
		if err != nil {
			t.Fatal(err)
		}
		c.Transport = tr
		c.GossipToTheDeadTime = time.Second
	}
	a1 := e.start(t, "a1", ra, nil, 0)
	e.start(t, "a2", ra, []string{gossipAddr(a1)}, 0)
	b1 := e.start(t, "b1", rb, []string{gossipAddr(a1)}, 0)
	e.start(t, "b2", rb, []string{gossipAddr(b1)}, 0)
	alive := func(n int) func() bool {
		return func() bool {
			for _, g := range e.gws {
				k := 0
				for _, m := range g.Cluster().Members() {
					if m.Alive {
						k++
					}
				}
				if k != n {
					return false
				}
			}
			return true
		}
	}
	testwait.Until(t, 10*time.Second, "4 gateways in every view", alive(4))
	client, err := wgclient.New(wgclient.Config{
		PrivateKey: e.alice, Address: clientAddr, Peer: e.clientsKey.Public(), Endpoint: clientEndpoint(a1),
		AllowedIPs: []netip.Prefix{ra.prefix, rb.prefix},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	mustFetch(t, client, ra)
	mustFetch(t, client, rb)

	p.Cut(true)
	testwait.Until(t, 15*time.Second, "each region to see the other dead", alive(2))
	testwait.Until(t, 5*time.Second, "a1 to drop its route to region B", func() bool {
		_, ok := a1.Router().LookupHop(rb.service.Addr())
		return !ok
	})
	time.Sleep(3 * time.Second) // memberlist forgets the dead (1 s and a probe round): nothing to await
	p.Cut(false)
	healed := time.Now()
	testwait.Until(t, 10*time.Second, "4 gateways in every view again", alive(4))
	t.Logf("members back %s after the link returned", time.Since(healed).Round(time.Millisecond))
	mustFetch(t, client, rb)
	t.Logf("client reached region B %s after the link returned", time.Since(healed).Round(time.Millisecond))
	if d := time.Since(healed); d > 10*time.Second {
		t.Fatalf("region B reachable again only after %s", d)
	}
	if m := a1.Metrics(); m.Gossip["reconnected"] < 2 {
		t.Fatalf("a1 counted %d members back", m.Gossip["reconnected"])
	}
}
