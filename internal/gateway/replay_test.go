package gateway_test

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/wgclient"

	"github.com/anyguard/anyguard/internal/testwait"
)

// captureRelay forwards a client's datagrams to one gateway and the
// gateway's back, keeping a copy of every handshake initiation: what an
// attacker on the path sees with tcpdump. Like a load balancer, it can
// move the flow to another gateway, which sees the same source address.
type captureRelay struct {
	front, back *net.UDPConn
	mu          sync.Mutex
	client      *net.UDPAddr
	to          netip.AddrPort
	inits       [][]byte
	// slow delays the client's handshake responses, as a loaded machine
	// does.
	slow time.Duration
	// holdData, when set, drops the client's transport packets once the
	// client has sent a handshake response (answered a gateway's
	// initiation) after it was set; responded says one was.
	holdData, responded atomic.Bool
	// dropOld, when set, drops what a gateway other than the flow's
	// current one sends the client, as a load balancer does once it moved
	// the flow; dropped counts those datagrams.
	dropOld atomic.Bool
	dropped atomic.Int64
}

// aliceViaRelayOnA1 starts alice's client behind a capture relay that
// forwards to a1, with allowed IPs both regions (and extra), and returns
// once her traffic crosses and every gateway agrees that a1 owns her. The
// client closes at the end of the test.
func aliceViaRelayOnA1(t *testing.T, e *clusterEnv, ra, rb *region, extra ...netip.Prefix) (*captureRelay, *wgclient.Client) {
	t.Helper()
	relay := newCaptureRelay(t, clientEndpoint(e.gws["a1"]))
	client, err := wgclient.New(wgclient.Config{
		PrivateKey: e.alice, Address: clientAddr, Peer: e.clientsKey.Public(), Endpoint: relay.addr(),
		AllowedIPs: append(extra, ra.prefix, rb.prefix),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	mustFetch(t, client, rb)
	testwait.Until(t, 5*time.Second, "every gateway to agree that a1 owns alice", func() bool { return ownersAgree(e, "a1") })
	return relay, client
}

func newCaptureRelay(t *testing.T, to netip.AddrPort) *captureRelay {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &captureRelay{front: front, back: back, to: to}
	t.Cleanup(func() { front.Close(); back.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := front.ReadFromUDP(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.client = from
			if n == 148 && buf[0] == 1 {
				r.inits = append(r.inits, append([]byte(nil), buf[:n]...))
			}
			to, slow := r.to, r.slow
			r.mu.Unlock()
			if r.holdData.Load() {
				if n == 92 && buf[0] == 2 {
					r.responded.Store(true)
				} else if buf[0] == 4 && r.responded.Load() {
					continue
				}
			}
			if slow > 0 && n == 92 && buf[0] == 2 {
				msg := append([]byte(nil), buf[:n]...)
				time.AfterFunc(slow, func() { back.WriteToUDPAddrPort(msg, to) })
				continue
			}
			back.WriteToUDPAddrPort(buf[:n], to)
		}
	}()
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := back.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			c, to := r.client, r.to
			r.mu.Unlock()
			if r.dropOld.Load() && netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != to {
				r.dropped.Add(1)
				continue
			}
			if c != nil {
				front.WriteToUDP(buf[:n], c)
			}
		}
	}()
	return r
}

func (r *captureRelay) addr() netip.AddrPort { return r.front.LocalAddr().(*net.UDPAddr).AddrPort() }

// move sends the flow to another gateway from now on.
func (r *captureRelay) move(to netip.AddrPort) {
	r.mu.Lock()
	r.to = to
	r.mu.Unlock()
}

// slowResponses delays every handshake response of the client by d from
// now on.
func (r *captureRelay) slowResponses(d time.Duration) {
	r.mu.Lock()
	r.slow = d
	r.mu.Unlock()
}

func (r *captureRelay) initiations() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.inits...)
}

