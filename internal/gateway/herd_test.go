package gateway_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/internal/testwait"
	"github.com/anyguard/anyguard/internal/wgclient"
)

// TestProbeReadyUnderHerd: while a flood of real initiations from many
// keys and sources keeps the gateway's admission under load (cookies
// demanded), the data-path probe has to handshake again, three times. Its
// initiations come from its own endpoint with its own key and skip the
// queue and the cookie demand, so the gateway never turns unready; before
// that they got a cookie reply like everyone else's, the probe waited 5 s
// for wireguard-go's retry, and readiness failed within two rounds. A
// client with an established session keeps being served meanwhile.
func TestProbeReadyUnderHerd(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	e := startGatewayWith(t, srv, gateway.Options{ProbeInterval: 200 * time.Millisecond})
	c := e.client(t)
	if body := get(t, c, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("before the herd: %q", body)
	}
	testwait.Until(t, 5*time.Second, "the probe to succeed", func() bool { return probeOK(e.gw) })

	// The herd: real initiations of 8 keys (alice's and 7 unknown ones),
	// each sent over and over from 32 sources, up to 6,400 a second (as
	// many as 32,000 clients retrying every 5 s; a tenth with -race).
	var msgs [][]byte
	msgs = append(msgs, captureInitiation(t, e.cliKey, e.gwKey.Public()))
	for range 7 {
		k, _ := keys.Generate()
		msgs = append(msgs, captureInitiation(t, k, e.gwKey.Public()))
	}
	e.gw.UnderLoadForTest(time.Minute)
	pause := 5 * time.Millisecond
	if gateway.RaceEnabledForTest {
		pause *= 10 // the race detector slows the gateway tenfold
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i := range 32 {
		u, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(e.endpoint))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer u.Close()
			for n := 0; ctx.Err() == nil; n++ {
				u.Write(msgs[(i+n)%len(msgs)])
				time.Sleep(pause)
			}
		}()
	}
	testwait.Until(t, 5*time.Second, "the herd to be sent cookies", func() bool {
		return e.gw.PeerStats().Initiations["cookie_sent"] > 100
	})

	released := e.gw.PeerStats().ProbeReleased
	notReady, samples := 0, 0
	// A new handshake every 2 s, and readiness sampled until 3 s after
	// the last: a probe that waited 5 s for a retry would have failed two
	// rounds (1 s timeout each) by then.
	start := time.Now()
	for i := 0; time.Since(start) < 7*time.Second; time.Sleep(50 * time.Millisecond) {
		if i < 3 && time.Since(start) >= time.Duration(i)*2*time.Second {
			e.gw.ProbeRehandshakeForTest()
			i++
		}
		samples++
		if !probeOK(e.gw) {
			notReady++
		}
	}
	st := e.gw.PeerStats()
	t.Logf("probe rounds %v; initiations %v; probe released %d", e.gw.Metrics().Probe, st.Initiations, st.ProbeReleased-released)
	switch {
	case notReady > 0 && gateway.RaceEnabledForTest:
		// Rounds time out (1 s) on a gateway slowed down tenfold: only
		// the probe's way past the queue is checked.
		t.Logf("the gateway was not ready in %d of %d samples under the herd (race detector on: not checked)", notReady, samples)
	case notReady > 0:
		t.Errorf("the gateway was not ready in %d of %d samples under the herd", notReady, samples)
	}
	if st.ProbeReleased-released < 3 {
		t.Errorf("%d of the probe's 3 new handshakes went past the queue", st.ProbeReleased-released)
	}
	if body := get(t, c, "http://"+service.String()+"/"); body != "ok" {
		t.Fatalf("established client under the herd: %q", body)
	}
}

// captureInitiation returns a real handshake initiation from a wireguard-go
// client with key client to a gateway with public key gw.
func captureInitiation(tb testing.TB, client, gw keys.Key) []byte {
	tb.Helper()
	msg, err := wgclient.CaptureInitiation(client, gw)
	if err != nil {
		tb.Fatal(err)
	}
	return msg
}
