package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/internal/lbsim"
	"github.com/anyguard/anyguard/internal/wgclient"

	"github.com/anyguard/anyguard/internal/testwait"
)

// region is one simulated region: a private prefix with a web service.
type region struct {
	name    string
	prefix  netip.Prefix
	service netip.AddrPort
	srv     *httptest.Server
	// echo is a UDP echo service at the region's .7 port 7, started
	// by withEcho.
	echo, echoReal netip.AddrPort
	echoDelay      time.Duration // the echo service answers this late
}

// withEcho adds a UDP echo service to r.
func (r *region) withEcho(t *testing.T) netip.AddrPort {
	r.echo = netip.AddrPortFrom(r.prefix.Addr().Next().Next().Next().Next().Next().Next().Next(), 7)
	if r.echoDelay == 0 {
		r.echoReal = netip.MustParseAddrPort(udpEcho(t))
		return r.echo
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			msg := append([]byte(nil), buf[:n]...)
			time.AfterFunc(r.echoDelay, func() { pc.WriteToUDPAddrPort(msg, from) })
		}
	}()
	r.echoReal = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	return r.echo
}

func newRegion(t testing.TB, name string, second byte) *region {
	r := &region{
		name:    name,
		prefix:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, second, 0, 0}), 16),
		service: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, second, 0, 10}), 80),
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.WriteString(w, "hello from "+name)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// dial maps the region's service address onto its loopback server.
func (r *region) dial(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error) {
	if network == "udp" && r.echo.IsValid() && dst == r.echo {
		var d net.Dialer
		return d.DialContext(ctx, network, r.echoReal.String())
	}
	if dst != r.service {
		return nil, fmt.Errorf("no host at %s in region %s", dst, r.name)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, r.srv.Listener.Addr().String())
}

type clusterEnv struct {
	clientsKey keys.Key
	alice      keys.Key
	secret     keys.Key
	gws        map[string]*gateway.Gateway
	// clusterConfig, when set, edits each gateway's cluster configuration.
	clusterConfig func(name string, c *cluster.Config)
	// noDrainRelay starts the gateways with the drain relay off.
	noDrainRelay bool
}

func (e *clusterEnv) start(t testing.TB, name string, r *region, join []string, skew time.Duration) *gateway.Gateway {
	t.Helper()
	return e.startWith(t, name, r, join, skew, nil)
}

// startWith starts a gateway whose configuration mod may change last.
func (e *clusterEnv) startWith(t testing.TB, name string, r *region, join []string, skew time.Duration, mod func(*config.Config)) *gateway.Gateway {
	t.Helper()
	bb, _ := keys.Generate()
	cfg := testConfig(e.clientsKey, e.alice, r.prefix)
	cfg.Node = config.Node{Name: name, Region: r.name}
	cfg.Backbone.PrivateKey = bb
	cfg.Backbone.ListenPort = 0
	cfg.Cluster.Bind = "127.0.0.1:0"
	cfg.Cluster.Join = join
	cfg.Cluster.SecretKey = e.secret
	if mod != nil {
		mod(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	opts := gateway.Options{NetstackDial: r.dial, ClusterClock: func() time.Time { return time.Now().Add(skew) }, NoDrainRelay: e.noDrainRelay}
	if e.clusterConfig != nil {
		opts.ClusterConfig = func(c *cluster.Config) { e.clusterConfig(name, c) }
	}
	g, err := gateway.New(cfg, opts)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(g.Close)
	e.gws[name] = g
	return g
}

func gossipAddr(g *gateway.Gateway) string { return g.Cluster().LocalAddr().String() }

func clientEndpoint(g *gateway.Gateway) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), g.ListenPort())
}

func fetch(c *wgclient.Client, svc netip.AddrPort) (string, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: c.DialContext}, Timeout: 3 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + svc.String() + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// mustFetch retries briefly: right after a move the new route may still be
// converging, which is what the test measures, not a failure.
func mustFetch(t *testing.T, c *wgclient.Client, r *region) {
	t.Helper()
	testwait.NoError(t, 10*time.Second, fmt.Sprintf("the client to reach %s's service %s", r.name, r.service), func() error {
		body, err := fetch(c, r.service)
		if err == nil && body == "hello from "+r.name {
			return nil
		}
		return fmt.Errorf("body %q, err %v", body, err)
	})
}

func ownersAgree(e *clusterEnv, want string) bool {
	for _, g := range e.gws {
		rec, ok := g.Cluster().Owner(e.alice.Public())
		if !ok || rec.Owner != want {
			return false
		}
	}
	return true
}

