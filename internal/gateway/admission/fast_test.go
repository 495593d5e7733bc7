package admission

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/device/handshake"
	"github.com/anyguard/anyguard/internal/keys"
)

func fastMsg(sender uint32) []byte {
	m := make([]byte, 148)
	m[0] = 1
	m[4] = byte(sender)
	m[5] = byte(sender >> 8)
	return m
}

// answeredSender returns the sender index of client's answered
// initiation, or -1 if there is none (and consumes it).
func answeredSender(f *fastPath, client keys.Key) int {
	var m [148]byte
	if !f.takeAnswered(client, &m) {
		return -1
	}
	return int(m[4]) | int(m[5])<<8
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
	f.learn(netip.AddrPort{}, alice, now)
	if f.endpoints() != 0 {
		t.Fatal("an invalid endpoint was learnt")
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
	if f.take(e1, alice, fastMsg(8)) {
		t.Fatal("second take before the answer")
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
	// Unanswered, then forgotten: the answered one (7) is kept for the
	// catch-up, the unanswered one (9) is not.
	if !f.take(e1, alice, fastMsg(9)) {
		t.Fatal("second take refused")
	}
	f.forget(alice)
	if _, ok := f.lookup(e1, now); ok || len(f.awaiting) != 0 || f.endpoints() != 0 {
		t.Fatalf("after forget: fast %v, awaiting %d, endpoints %d", ok, len(f.awaiting), f.endpoints())
	}
	f.answer(9) // late answer to a forgotten entry: ignored
	if got := answeredSender(f, alice); got != 7 {
		t.Fatalf("answered after forget = %d; want 7", got)
	}
	if got := answeredSender(f, alice); got != -1 {
		t.Fatalf("answered taken twice: %d", got)
	}

	// A client read at a new endpoint leaves the old one; another client
	// read at an endpoint takes it over. Neither loses what the device
	// answered.
	f.learn(e1, alice, now)
	f.take(e1, alice, fastMsg(3))
	f.answer(3)
	f.learn(e2, alice, now)
	if _, ok := f.lookup(e1, now); ok {
		t.Fatal("the client's old endpoint is still fast")
	}
	f.take(e2, alice, fastMsg(4))
	f.answer(4)
	f.take(e2, alice, fastMsg(5)) // awaiting when bob takes the endpoint over
	f.learn(e2, bob, now)
	if k, ok := f.lookup(e2, now); !ok || k != bob {
		t.Fatalf("after bob was read at alice's endpoint: %v %v", k, ok)
	}
	if len(f.awaiting) != 0 || f.endpoints() != 1 {
		t.Fatalf("alice's release still awaited: awaiting %d, endpoints %d", len(f.awaiting), f.endpoints())
	}
	f.answer(5) // late answer to a dropped entry: ignored
	if k, _ := f.lookup(e2, now); k != bob {
		t.Fatal("a late answer changed the entry")
	}
	if got := answeredSender(f, alice); got != 4 {
		t.Fatalf("alice's answered after losing her endpoint = %d; want 4", got)
	}
	if got := answeredSender(f, bob); got != -1 {
		t.Fatalf("bob has alice's answered initiation: %d", got)
	}
	f.remove(bob)
	if f.endpoints() != 0 || len(f.clients) != 1 {
		t.Fatalf("after remove: endpoints %d, clients %d", f.endpoints(), len(f.clients))
	}
}

// fakeSessions is a Sessions that records what admission tells it.
type fakeSessions struct {
	needsClaim atomic.Bool
	responses  atomic.Uint64
	mu         sync.Mutex
	expected   int
}

func (s *fakeSessions) ExpectConfirmation(uint32, keys.Key, netip.AddrPort) {
	s.mu.Lock()
	s.expected++
	s.mu.Unlock()
}
func (s *fakeSessions) NeedsClaim(keys.Key) bool { return s.needsClaim.Load() }
func (s *fakeSessions) Lost(keys.Key)            {}
func (s *fakeSessions) OnResponse(uint32)        { s.responses.Add(1) }

func (s *fakeSessions) expectations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expected
}

// TestFastPathKeepsReplaySafety: a live client's second initiation is
// released unread (the device answers it); after the client's peer is
// removed, a replay of that second initiation must be refused, although the
// worker never read it when it was new. Without the catch-up the worker
// would compare the replay with the first initiation's timestamp only,
// accept it and add the peer again. While Sessions needs a claim, nothing
// goes unread, and the device's responses reach Sessions.
func TestFastPathKeepsReplaySafety(t *testing.T) {
	gwKey, _ := keys.Generate()
	alice, _ := keys.Generate()
	index := mapIndex{alice.Public(): {Name: "alice", PublicKey: alice.Public(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.2/32")}}}
	dev := newClientDevice(t, gwKey)
	sessions := &fakeSessions{}
	sessions.needsClaim.Store(true)
	a := New(Config{PrivateKey: gwKey, Index: index, Device: dev, Bind: dev.Bind(), Reply: dev.Bind().Bind, Sessions: sessions})
	a.Start()
	defer a.Close()
	close(a.stop) // the test is the worker from here on
	a.wg.Wait()
	a.stop = make(chan struct{}) // for Close

	msgs := make([][]byte, 4) // later ones carry later timestamps
	for i := range msgs {
		// wireguard-go's timestamps are whitened to 2^24 ns: two
		// initiations less than 17 ms apart may carry the same one.
		time.Sleep(20 * time.Millisecond)
		msgs[i] = captureInitiation(t, alice, gwKey.Public())
	}
	// The device's responses go to this socket (alice's endpoint).
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	from := &conn.StdNetEndpoint{AddrPort: sock.LocalAddr().(*net.UDPAddr).AddrPort()}
	handleOnly := func(msg []byte) {
		var in handshake.Initiation
		h := heldInitiation{from: from}
		copy(h.msg[:], msg)
		a.handle(&h, &in)
	}
	handle := func(msg []byte) {
		t.Helper()
		answered := dev.Bind().Answered()
		handleOnly(msg)
		deadline := time.Now().Add(5 * time.Second)
		for dev.Bind().Answered() == answered {
			if time.Now().After(deadline) {
				t.Fatalf("the device did not answer; %+v bind %+v", a.Stats(), dev.Bind().Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
		// wireguard-go refuses a peer's initiations less than 50 ms apart.
		time.Sleep(60 * time.Millisecond)
	}
	handle(msgs[0])
	if st := a.Stats(); st.Added != 1 || st.AcceptedUnread != 0 {
		t.Fatalf("after the first initiation: %+v", st)
	}
	handle(msgs[1])
	if st := a.Stats(); st.AcceptedUnread != 0 || sessions.expectations() != 2 {
		t.Fatalf("released unread while a claim is needed: %+v, expectations %d", st, sessions.expectations())
	}
	sessions.needsClaim.Store(false)
	handle(msgs[2])
	if st := a.Stats(); st.AcceptedUnread != 1 || sessions.expectations() != 2 {
		t.Fatalf("the live client's initiation was not released unread: %+v, expectations %d", st, sessions.expectations())
	}
	deadline := time.Now().Add(5 * time.Second)
	for sessions.responses.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("sessions heard %d responses; want 3", sessions.responses.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.Remove([]keys.Key{alice.Public()}, RemovedIdle)
	if dev.HasPeer(alice.Public()) || a.fast.endpoints() != 0 {
		t.Fatalf("after removal: peer %v, fast endpoints %d", dev.HasPeer(alice.Public()), a.fast.endpoints())
	}
	for _, replay := range [][]byte{msgs[2], msgs[1], msgs[0]} {
		handleOnly(replay)
	}
	if st := a.Stats(); st.Initiations["replay"] != 3 || st.Added != 1 || dev.HasPeer(alice.Public()) {
		t.Fatalf("replays after removal: %+v, peer %v", st, dev.HasPeer(alice.Public()))
	}
	// A new initiation from alice is still welcome.
	handle(msgs[3])
	if st := a.Stats(); st.Added != 2 || !dev.HasPeer(alice.Public()) {
		t.Fatalf("alice's new initiation after the replays: %+v", st)
	}
}