// TestReplayedInitiationMovesNothing: an attacker on the path captures the
// client's handshake initiation and replays it, many times and at several
// delays, to the other gateways of the fleet (as a load balancer would
// deliver it from the attacker's address). The owner does not change
// anywhere, the owner keeps its session with the client (the client's
// traffic keeps flowing through it), and each receiving gateway answers
// at most one of the replays.
func TestReplayedInitiationMovesNothing(t *testing.T) {
	e, ra, rb := startTwoRegions(t)
	a1 := e.gws["a1"]
	relay, client := aliceViaRelayOnA1(t, e, ra, rb)
	before, _ := a1.Cluster().Owner(e.alice.Public())
	if before.Reason != cluster.ReasonHandshake {
		t.Fatalf("a1's claim after alice's handshake: %+v", before)
	}
	inits := relay.initiations()
	if len(inits) == 0 {
		t.Fatal("no initiation captured")
	}
	captured := inits[len(inits)-1]

	attacker, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	// Count what the gateways send the attacker back: at most one
	// handshake response per gateway.
	answers := make(chan int, 64)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := attacker.Read(buf)
			if err != nil {
				close(answers)
				return
			}
			answers <- n
		}
	}()
	targets := []netip.AddrPort{clientEndpoint(e.gws["b1"]), clientEndpoint(e.gws["b2"])}
	for i, delay := range []time.Duration{0, 0, 50 * time.Millisecond, 300 * time.Millisecond, time.Second} {
		time.Sleep(delay)
		for _, to := range targets {
			if _, err := attacker.WriteToUDPAddrPort(captured, to); err != nil {
				t.Fatal(err)
			}
		}
		// The client's traffic keeps flowing through its owner.
		if body, err := fetch(client, rb.service); err != nil || body != "hello from "+rb.name {
			t.Fatalf("replay round %d: client's fetch failed: %q %v", i, body, err)
		}
	}
	// Give any claim the replays could cause time to spread (claims reach
	// every member in milliseconds here), then check every replica.
	time.Sleep(time.Second)
	for name, g := range e.gws {
		rec, ok := g.Cluster().Owner(e.alice.Public())
		if !ok || rec.Owner != "a1" || rec.Version != before.Version {
			t.Errorf("%s: alice's record after the replays: %+v (before: %+v)", name, rec, before)
		}
	}
	if !a1.Clients().HasPeer(e.alice.Public()) {
		t.Error("a1 dropped alice's peer")
	}
	mustFetch(t, client, ra)
	mustFetch(t, client, rb)
	attacker.Close()
	var responses int
	for n := range answers {
		if n == 92 {
			responses++
		}
	}
	if responses > len(targets) {
		t.Errorf("the gateways answered %d replays, want at most one each (%d)", responses, len(targets))
	}
	for _, name := range []string{"b1", "b2"} {
		if st := e.gws[name].PeerStats(); st.Initiations["replay"] == 0 {
			t.Errorf("%s refused no replay: %+v", name, st.Initiations)
		}
		if c := e.gws[name].Metrics().Claims; c["confirmed"] != 0 || c["takeover_claimed"] != 0 {
			t.Errorf("%s claims after the replays: %v", name, c)
		}
	}
	if c := a1.Metrics().Claims; c["confirmed"] != 1 {
		t.Errorf("a1's claims: %v, want one confirmed", c)
	}
	t.Logf("attacker got %d handshake responses for %d replays", responses, 5*len(targets))

	// The load balancer now really moves alice to b2, which answered a
	// replay a moment ago: that half-done handshake must not hold back the
	// takeover (wireguard-go would wait 5 s after its response).
	moved := time.Now()
	relay.move(clientEndpoint(e.gws["b2"]))
	body, err := fetchWithin(client, rb.service, 5*time.Second)
	if err != nil || body != "hello from "+rb.name {
		t.Fatalf("client after moving to b2: %q %v", body, err)
	}
	back := time.Since(moved)
	testwait.Until(t, 5*time.Second, "every gateway to agree that b2 owns alice", func() bool { return ownersAgree(e, "b2") })
	t.Logf("moved to b2 after the replays: traffic back after %s", back.Round(time.Millisecond))
	if back > 3*time.Second {
		t.Errorf("the takeover after a replay took %s: held back by the replay's handshake", back)
	}
}

// TestIdleClientClaimedAfterConfirmation: a client that handshakes with a
// gateway and then sends nothing at all is still claimed: the gateway asks
// it to prove its session (an echo request that the device holds until the
// client's key confirmation), and the client's reply claims it.
func TestIdleClientClaimedAfterConfirmation(t *testing.T) {
	e, ra, rb := startTwoRegions(t)
	b1 := e.gws["b1"]
	client, err := wgclient.New(wgclient.Config{
		PrivateKey: e.alice, Address: clientAddr, Peer: e.clientsKey.Public(), Endpoint: clientEndpoint(b1),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/16"), ra.prefix, rb.prefix},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// Only a handshake: the client sends no data of its own.
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 5*time.Second, "every gateway to agree that b1 owns alice", func() bool { return ownersAgree(e, "b1") })
	rec, _ := b1.Cluster().Owner(e.alice.Public())
	if rec.Reason != cluster.ReasonHandshake {
		t.Fatalf("record: %+v", rec)
	}
}

// TestRestartUnderSameNameRecovers: the gateway that owns a client crashes
// and comes back under the same name and addresses, before anyone else
// claimed the client. The records still name it, but it holds no session:
// it must recognise the client's flow as any other gateway would after a
// move, and restore the client's traffic at once instead of leaving it to
// the client's own re-handshake (15 s or more).
func TestRestartUnderSameNameRecovers(t *testing.T) {
	e, ra, rb := startTwoRegions(t)
	b1 := e.gws["b1"]
	port := b1.ListenPort()
	gossip := gossipAddr(b1)
	client, err := wgclient.New(wgclient.Config{
		PrivateKey: e.alice, Address: clientAddr, Peer: e.clientsKey.Public(), Endpoint: clientEndpoint(b1),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/16"), ra.prefix, rb.prefix},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	mustFetch(t, client, ra)
	testwait.Until(t, 5*time.Second, "every gateway to agree that b1 owns alice", func() bool { return ownersAgree(e, "b1") })

	b1.CrashForTest()
	delete(e.gws, "b1")
	restarted := e.startWith(t, "b1", rb, []string{gossipAddr(e.gws["a1"])}, 0, func(cfg *config.Config) {
		cfg.Clients.ListenPort = port
		cfg.Cluster.Bind = gossip
	})
	testwait.Until(t, 10*time.Second, "the restarted b1 to learn that it owns alice", func() bool {
		rec, ok := restarted.Cluster().Owner(e.alice.Public())
		return ok && rec.Owner == "b1"
	})
	if restarted.Clients().HasPeer(e.alice.Public()) {
		t.Fatal("the restarted gateway holds alice's peer before she sent anything")
	}
	start := time.Now()
	body, err := fetchWithin(client, ra.service, 5*time.Second)
	if err != nil || body != "hello from "+ra.name {
		t.Fatalf("client after its owner restarted: %q %v (after %s)", body, err, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("client's traffic back %s after its owner restarted", time.Since(start).Round(time.Millisecond))
	if st := restarted.Metrics().Gossip; st == nil {
		t.Fatal("restarted gateway is not clustered")
	}
}

// fetchWithin retries fetch until it succeeds or within has passed.
func fetchWithin(c *wgclient.Client, svc netip.AddrPort, within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	for {
		body, err := fetch(c, svc)
		if err == nil || time.Now().After(deadline) {
			return body, err
		}
	}
}
