package gateway_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/health"
	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/router"
)

// breakableBind is the standard UDP bind with a switch that makes the
// socket deaf and mute, as a firewall or a dead socket would.
type breakableBind struct {
	conn.Bind
	broken atomic.Bool
}

func (b *breakableBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	for i, fn := range fns {
		fns[i] = func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			n, err := fn(packets, sizes, eps)
			if b.broken.Load() {
				for j := range n {
					sizes[j] = 0
				}
			}
			return n, err
		}
	}
	return fns, actual, err
}

func (b *breakableBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if b.broken.Load() {
		return net.ErrClosed
	}
	return b.Bind.Send(bufs, ep)
}

// breakablePort is an egress that can be made to refuse every packet.
type breakablePort struct {
	router.Port
	broken atomic.Bool
}

func (p *breakablePort) Deliver(bufs [][]byte, offset int) error {
	if p.broken.Load() {
		return errors.New("egress broken by the test")
	}
	return p.Port.Deliver(bufs, offset)
}

var echoService = netip.MustParseAddrPort("10.1.0.11:7")

// udpEcho runs a UDP echo server on loopback and returns its address.
func udpEcho(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().String()
}

type healthEnv struct {
	*env
	bind   *breakableBind
	egress *breakablePort
	state  *health.State
	srv    *health.Server
	base   string
}