// TestClusterClientReachesEveryRegion: two regions, three gateways with
// clocks ±30 s apart. A client on a gateway of region A reaches the
// services of both regions; it moves to a gateway of region B (as a load
// balancer would move it) and, once that gateway claims it, reaches both
// again, and every gateway agrees on the owner.
func TestClusterClientReachesEveryRegion(t *testing.T) {
	e, ra, rb := newClusterEnv(t)
	a1 := e.start(t, "a1", ra, nil, 0)
	b1 := e.start(t, "b1", rb, []string{gossipAddr(a1)}, 30*time.Second)
	e.start(t, "b2", rb, []string{gossipAddr(a1)}, -30*time.Second)
	testwait.Until(t, 10*time.Second, "3 gateways in every view", func() bool {
		for _, g := range e.gws {
			n := 0
			for _, m := range g.Cluster().Members() {
				if m.Alive {
					n++
				}
			}
			if n != 3 {
				return false
			}
		}
		return true
	})

	// One front address before all three gateways, like an NLB.
	lb, err := lbsim.New("127.0.0.1:0", []netip.AddrPort{clientEndpoint(a1), clientEndpoint(b1), clientEndpoint(e.gws["b2"])})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	client, err := wgclient.New(wgclient.Config{
		PrivateKey: e.alice, Address: clientAddr, Peer: e.clientsKey.Public(), Endpoint: lb.Addr(),
		AllowedIPs: []netip.Prefix{ra.prefix, rb.prefix},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	mustFetch(t, client, ra)
	flows := lb.Flows()
	if len(flows) != 1 {
		t.Fatalf("load balancer has %d flows, want 1", len(flows))
	}
	first, _ := lb.Backend(flows[0])
	names := []string{"a1", "b1", "b2"}
	owner := names[first]
	testwait.Until(t, 5*time.Second, "every gateway to agree on alice's owner", func() bool { return ownersAgree(e, owner) })
	mustFetch(t, client, rb)
	mustFetch(t, client, ra)

	// The load balancer moves the flow to another gateway (of the other
	// region when it can). That gateway has no session: it recognises the
	// client's endpoint from the ownership record, initiates a handshake
	// and claims the client when its traffic decrypts.
	next := (first + 1) % 3
	if first == 0 {
		next = 1
	}
	// The client never reached that gateway, so it is no device peer
	// there: the takeover adds it.
	if e.gws[names[next]].Clients().HasPeer(e.alice.Public()) {
		t.Fatalf("alice is a device peer on %s before she moved there", names[next])
	}
	lb.Move(flows[0], next)
	moved := time.Now()
	// The client's traffic drives the takeover; its first packet after
	// the move is lost (the new gateway cannot decrypt it) and TCP resends
	// it a second later, so the fetches run beside the wait.
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			default:
				fetch(client, rb.service)
			}
		}
	}()
	testwait.Until(t, 10*time.Second, "every gateway to agree on the new owner", func() bool { return ownersAgree(e, names[next]) })
	t.Logf("client moved %s → %s: every gateway agreed after %s", owner, names[next], time.Since(moved).Round(time.Millisecond))
	mustFetch(t, client, rb)
	mustFetch(t, client, ra)
	rec, _ := e.gws[names[next]].Cluster().Owner(e.alice.Public())
	if rec.Reason != cluster.ReasonTakeover || rec.Version < 2 {
		t.Fatalf("record after the move: %+v", rec)
	}
	// The gossip behind it is in the metrics, and none of it was refused.
	for _, name := range names {
		gm := e.gws[name].Metrics().Gossip
		if gm["received"] == 0 || gm["bad"] != 0 || gm["decrypt_error"] != 0 {
			t.Errorf("%s gossip metrics: %v", name, gm)
		}
	}
	// The gateway that lost her dropped her peer, and with it the session.
	testwait.Until(t, 5*time.Second, "the previous owner to remove alice's peer", func() bool {
		return !e.gws[owner].Clients().HasPeer(e.alice.Public())
	})
	if st := e.gws[owner].PeerStats(); st.Removed["moved"] != 1 {
		t.Fatalf("previous owner's peer stats: %+v", st)
	}
}

// newClusterEnv returns fresh keys and two regions, A and B, with no
// gateway yet.
func newClusterEnv(t testing.TB) (*clusterEnv, *region, *region) {
	e := &clusterEnv{gws: make(map[string]*gateway.Gateway)}
	e.clientsKey, _ = keys.Generate()
	e.alice, _ = keys.Generate()
	e.secret, _ = keys.Generate()
	return e, newRegion(t, "region-a", 1), newRegion(t, "region-b", 2)
}

// startTwoRegions starts a1 in region A and b1, b2 in region B, joined.
func startTwoRegions(t testing.TB) (*clusterEnv, *region, *region) {
	e, ra, rb := newClusterEnv(t)
	startGateways(t, e, ra, rb)
	return e, ra, rb
}

// startGateways starts a1 in region A and b1, b2 in region B in e, joined.
func startGateways(t testing.TB, e *clusterEnv, ra, rb *region) {
	a1 := e.start(t, "a1", ra, nil, 0)
	e.start(t, "b1", rb, []string{gossipAddr(a1)}, 0)
	e.start(t, "b2", rb, []string{gossipAddr(a1)}, 0)
	testwait.Until(t, 10*time.Second, "3 gateways in a1's view with region B's prefix routed", func() bool {
		_, ok := a1.Router().LookupHop(rb.service.Addr())
		return len(a1.Cluster().Members()) == 3 && ok
	})
}

