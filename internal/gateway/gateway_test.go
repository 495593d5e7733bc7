package gateway_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/internal/wgclient"
	"github.com/anyguard/anyguard/router"

	"github.com/anyguard/anyguard/internal/testwait"
)

var (
	service    = netip.MustParseAddrPort("10.1.0.10:80")
	clientAddr = netip.MustParseAddr("10.99.0.2")
	loopback   = netip.MustParseAddr("127.0.0.1")
)

type env struct {
	gw       *gateway.Gateway
	gwKey    keys.Key
	cliKey   keys.Key
	endpoint netip.AddrPort
}

// startGateway starts a netstack-mode gateway whose private network maps
// service onto the httptest server srv.
func startGateway(t *testing.T, srv *httptest.Server) *env {
	t.Helper()
	return startGatewayWith(t, srv, gateway.Options{})
}

// startGatewayWith is startGateway with opts (its NetstackDial is set here).
func startGatewayWith(t *testing.T, srv *httptest.Server, opts gateway.Options) *env {
	t.Helper()
	gwKey, _ := keys.Generate()
	cliKey, _ := keys.Generate()
	cfg := testConfig(gwKey, cliKey, netip.MustParsePrefix("10.1.0.0/16"))
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	opts.NetstackDial = serviceDial(srv)
	gw, err := gateway.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Close)
	return &env{gw: gw, gwKey: gwKey, cliKey: cliKey, endpoint: netip.AddrPortFrom(loopback, gw.ListenPort())}
}

// serviceDial is a netstack dialer whose private network has srv at
// service and nothing else.
func serviceDial(srv *httptest.Server) func(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error) {
	real := srv.Listener.Addr().(*net.TCPAddr).AddrPort()
	return func(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error) {
		if dst != service {
			return nil, fmt.Errorf("no host at %s", dst)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, real.String())
	}
}

// testConfig is a netstack gateway on random ports with one client, alice
// (clientAddr), serving prefix; no UAPI, health on loopback.
func testConfig(gwKey, aliceKey keys.Key, prefix netip.Prefix) *config.Config {
	cfg := config.Default()
	cfg.Node.Name = "test-gw"
	cfg.Clients.PrivateKey = gwKey
	cfg.Clients.ListenPort = 0
	cfg.Clients.UAPI = false
	cfg.Clients.Address = []netip.Prefix{netip.MustParsePrefix("10.99.0.1/16")}
	cfg.Clients.Peers = []config.Peer{{Name: "alice", PublicKey: aliceKey.Public(), AllowedIPs: []netip.Prefix{netip.PrefixFrom(clientAddr, 32)}}}
	cfg.Egress.Mode = config.ModeNetstack
	cfg.Egress.Prefixes = []netip.Prefix{prefix}
	// Many gateways in one process: no fixed ports, the admin listener
	// (default 127.0.0.1:8081) included.
	cfg.Health.Listen = "127.0.0.1:0"
	cfg.Health.AdminListen = "127.0.0.1:0"
	cfg.Health.TCPListen = config.Off
	return cfg
}

func (e *env) client(t *testing.T) *wgclient.Client {
	t.Helper()
	c, err := wgclient.New(wgclient.Config{
		PrivateKey: e.cliKey,
		Address:    clientAddr,
		Peer:       e.gwKey.Public(),
		Endpoint:   e.endpoint,
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/16"), netip.MustParsePrefix("10.1.0.0/16")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func get(t *testing.T, c *wgclient.Client, url string) string {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: c.DialContext}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s through the gateway: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

func TestClientReachesHTTPThroughNetstackGateway(t *testing.T) {
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/blob" {
			w.Write(blob)
			return
		}
		fmt.Fprintf(w, "hello from %s", r.RemoteAddr)
	}))
	defer srv.Close()
	e := startGateway(t, srv)
	c := e.client(t)

	body := get(t, c, "http://"+service.String()+"/")
	if !strings.HasPrefix(body, "hello from 127.0.0.1:") {
		t.Fatalf("body = %q", body)
	}
	if got := get(t, c, "http://"+service.String()+"/blob"); got != string(blob) {
		t.Fatalf("1 MiB download corrupted: got %d bytes", len(got))
	}

	peers, err := e.gw.ClientStatus()
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 1 || peers[0].PublicKey != e.cliKey.Public() || peers[0].LastHandshake.IsZero() || peers[0].RxBytes == 0 {
		t.Fatalf("client device status = %+v", peers)
	}
	if bs := e.gw.Clients().BindStats(); bs.Initiations == 0 || bs.Transport == 0 {
		t.Fatalf("bind stats = %+v", bs)
	}
	st := e.gw.Router().Stats()
	for _, p := range st.Ports {
		if p.RxPackets == 0 || p.TxPackets == 0 {
			t.Errorf("port %s carried nothing: %+v", p.Name, p)
		}
	}
	if n := st.Drops[router.DropSourceInvalid] + st.Drops[router.DropNoRoute]; n != 0 {
		t.Errorf("unexpected drops: %v", st.Drops)
	}
}

// TestJunkFloodKeepsServing sends datagrams that are no WireGuard message
// (and some with WireGuard type bytes but wrong sizes) at the client port:
// the bind counts and drops them and the client keeps working.
func TestJunkFloodKeepsServing(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	e := startGateway(t, srv)
	c := e.client(t)
	if body := get(t, c, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("before flood: %q", body)
	}
	u, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(e.endpoint))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	buf := make([]byte, 2000)
	const n = 20000
	for i := range n {
		size := i % len(buf)
		rand.Read(buf[:size])
		if i%4 == 0 && size >= 4 {
			buf[0], buf[1], buf[2], buf[3] = byte(1+i%4), 0, 0, 0 // WireGuard type, wrong size
		}
		u.Write(buf[:size])
	}
	testwait.Until(t, 5*time.Second, fmt.Sprintf("junk counted after %d junk datagrams", n), func() bool { return e.gw.Clients().BindStats().Junk > 0 })
	if body := get(t, c, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("after flood: %q", body)
	}
}

func TestStartRefusesPortInUse(t *testing.T) {
	u, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	k, _ := keys.Generate()
	cfg := config.Default()
	cfg.Clients.PrivateKey = k
	cfg.Clients.ListenPort = uint16(u.LocalAddr().(*net.UDPAddr).Port)
	cfg.Clients.UAPI = false
	cfg.Clients.Address = []netip.Prefix{netip.MustParsePrefix("10.99.0.1/16")}
	cfg.Egress.Mode = config.ModeNetstack
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, err = gateway.New(cfg, gateway.Options{})
	if err == nil {
		t.Fatal("gateway started on a UDP port already in use")
	}
	if !errors.Is(err, gateway.ErrStart) || !strings.Contains(err.Error(), "clients.listen_port") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error = %q; want one line naming clients.listen_port", err)
	}
}
