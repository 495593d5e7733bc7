package gateway

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/device/handshake"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/keys"
)

func fastMsg(sender uint32) []byte {
	m := make([]byte, 148)
	m[0] = 1
	m[4] = byte(sender)
	m[5] = byte(sender >> 8)
	return m
}

// TestFastPathEntries: an endpoint is fast for the client last read there,
// while its previous unread release was answered, for at most fastTTL.
func TestFastPathEntries(t *testing.T) {
	f := newFastPath()
	alice, bob := keys.Key{1}, keys.Key{2}
	e1, e2 := netip.MustParseAddrPort("192.0.2.1:1000"), netip.MustParseAddrPort("192.0.2.2:2000")
	now := time.Now()
	if _, ok := f.lookup(e1, now); ok {
		t.Fatal("unknown endpoint is fast")
	}
	f.learn(e1, alice, now)
	if k, ok := f.lookup(e1, now); !ok || k != alice {
		t.Fatalf("after learn: %v %v", k, ok)
	}
	if _, ok := f.lookup(e1, now.Add(fastTTL+time.Second)); ok {
		t.Fatal("an entry older than fastTTL is fast")
	}
	if f.take(e1, bob, fastMsg(7)) {
		t.Fatal("take for another client than the entry's")
	}
	if !f.take(e1, alice, fastMsg(7)) {
		t.Fatal("take refused")
	}
	if _, ok := f.lookup(e1, now); ok {
		t.Fatal("fast while the previous unread release awaits its answer")
	}
	f.answer(8) // someone else's answer
	if _, ok := f.lookup(e1, now); ok {
		t.Fatal("another initiation's answer made the endpoint fast")
	}
	f.answer(7)
	if _, ok := f.lookup(e1, now); !ok {
		t.Fatal("not fast after the answer")
	}
	// Unanswered, then forgotten: nothing answered to hand back yet for
	// the second release, but the first one's message is kept.
	if !f.take(e1, alice, fastMsg(9)) {
		t.Fatal("second take refused")
	}
	msg, ok := f.forget(alice)
	if !ok || msg[4] != 7 {
		t.Fatalf("forget = sender %d, %v; want the answered one (7)", msg[4], ok)
	}
	if _, ok := f.lookup(e1, now); ok || len(f.awaiting) != 0 || len(f.byClient) != 0 {
		t.Fatalf("after forget: fast %v, awaiting %d, clients %d", ok, len(f.awaiting), len(f.byClient))
	}
	if _, ok := f.forget(alice); ok {
		t.Fatal("forget twice")
	}

	// A client read at a new endpoint leaves the old one; another client
	// read at an endpoint takes it over.
	f.learn(e1, alice, now)
	f.learn(e2, alice, now)
	if _, ok := f.lookup(e1, now); ok {
		t.Fatal("the client's old endpoint is still fast")
	}
	f.take(e2, alice, fastMsg(3))
	f.learn(e2, bob, now)
	if k, ok := f.lookup(e2, now); !ok || k != bob {
		t.Fatalf("after bob was read at alice's endpoint: %v %v", k, ok)
	}
	if _, ok := f.forget(alice); ok || len(f.awaiting) != 0 || f.len() != 1 {
		t.Fatalf("alice still known: awaiting %d, entries %d", len(f.awaiting), f.len())
	}
	f.answer(3) // late answer to a dropped entry: ignored
	if k, _ := f.lookup(e2, now); k != bob {
		t.Fatal("a late answer changed the entry")
	}
}

// TestFastPathKeepsReplaySafety: a live client's second initiation is
// released unread (the device answers it); after the client's peer is
// removed, a replay of that second initiation must be refused, although the
// worker never read it when it was new. Without the catch-up the worker
// would compare the replay with the first initiation's timestamp only,
// accept it and add the peer again.
func TestFastPathKeepsReplaySafety(t *testing.T) {
	gwKey, _ := keys.Generate()
	alice, _ := keys.Generate()
	cfg := config.Default()
	cfg.Node.Name = "fast"
	cfg.Clients.PrivateKey = gwKey
	cfg.Clients.ListenPort = 0
	cfg.Clients.UAPI = false
	cfg.Clients.Address = []netip.Prefix{netip.MustParsePrefix("10.99.0.1/16")}
	cfg.Clients.Peers = []config.Peer{{Name: "alice", PublicKey: alice.Public(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.2/32")}}}
	cfg.Egress.Mode = config.ModeNetstack
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, Options{ProbeInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	first := captureInitiation(t, alice, gwKey.Public())
	second := captureInitiation(t, alice, gwKey.Public()) // a later timestamp
	// The device's responses go to this socket (alice's endpoint).
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	from := &conn.StdNetEndpoint{AddrPort: sock.LocalAddr().(*net.UDPAddr).AddrPort()}
	j := g.jit
	close(j.stop) // the test is the worker from here on
	j.wg.Wait()
	handle := func(msg []byte) {
		t.Helper()
		answered := g.clients.Bind().Answered()
		var in handshake.Initiation
		h := heldInitiation{from: from}
		copy(h.msg[:], msg)
		j.handle(&h, &in)
		deadline := time.Now().Add(5 * time.Second)
		for g.clients.Bind().Answered() == answered {
			if time.Now().After(deadline) {
				t.Fatalf("the device did not answer; initiations %v", j.stats().Initiations)
			}
			time.Sleep(5 * time.Millisecond)
		}
		// wireguard-go refuses a peer's initiations less than 50 ms apart.
		time.Sleep(60 * time.Millisecond)
	}
	handle(first)
	if st := j.stats(); st.Added != 1 || st.AcceptedUnread != 0 {
		t.Fatalf("after the first initiation: %+v", st)
	}
	handle(second)
	if st := j.stats(); st.AcceptedUnread != 1 {
		t.Fatalf("the live client's second initiation was not released unread: %+v", st)
	}
	j.remove([]keys.Key{alice.Public()}, removedIdle)
	if g.clients.HasPeer(alice.Public()) || j.fast.len() != 0 {
		t.Fatalf("after removal: peer %v, fast entries %d", g.clients.HasPeer(alice.Public()), j.fast.len())
	}
	for _, replay := range [][]byte{second, first} {
		var in handshake.Initiation
		h := heldInitiation{from: from}
		copy(h.msg[:], replay)
		j.handle(&h, &in)
	}
	if st := j.stats(); st.Initiations["replay"] != 2 || st.Added != 1 || g.clients.HasPeer(alice.Public()) {
		t.Fatalf("replays after removal: %+v, peer %v", st, g.clients.HasPeer(alice.Public()))
	}
	// A new initiation from alice is still welcome.
	handle(captureInitiation(t, alice, gwKey.Public()))
	if st := j.stats(); st.Added != 2 || !g.clients.HasPeer(alice.Public()) {
		t.Fatalf("alice's new initiation after the replays: %+v", st)
	}
}