// servingGateway returns the name of the gateway a1 sends region B's
// traffic to.
func servingGateway(t *testing.T, e *clusterEnv, rb *region) string {
	hop, ok := e.gws["a1"].Router().LookupHop(rb.service.Addr())
	if !ok || !hop.Via.IsValid() {
		return ""
	}
	for _, m := range e.gws["a1"].Cluster().Members() {
		if m.Meta.BackboneAddr == hop.Via && m.Alive {
			return m.Name
		}
	}
	return ""
}

// TestRegionFailover: the gateway serving region B's prefix for region A
// crashes (no leave); a client on a1 reaches region B again through the
// other gateway of region B once failure detection marks it dead.
func TestRegionFailover(t *testing.T) {
	e, ra, rb := startTwoRegions(t)
	client, err := wgclient.New(wgclient.Config{
		PrivateKey: e.alice, Address: clientAddr, Peer: e.clientsKey.Public(), Endpoint: clientEndpoint(e.gws["a1"]),
		AllowedIPs: []netip.Prefix{ra.prefix, rb.prefix},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	mustFetch(t, client, rb)
	victim := servingGateway(t, e, rb)
	if victim != "b1" && victim != "b2" {
		t.Fatalf("region B served by %q", victim)
	}
	crashed := time.Now()
	e.gws[victim].CrashForTest()
	delete(e.gws, victim)
	testwait.Until(t, 15*time.Second, "region B's prefix to move to the surviving gateway", func() bool {
		s := servingGateway(t, e, rb)
		return s != "" && s != victim
	})
	t.Logf("%s crashed: region B's prefix moved after %s", victim, time.Since(crashed).Round(time.Millisecond))
	mustFetch(t, client, rb)
	mustFetch(t, client, ra)
}

// TestDrainingGatewayHandsOverPrefixes: a gateway that starts draining
// announces it, and the others stop sending it other regions' traffic at
// once, long before it leaves.
func TestDrainingGatewayHandsOverPrefixes(t *testing.T) {
	e, _, rb := startTwoRegions(t)
	serving := servingGateway(t, e, rb)
	if serving == "" {
		t.Fatal("region B not routed")
	}
	start := time.Now()
	e.gws[serving].BeginDrain()
	testwait.Until(t, 5*time.Second, "region B's prefix to move off the draining gateway", func() bool {
		s := servingGateway(t, e, rb)
		return s != "" && s != serving
	})
	t.Logf("prefix moved off draining %s after %s", serving, time.Since(start).Round(time.Millisecond))
}

// TestConcurrentClaimsAgree: the client's handshakes reach all three
// gateways at once (a load balancer flapping); whatever the order, every
// gateway ends with the same owner. The first round often runs before b1
// has learned of b2 (startTwoRegions waits for a1's view only), so b1's
// claim reaches b2 only through the catch-up b1 begins when it does.
func TestConcurrentClaimsAgree(t *testing.T) {
	e, _, _ := startTwoRegions(t)
	ep := netip.MustParseAddrPort("198.51.100.7:40000")
	for round := range 5 {
		done := make(chan struct{})
		for _, g := range e.gws {
			go func() { g.Cluster().Claim(e.alice.Public(), ep, cluster.ReasonHandshake); done <- struct{}{} }()
		}
		for range e.gws {
			<-done
		}
		agreed := func() bool {
			owners := map[string]bool{}
			for _, g := range e.gws {
				rec, _ := g.Cluster().Owner(e.alice.Public())
				owners[rec.Owner] = true
			}
			return len(owners) == 1 && !owners[""]
		}
		deadline := time.Now().Add(5 * time.Second)
		for !agreed() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !agreed() {
			for n, g := range e.gws {
				rec, _ := g.Cluster().Owner(e.alice.Public())
				t.Logf("%s: %+v members=%d stats=%+v cstats=%+v", n, rec, len(g.Cluster().Members()), g.Cluster().Table().Stats(), g.Cluster().Stats())
			}
			t.Fatalf("round %d: no single owner everywhere after 5s", round)
		}
	}
}

// TestBackboneMeshFormsWithoutRetry: gateways that join at once all hold a
// backbone session with each other well before wireguard-go's 5 s
// handshake retry, with or without traffic: one side of each pair
// initiates at once, the other after half a second when the first
// initiation was lost because it arrived before that side knew the
// initiator. (Both initiating at once used to leave pairs without a
// session for 5 s.)
func TestBackboneMeshFormsWithoutRetry(t *testing.T) {
	e, ra, rb := newClusterEnv(t)
	a1 := e.start(t, "a1", ra, nil, 0)
	e.start(t, "a2", ra, []string{gossipAddr(a1)}, 0)
	e.start(t, "b1", rb, []string{gossipAddr(a1)}, 0)
	e.start(t, "b2", rb, []string{gossipAddr(a1)}, 0)
	start := time.Now()
	testwait.Until(t, 3*time.Second, "a backbone session between every pair", func() bool {
		for _, g := range e.gws {
			if g.BackboneSessionsForTest() != 3 {
				return false
			}
		}
		return true
	})
	t.Logf("full backbone mesh of 4 after %s", time.Since(start).Round(time.Millisecond))
}