// startHealthGateway starts a netstack gateway like startGateway, with a
// fast probe, breakable client socket and egress, and its health listeners
// on loopback.
func startHealthGateway(t *testing.T, srv *httptest.Server) *healthEnv {
	t.Helper()
	gwKey, _ := keys.Generate()
	cliKey, _ := keys.Generate()
	cfg := testConfig(gwKey, cliKey, netip.MustParsePrefix("10.1.0.0/16"))
	cfg.Node.Region = "test-region"
	cfg.Health.TCPListen = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	real := srv.Listener.Addr().(*net.TCPAddr).AddrPort()
	echo := udpEcho(t)
	dial := func(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error) {
		var d net.Dialer
		switch {
		case network == "tcp" && dst == service:
			return d.DialContext(ctx, network, real.String())
		case network == "udp" && dst == echoService:
			return d.DialContext(ctx, network, echo)
		}
		return nil, fmt.Errorf("no host at %s", dst)
	}
	he := &healthEnv{bind: &breakableBind{Bind: conn.NewDefaultBind()}}
	gw, err := gateway.New(cfg, gateway.Options{
		NetstackDial:  dial,
		ClientBind:    he.bind,
		ProbeInterval: 200 * time.Millisecond,
		WrapEgress: func(p router.Port) router.Port {
			he.egress = &breakablePort{Port: p}
			return he.egress
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Close)
	he.env = &env{gw: gw, gwKey: gwKey, cliKey: cliKey, endpoint: netip.AddrPortFrom(loopback, gw.ListenPort())}
	he.state, he.srv, err = gw.ServeHealth(gateway.HealthOptions{Version: "test", CheckInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { he.srv.Close(); he.state.Close() })
	he.base = "http://" + he.srv.Addr().String()
	return he
}

func TestReadyzFollowsTheDataPath(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	he := startHealthGateway(t, srv)

	body := he.waitReady(t, http.StatusOK, "at start")
	for _, want := range []string{"[+] clients ok", "[+] router ok", "[+] egress ok", "[+] dataplane ok", "readyz check passed"} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz?verbose lacks %q:\n%s", want, body)
		}
	}
	if resp, err := http.Get(he.base + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", resp, err)
	}

	// A real client keeps working alongside the probe, and the probe
	// never shows up as a client.
	alice := he.client(t)
	if got := get(t, alice, "http://"+service.String()+"/"); got != "ok" {
		t.Fatalf("client through the gateway: %q", got)
	}
	if peers, _ := he.gw.ClientStatus(); len(peers) != 1 || peers[0].PublicKey != he.cliKey.Public() {
		t.Fatalf("ClientStatus shows the probe: %+v", peers)
	}

	he.bind.broken.Store(true)
	body = he.waitReady(t, http.StatusServiceUnavailable, "client UDP socket deaf")
	if !strings.Contains(body, "[-] dataplane failed: no echo reply") {
		t.Errorf("verbose body does not name the failing check:\n%s", body)
	}
	he.bind.broken.Store(false)
	he.waitReady(t, http.StatusOK, "client UDP socket mended")

	// The socket really closed: the client device goes down and up.
	if err := he.gw.Clients().Device().Down(); err != nil {
		t.Fatal(err)
	}
	he.waitReady(t, http.StatusServiceUnavailable, "client device down")
	if err := he.gw.Clients().Device().Up(); err != nil {
		t.Fatal(err)
	}
	he.waitReady(t, http.StatusOK, "client device up again")

	he.egress.broken.Store(true)
	he.waitReady(t, http.StatusServiceUnavailable, "egress broken")
	he.egress.broken.Store(false)
	he.waitReady(t, http.StatusOK, "egress mended")

	if !he.state.StartDrain() {
		t.Fatal("StartDrain: not the first call")
	}
	body = he.waitReady(t, http.StatusServiceUnavailable, "draining")
	if !strings.Contains(body, "[-] draining:") || !strings.Contains(body, "[+] dataplane ok") {
		t.Errorf("while draining, verbose body:\n%s", body)
	}
	if resp, err := http.Get(he.base + "/livez"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/livez while draining: %v %v", resp, err)
	}
}

// TestDrainLosesNothing: a client with continuous traffic (a UDP flow of
// numbered datagrams, every one echoed, and HTTP requests on one
// connection) through a draining gateway loses
// nothing during the drain window, while /readyz answers 503.
func TestDrainLosesNothing(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	he := startHealthGateway(t, srv)
	he.waitReady(t, http.StatusOK, "at start")
	c := he.client(t)
	hc := &http.Client{Transport: &http.Transport{DialContext: c.DialContext, MaxIdleConnsPerHost: 1}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	if _, err := c.Ping(context.Background(), netip.MustParseAddr("10.99.0.1"), 0, 5*time.Second); err != nil {
		t.Fatalf("ping before drain: %v", err)
	}

	const window = 3 * time.Second
	drained := make(chan error, 1)
	start := time.Now()
	go func() { drained <- health.Drain(context.Background(), he.state, window, nil, nil) }()

	// A UDP flow of numbered datagrams through the egress to an echo
	// service: every one must come back.
	uc, err := c.DialUDPAddrPort(netip.AddrPort{}, echoService)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	var wg sync.WaitGroup
	var udpSent, udpLost, reqs, reqFailed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	echoed := make(map[uint32]bool)
	var echoMu sync.Mutex
	wg.Add(3)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64)
		for {
			uc.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := uc.Read(buf)
			if err != nil {
				return
			}
			if n == 4 {
				echoMu.Lock()
				echoed[binary.BigEndian.Uint32(buf)] = true
				echoMu.Unlock()
			}
		}
	}()
	go func() {
		defer wg.Done()
		var b [4]byte
		for seq := uint32(1); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			binary.BigEndian.PutUint32(b[:], seq)
			// Counted before it is sent: its echo may arrive before
			// this goroutine runs again, and the count must never
			// fall behind the echoes (a drain would show -1 lost).
			udpSent.Add(1)
			if _, err := uc.Write(b[:]); err != nil {
				firstErr.CompareAndSwap(nil, fmt.Sprintf("UDP send %d: %v", seq, err))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			reqs.Add(1)
			resp, err := hc.Get("http://" + service.String() + "/")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != "ok" {
					err = fmt.Errorf("body %q", b)
				}
			}
			if err != nil {
				reqFailed.Add(1)
				firstErr.CompareAndSwap(nil, fmt.Sprintf("request: %v", err))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	he.waitReady(t, http.StatusServiceUnavailable, "right after the drain began")
	if took := time.Since(start); took > time.Second {
		t.Errorf("/readyz took %v to turn 503", took)
	}
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	close(stop)
	// Wait for the last echoes, then stop the reader.
	deadline := time.Now().Add(5 * time.Second)
	for {
		echoMu.Lock()
		got := len(echoed)
		echoMu.Unlock()
		if int64(got) >= udpSent.Load() || time.Now().After(deadline) {
			udpLost.Store(udpSent.Load() - int64(got))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	uc.Close()
	wg.Wait()
	if took := time.Since(start); took < window {
		t.Errorf("drain ended after %v, before its window of %v", took, window)
	}
	t.Logf("during the drain: %d UDP datagrams (%d lost), %d HTTP requests (%d failed)", udpSent.Load(), udpLost.Load(), reqs.Load(), reqFailed.Load())
	if udpLost.Load() != 0 || reqFailed.Load() != 0 {
		t.Fatalf("traffic lost during the drain: first: %v\nrouter: %+v\nnetstack: %+v", firstErr.Load(), he.gw.Router().Stats(), he.gw.Netstack().Stats())
	}
	if udpSent.Load() < 100 || reqs.Load() < 20 {
		t.Fatalf("too little traffic to tell: %d datagrams, %d requests", udpSent.Load(), reqs.Load())
	}
}
