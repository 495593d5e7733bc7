package gateway_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/internal/wgclient"
)

// TestReload: adding a client lets it connect, removing one cuts only that
// one, and a change that needs a restart changes nothing.
func TestReload(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	e := startGateway(t, srv)
	alice := e.client(t)
	if body := get(t, alice, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("alice: %q", body)
	}
	aliceHandshake := lastHandshake(t, e, e.cliKey.Public())

	bobKey, _ := keys.Generate()
	bobAddr := netip.MustParseAddr("10.99.0.3")
	cfg := *e.gw.Config()
	cfg.Clients.Peers = append(append([]config.Peer(nil), cfg.Clients.Peers...), config.Peer{
		Name: "bob", PublicKey: bobKey.Public(), AllowedIPs: []netip.Prefix{netip.PrefixFrom(bobAddr, 32)},
	})
	if err := e.gw.Reload(&cfg); err != nil {
		t.Fatalf("reload adding bob: %v", err)
	}
	bob, err := wgclient.New(wgclient.Config{
		PrivateKey: bobKey, Address: bobAddr, Peer: e.gwKey.Public(), Endpoint: e.endpoint,
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if body := get(t, bob, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("bob after reload: %q", body)
	}
	if body := get(t, alice, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("alice after reload: %q", body)
	}
	if h := lastHandshake(t, e, e.cliKey.Public()); !h.Equal(aliceHandshake) {
		t.Fatalf("alice's session was re-established by the reload: handshake %v → %v", aliceHandshake, h)
	}

	// A change that needs a restart is refused and changes nothing.
	bad := cfg
	bad.Clients.ListenPort++
	bad.Clients.Peers = bad.Clients.Peers[1:]
	if err := e.gw.Reload(&bad); !errors.Is(err, gateway.ErrRestartNeeded) {
		t.Fatalf("reload with a new port: %v", err)
	}
	if len(e.gw.Config().Clients.Peers) != 2 {
		t.Fatal("a refused reload changed the configuration")
	}

	// Remove alice: only she is cut off.
	rm := cfg
	rm.Clients.Peers = cfg.Clients.Peers[1:]
	if err := e.gw.Reload(&rm); err != nil {
		t.Fatalf("reload removing alice: %v", err)
	}
	if peers, _ := e.gw.ClientStatus(); len(peers) != 1 || peers[0].PublicKey != bobKey.Public() {
		t.Fatalf("device peers after removing alice: %+v", peers)
	}
	if body := get(t, bob, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("bob after alice's removal: %q", body)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: alice.DialContext}, Timeout: 2 * time.Second}
	if _, err := hc.Get("http://" + service.String() + "/"); err == nil {
		t.Fatal("alice still reaches the service after being removed")
	}
}

func lastHandshake(t *testing.T, e *env, k keys.Key) time.Time {
	t.Helper()
	peers, err := e.gw.Clients().Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.PublicKey == k {
			return p.LastHandshake
		}
	}
	t.Fatalf("peer %s not on the device", k)
	return time.Time{}
}
