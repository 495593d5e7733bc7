package gateway_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/device"
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
	aliceHandshake := devicePeer(t, e, e.cliKey.Public()).LastHandshake

	bobKey, _ := keys.Generate()
	bobAddr := netip.MustParseAddr("10.99.0.3")
	cfg := *e.gw.Config()
	cfg.Clients.Peers = append(append([]config.Peer(nil), cfg.Clients.Peers...), config.Peer{
		Name: "bob", PublicKey: bobKey.Public(), AllowedIPs: []netip.Prefix{netip.PrefixFrom(bobAddr, 32)},
	})
	if err := e.gw.Reload(&cfg); err != nil {
		t.Fatalf("reload adding bob: %v", err)
	}
	bob := serviceClient(t, bobKey, bobAddr, e.gwKey.Public(), e.endpoint)
	if body := get(t, bob, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("bob after reload: %q", body)
	}
	if body := get(t, alice, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("alice after reload: %q", body)
	}
	if h := devicePeer(t, e, e.cliKey.Public()).LastHandshake; !h.Equal(aliceHandshake) {
		t.Fatalf("alice's session was re-established by the reload: handshake %v → %v", aliceHandshake, h)
	}

	// Alice's allowed IPs change while she is live: the device's peer
	// follows, her session stays.
	wider := cfg
	wider.Clients.Peers = append([]config.Peer(nil), cfg.Clients.Peers...)
	extra := netip.MustParsePrefix("10.99.0.5/32")
	wider.Clients.Peers[0].AllowedIPs = []netip.Prefix{netip.PrefixFrom(clientAddr, 32), extra}
	if err := e.gw.Reload(&wider); err != nil {
		t.Fatalf("reload widening alice: %v", err)
	}
	if ips := devicePeer(t, e, e.cliKey.Public()).AllowedIPs; len(ips) != 2 || ips[1] != extra && ips[0] != extra {
		t.Fatalf("alice's allowed IPs on the device after the reload: %v", ips)
	}
	if h := devicePeer(t, e, e.cliKey.Public()).LastHandshake; !h.Equal(aliceHandshake) {
		t.Fatalf("alice's session was re-established by changing her allowed IPs: handshake %v → %v", aliceHandshake, h)
	}
	if body := get(t, alice, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("alice after her change: %q", body)
	}
	cfg = wider

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
	if st := e.gw.PeerStats(); st.Removed["reload"] != 1 || st.Live != 1 || st.Configured != 1 {
		t.Fatalf("peer stats after removing alice: %+v", st)
	}
	if e.gw.Clients().HasPeer(e.cliKey.Public()) {
		t.Fatal("alice's initiations made her a peer again after her removal")
	}
	// Three reloads applied, one refused (the restart-only field), and one
	// whose configuration did not load (counted by the caller).
	e.gw.ReloadFailed()
	if got := e.gw.Metrics().ConfigReloads; got["success"] != 3 || got["failure"] != 2 {
		t.Errorf("anyguard_config_reloads_total: %v, want success 3 and failure 2", got)
	}
}

// TestReloadPeersFile: what SIGHUP does (Load the same configuration
// file again, then Reload) picks up a changed peers file: a client added
// there connects, one removed is cut off.
func TestReloadPeersFile(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	gwKey, _ := keys.Generate()
	aliceKey, _ := keys.Generate()
	bobKey, _ := keys.Generate()
	bobAddr := netip.MustParseAddr("10.99.0.3")
	dir := t.TempDir()
	path := filepath.Join(dir, "anyguard.yaml")
	peers := filepath.Join(dir, "peers.txt")
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(name, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(path, `node: {name: test-gw}
clients:
  private_key: `+gwKey.String()+`
  listen_port: 0
  address: 10.99.0.1/16
  uapi: false
  peers_file: peers.txt
egress: {mode: netstack, prefixes: [10.1.0.0/16]}
health: {listen: "127.0.0.1:0", tcp_listen: "off"}
`)
	write(peers, "alice "+aliceKey.Public().String()+" "+clientAddr.String()+"/32\n")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(cfg, gateway.Options{NetstackDial: serviceDial(srv)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Close)
	e := &env{gw: gw, gwKey: gwKey, cliKey: aliceKey, endpoint: netip.AddrPortFrom(loopback, gw.ListenPort())}
	alice := e.client(t)
	if body := get(t, alice, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("alice: %q", body)
	}

	write(peers, "# alice left\nbob "+bobKey.Public().String()+" "+bobAddr.String()+"/32\n")
	cfg, err = config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Reload(cfg); err != nil {
		t.Fatalf("reload: %v", err)
	}
	bob := serviceClient(t, bobKey, bobAddr, gwKey.Public(), e.endpoint)
	if body := get(t, bob, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("bob after reload: %q", body)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: alice.DialContext}, Timeout: 2 * time.Second}
	if _, err := hc.Get("http://" + service.String() + "/"); err == nil {
		t.Fatal("alice still reaches the service after leaving the peers file")
	}
	if st := gw.PeerStats(); st.Removed["reload"] != 1 || st.Configured != 1 || gw.Clients().HasPeer(aliceKey.Public()) {
		t.Fatalf("after removing alice: %+v, alice a peer: %v", st, gw.Clients().HasPeer(aliceKey.Public()))
	}

	// A bad line fails the reload and leaves the running clients alone.
	write(peers, "bob "+bobKey.Public().String()+" 10.99.0.3\n")
	if _, err := config.Load(path); err == nil || !strings.Contains(err.Error(), "peers.txt:1: allowed_ips[0]:") {
		t.Fatalf("bad peers file: err = %v", err)
	}
	if body := get(t, bob, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("bob after a failed reload: %q", body)
	}
}

// serviceClient is a wireguard-go client with key and address that
// reaches the service's network through the gateway gw at endpoint.
func serviceClient(t *testing.T, key keys.Key, addr netip.Addr, gw keys.Key, endpoint netip.AddrPort) *wgclient.Client {
	t.Helper()
	c, err := wgclient.New(wgclient.Config{
		PrivateKey: key, Address: addr, Peer: gw, Endpoint: endpoint,
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// devicePeer returns the client device's status of peer k.
func devicePeer(t *testing.T, e *env, k keys.Key) device.PeerStatus {
	t.Helper()
	peers, err := e.gw.Clients().Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.PublicKey == k {
			return p
		}
	}
	t.Fatalf("peer %s not on the device", k)
	return device.PeerStatus{}
}
