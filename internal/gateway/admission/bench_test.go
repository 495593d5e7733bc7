package admission

import (
	"encoding/binary"
	"net/netip"
	"testing"

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
	msg, err := wgclient.CaptureInitiation(client, gw)
	if err != nil {
		tb.Fatal(err)
	}
	return msg
}

// BenchmarkJITInitiation measures what an initiation costs the gateway
// before wireguard-go sees it. hook: the receive goroutine's part (a copy
// and a channel send). worker/live-unread: the worker's part for a client
// that is a device peer at the endpoint it was read at (mac1, the fast
// path's lookup, release; fast.go). worker/live-read: the same client at
// an endpoint not known (mac1, one X25519, opening the static key and the
// timestamp with the cached static-static secret, the index lookup,
// release). worker/unknown: an initiation from a key not configured (one
// X25519, then dropped).
func BenchmarkJITInitiation(b *testing.B) {
	gwKey, _ := keys.Generate()
	alice, _ := keys.Generate()
	stranger, _ := keys.Generate()
	index := mapIndex{alice.Public(): {Name: "alice", PublicKey: alice.Public(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.2/32")}}}
	dev := newClientDevice(b, gwKey)
	msg := captureInitiation(b, alice, gwKey.Public())
	unknown := captureInitiation(b, stranger, gwKey.Public())
	from := &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("127.0.0.1:40000")}
	// Keep the device from answering: released initiations queue up in
	// the bind and are dropped once it is full, so the benchmark measures
	// the admission's work, not wireguard-go's.
	if err := dev.Device().Down(); err != nil {
		b.Fatal(err)
	}
	a := New(Config{PrivateKey: gwKey, Index: index, Device: dev, Bind: dev.Bind(), Reply: dev.Bind().Bind})
	a.Start()
	defer a.Close()
	// The benchmark is the worker from here on.
	close(a.stop)
	a.wg.Wait()
	a.stop = make(chan struct{}) // for Close

	b.Run("hook", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if a.onInitiation(msg, from) {
				<-a.queue
			}
		}
	})
	// The first initiation adds alice; later ones find her live.
	var in handshake.Initiation
	h := heldInitiation{from: from}
	copy(h.msg[:], msg)
	a.handle(&h, &in)
	if !dev.HasPeer(alice.Public()) {
		b.Fatal("alice was not added")
	}
	// The device is down and never answers: keep the release window open,
	// or the worker would wait releaseStall for answers every
	// releaseWindow releases and the benchmark would measure that.
	openWindow := func() { a.released, a.answeredBase = 0, dev.Bind().Answered() }
	sender := binary.LittleEndian.Uint32(h.msg[4:8])
	b.Run("worker/live-unread", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			openWindow()
			a.fast.answer(sender) // the device's answer to the previous one
			a.handle(&h, &in)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		if a.Stats().AcceptedUnread == 0 {
			b.Fatal("the fast path was not taken")
		}
	})
	b.Run("worker/live-read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			openWindow()
			a.fast.forget(alice.Public()) // not known at this endpoint: the full read
			a.mu.Lock()
			a.seen[alice.Public()].lastTS = handshake.Timestamp{} // accept the same initiation again
			a.mu.Unlock()
			a.handle(&h, &in)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	copy(h.msg[:], unknown)
	b.Run("worker/unknown", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			a.handle(&h, &in)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	if st := a.Stats(); st.Initiations["not_authentic"] != 0 || st.Initiations["unreadable"] != 0 {
		b.Fatalf("initiations: %v", st.Initiations)
	}
}

// mapIndex is a fixed client index.
type mapIndex map[keys.Key]config.Peer

func (m mapIndex) Peer(k keys.Key) (config.Peer, bool) { p, ok := m[k]; return p, ok }
func (m mapIndex) Len() int                            { return len(m) }

// newClientDevice starts a client device on loopback with no peers,
// closed when tb ends.
func newClientDevice(tb testing.TB, priv keys.Key) *device.WireGuard {
	tb.Helper()
	port := device.NewPort("admission-bench", 1420, func([][]byte, int) {})
	dev, err := device.NewWireGuard(device.WireGuardConfig{Name: "admission-bench", PrivateKey: priv}, port)
	if err != nil {
		port.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		dev.Close()
		port.Close()
	})
	return dev
}
