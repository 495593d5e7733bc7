package gateway_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/internal/wgclient"

	"github.com/anyguard/anyguard/internal/testwait"
)

// A configured client is no device peer until it connects; its very first
// handshake initiation adds it and completes (no 5 s retry), and traffic
// flows.
func TestFirstInitiationAddsClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	e := startGateway(t, srv)
	alice := e.cliKey.Public()
	if e.gw.Clients().HasPeer(alice) {
		t.Fatal("alice is a device peer before she connected")
	}
	if st := e.gw.PeerStats(); st.Configured != 1 || st.Live != 0 {
		t.Fatalf("before connecting: %+v", st)
	}
	c := e.client(t)
	start := time.Now()
	if body := get(t, c, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("body %q", body)
	}
	// wireguard-go retries an unanswered initiation after 5 s (RekeyTimeout).
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("first request took %v: the first initiation did not complete", d)
	}
	st := e.gw.PeerStats()
	if st.Live != 1 || st.Added != 1 || !e.gw.Clients().HasPeer(alice) {
		t.Fatalf("after connecting: %+v", st)
	}
	if st.Initiations["replay"] != 0 || st.Initiations["not_authentic"] != 0 || st.Initiations["unknown_key"] != 0 {
		t.Fatalf("initiations: %v", st.Initiations)
	}
	m := e.gw.Metrics()
	if m.ClientsConfigured != 1 || m.Peers["active"] != 1 || m.PeersAdded != 1 {
		t.Fatalf("metrics: configured %d, peers %v, added %d", m.ClientsConfigured, m.Peers, m.PeersAdded)
	}
	if s := e.gw.Status(); s.ClientsConfigured != 1 || s.PeersLive != 1 || len(s.Clients) != 1 || s.Clients[0].Name != "alice" {
		t.Fatalf("status: configured %d, live %d, clients %+v", s.ClientsConfigured, s.PeersLive, s.Clients)
	}
}

// An initiation from a key that is not configured adds no peer, and is
// counted.
func TestUnknownKeyIsNoPeer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	e := startGateway(t, srv)
	stranger, _ := keys.Generate()
	c, err := wgclient.New(wgclient.Config{
		PrivateKey: stranger, Address: netip.MustParseAddr("10.99.0.9"), Peer: e.gwKey.Public(), Endpoint: e.endpoint,
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/16")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx, netip.MustParseAddr("10.99.0.1"), 1, time.Second); err == nil {
		t.Fatal("a client with an unknown key got an answer")
	}
	testwait.Until(t, 5*time.Second, "the unknown key to be counted", func() bool {
		return e.gw.PeerStats().Initiations["unknown_key"] > 0
	})
	if e.gw.Clients().HasPeer(stranger.Public()) || e.gw.PeerStats().Live != 0 {
		t.Fatalf("the unknown key became a peer: %+v", e.gw.PeerStats())
	}
}

// Idle peers are removed by the sweep (never the probe), and a removed
// client comes back on its next initiation.
func TestIdlePeersAreRemoved(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	e := startGatewayWith(t, srv, gateway.Options{IdleTimeout: 300 * time.Millisecond, ProbeInterval: 200 * time.Millisecond})
	c := e.client(t)
	if body := get(t, c, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("body %q", body)
	}
	c.Close()
	testwait.Until(t, 5*time.Second, "alice's idle peer to be removed", func() bool {
		return !e.gw.Clients().HasPeer(e.cliKey.Public())
	})
	st := e.gw.PeerStats()
	if st.Removed["idle"] != 1 || st.Live != 0 {
		t.Fatalf("after the sweep: %+v", st)
	}
	if e.gw.Clients().PeerCount() != 1 {
		t.Fatalf("%d peers left, want the probe alone", e.gw.Clients().PeerCount())
	}
	// The probe (idle between its echoes, and pinned) still gets through.
	testwait.Until(t, 5*time.Second, "the probe to keep succeeding", func() bool {
		return e.gw.Metrics().Probe.Successes > 3 && probeOK(e.gw)
	})
	// Alice reconnects with a new device (a restarted client).
	c2 := e.client(t)
	if body := get(t, c2, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("after the sweep: body %q", body)
	}
	if st := e.gw.PeerStats(); st.Added != 2 {
		t.Fatalf("after reconnecting: %+v", st)
	}
}

func probeOK(g *gateway.Gateway) bool {
	for _, c := range g.Checks() {
		if c.Name == "dataplane" {
			return c.Run(context.Background()) == nil
		}
	}
	return false
}

// Under load a connecting client's first initiation costs the gateway no
// X25519: it gets a cookie reply and is dropped. wireguard-go's client
// retries 5 s later with the cookie's mac2, which is accepted, and it
// connects. A datagram shaped like an initiation whose mac1 is wrong (not
// addressed to this gateway's key) gets no reply at all.
func TestCookieUnderLoad(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	e := startGateway(t, srv)
	e.gw.UnderLoadForTest(time.Minute)

	junk, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(e.endpoint))
	if err != nil {
		t.Fatal(err)
	}
	defer junk.Close()
	msg := make([]byte, 148)
	msg[0] = 1 // type: initiation; mac1 is zeros
	if _, err := junk.Write(msg); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 2*time.Second, "the junk initiation to be counted unreadable", func() bool {
		return e.gw.PeerStats().Initiations["unreadable"] == 1
	})
	junk.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := junk.Read(make([]byte, 256)); err == nil {
		t.Fatalf("junk initiation answered with %d bytes", n)
	}

	c := e.client(t)
	start := time.Now()
	if body := get(t, c, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("body %q", body)
	}
	took := time.Since(start)
	st := e.gw.PeerStats()
	t.Logf("connected under load after %s; initiations %v", took.Round(time.Millisecond), st.Initiations)
	if st.Initiations["cookie_sent"] < 1 {
		t.Fatalf("no cookie reply sent: %v", st.Initiations)
	}
	if st.Initiations["accepted"] < 1 || st.Added != 1 {
		t.Fatalf("the retry with the cookie was not accepted: %+v", st)
	}
	// wireguard-go retries an unanswered initiation after 5 s
	// (RekeyTimeout): the first one must not have been answered.
	if took < 4*time.Second {
		t.Fatalf("connected after %s: the first initiation was answered without a cookie", took)
	}
	if n := st.Initiations["unreadable"]; n != 1 {
		t.Fatalf("unreadable = %d, want only the junk", n)
	}
	// The cookies were the gateway's: the device answered with responses
	// only (its own cookies would use another secret).
	if bs := e.gw.Clients().Bind().Stats(); bs.SentResponses == 0 || bs.SentCookieReplies != 0 {
		t.Fatalf("device sent %d responses and %d cookie replies; want some and none", bs.SentResponses, bs.SentCookieReplies)
	}
}
