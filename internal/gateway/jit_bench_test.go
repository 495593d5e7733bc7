package gateway

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/device"
	"github.com/anyguard/anyguard/device/handshake"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/internal/wgclient"
)

// captureInitiation returns a real handshake initiation from a wireguard-go
// client with key client to a gateway with public key gw.
func captureInitiation(tb testing.TB, client, gw keys.Key) []byte {
	tb.Helper()
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	defer sock.Close()
	c, err := wgclient.New(wgclient.Config{
		PrivateKey: client, Address: netip.MustParseAddr("10.99.0.2"), Peer: gw,
		Endpoint:   sock.LocalAddr().(*net.UDPAddr).AddrPort(),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/16")},
	})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	go c.Ping(context.Background(), netip.MustParseAddr("10.99.0.1"), 1, time.Second)
	sock.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	for {
		n, err := sock.Read(buf)
		if err != nil {
			tb.Fatal(err)
		}
		if device.Classify(buf[:n]) == 1 {
			return buf[:n]
		}
	}
}

// BenchmarkJITInitiation measures what an initiation costs the gateway
// before wireguard-go sees it. hook: the receive goroutine's part (a copy
// and a channel send). worker/live-unread: the worker's part for a client
// that is a device peer at the endpoint it was read at (mac1, the fast
// path's lookup, release; jitfast.go). worker/live-read: the same client
// at an endpoint not known (mac1, one X25519, opening the static key and
// the timestamp with the cached static-static secret, the index lookup,
// release). worker/unknown: an initiation from a key not configured (one
// X25519, then dropped).
func BenchmarkJITInitiation(b *testing.B) {
	gwKey, _ := keys.Generate()
	alice, _ := keys.Generate()
	stranger, _ := keys.Generate()
	cfg := config.Default()
	cfg.Node.Name = "bench"
	cfg.Clients.PrivateKey = gwKey
	cfg.Clients.ListenPort = 0
	cfg.Clients.UAPI = false
	cfg.Clients.Address = []netip.Prefix{netip.MustParsePrefix("10.99.0.1/16")}
	cfg.Clients.Peers = []config.Peer{{Name: "alice", PublicKey: alice.Public(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.2/32")}}}
	cfg.Egress.Mode = config.ModeNetstack
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	g, err := New(cfg, Options{ProbeInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	msg := captureInitiation(b, alice, gwKey.Public())
	unknown := captureInitiation(b, stranger, gwKey.Public())
	from := &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("127.0.0.1:40000")}
	// Keep the device from answering: released initiations queue up in
	// the bind and are dropped once it is full, so the benchmark measures
	// the gateway's work, not wireguard-go's.
	if err := g.clients.Device().Down(); err != nil {
		b.Fatal(err)
	}
	j := g.jit
	// The benchmark is the worker from here on.
	close(j.stop)
	j.wg.Wait()

	b.Run("hook", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if j.onInitiation(msg, from) {
				<-j.queue
			}
		}
	})
	// The first initiation adds alice; later ones find her live.
	var in handshake.Initiation
	h := heldInitiation{from: from}
	copy(h.msg[:], msg)
	j.handle(&h, &in)
	if !g.clients.HasPeer(alice.Public()) {
		b.Fatal("alice was not added")
	}
	// The device is down and never answers: keep the release window open,
	// or the worker would wait releaseStall for answers every
	// releaseWindow releases and the benchmark would measure that.
	openWindow := func() { j.released, j.answeredBase = 0, g.clients.Bind().Answered() }
	sender := binary.LittleEndian.Uint32(h.msg[4:8])
	b.Run("worker/live-unread", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			openWindow()
			j.fast.answer(sender) // the device's answer to the previous one
			j.handle(&h, &in)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		if j.stats().AcceptedUnread == 0 {
			b.Fatal("the fast path was not taken")
		}
	})
	b.Run("worker/live-read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			openWindow()
			j.mu.Lock()
			j.seen[alice.Public()].lastTS = handshake.Timestamp{} // accept the same initiation again
			j.mu.Unlock()
			j.fast.forget(alice.Public()) // not known at this endpoint: the full read
			j.handle(&h, &in)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	copy(h.msg[:], unknown)
	b.Run("worker/unknown", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			j.handle(&h, &in)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	if st := j.stats(); st.Initiations["not_authentic"] != 0 || st.Initiations["unreadable"] != 0 {
		b.Fatalf("initiations: %v", st.Initiations)
	}
}
