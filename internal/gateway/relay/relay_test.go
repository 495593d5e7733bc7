package relay

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/device"
)

var (
	owner = netip.MustParseAddr("100.64.0.1") // the draining gateway's backbone address
	other = netip.MustParseAddr("100.64.0.9")
	cliEP = netip.MustParseAddrPort("198.51.100.7:51820")
)

type sent struct {
	via  netip.Addr
	kind device.RelayKind
	ep   netip.AddrPort
}

// fakes records what the Relay does to the backbone, the bind and the
// socket; owners maps the endpoints it may relay.
type fakes struct {
	mu       sync.Mutex
	backbone []sent
	injected []netip.AddrPort
	socket   []netip.AddrPort
	owners   map[netip.AddrPort]netip.Addr // invalid via: a candidate with no owner to relay to
	lookups  int
	injectOK bool
}

func (f *fakes) SendRelay(via netip.Addr, kind device.RelayKind, ep netip.AddrPort, _ []byte) error {
	f.mu.Lock()
	f.backbone = append(f.backbone, sent{via, kind, ep})
	f.mu.Unlock()
	return nil
}

func (f *fakes) Inject(_ []byte, from conn.Endpoint) bool {
	f.mu.Lock()
	f.injected = append(f.injected, from.(*conn.StdNetEndpoint).AddrPort)
	f.mu.Unlock()
	return f.injectOK
}

func (f *fakes) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	return &conn.StdNetEndpoint{AddrPort: ap}, err
}

func (f *fakes) Send(bufs [][]byte, ep conn.Endpoint) error {
	f.mu.Lock()
	f.socket = append(f.socket, ep.(*conn.StdNetEndpoint).AddrPort)
	f.mu.Unlock()
	return nil
}

func (f *fakes) RelayVia(ep netip.AddrPort) (netip.Addr, bool) {
	f.lookups++
	via, ok := f.owners[ep]
	return via, ok
}

func (f *fakes) reset() {
	f.mu.Lock()
	f.backbone, f.injected, f.socket = nil, nil, nil
	f.mu.Unlock()
}

// clock is a settable time.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestRelay(t *testing.T) (*Relay, *fakes, *clock) {
	f := &fakes{owners: map[netip.AddrPort]netip.Addr{cliEP: owner}, injectOK: true}
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	r := New(Config{Backbone: f, Bind: f, Sender: f, Owners: f, Self: "b2", Now: c.now})
	return r, f, c
}

func transport(n int) []byte {
	p := make([]byte, n)
	binary.LittleEndian.PutUint32(p, 4)
	return p
}

func ep(ap netip.AddrPort) conn.Endpoint { return &conn.StdNetEndpoint{AddrPort: ap} }

// TestRelayOnlyForAnotherLiveOwner: datagrams from an endpoint that Owners
// does not name (a client of this gateway, an unknown source, an owner that
// is this gateway or not alive) are not relayed; those of a moved client
// are, to its owner.
func TestRelayOnlyForAnotherLiveOwner(t *testing.T) {
	r, f, c := newTestRelay(t)
	d := transport(64)
	r.FromClient(d, ep(netip.MustParseAddrPort("203.0.113.1:1000")))
	r.FromClient(d, bindtestEndpoint{})
	if len(f.backbone) != 0 {
		t.Fatalf("relayed %v", f.backbone)
	}
	r.FromClient(d, ep(cliEP))
	r.FromClient(d, ep(cliEP))
	if len(f.backbone) != 2 || f.backbone[0] != (sent{owner, device.RelayToOwner, cliEP}) {
		t.Fatalf("relayed %v", f.backbone)
	}
	// A moved client whose owner is not relayable (dead, this gateway):
	// nothing relayed, and its owner looked up once per retryOwner, not
	// per datagram.
	dead := netip.MustParseAddrPort("198.51.100.8:51820")
	f.owners[dead] = netip.Addr{}
	f.lookups = 0
	for range 100 {
		r.FromClient(d, ep(dead))
	}
	if len(f.backbone) != 2 || f.lookups != 1 {
		t.Fatalf("no owner to relay to: relayed %v, %d lookups", f.backbone, f.lookups)
	}
	c.advance(retryOwner + time.Millisecond)
	f.owners[dead] = owner // it turned out alive after all
	r.FromClient(d, ep(dead))
	if len(f.backbone) != 3 || f.lookups != 2 {
		t.Fatalf("after retryOwner: relayed %v, %d lookups", f.backbone, f.lookups)
	}
	if s := r.Stats(); s["to_owner"] != 3 || s["endpoints_started"] != 2 {
		t.Fatalf("stats %v", s)
	}
}

// bindtestEndpoint is an endpoint of no socket (not a StdNetEndpoint).
type bindtestEndpoint struct{ conn.Endpoint }

// TestRelayBoundsAFlood: junk transport datagrams from a moved client's
// endpoint (anyone can send them from a spoofed address) are relayed at
// most PerEndpoint per endpoint and Total over all endpoints per slot;
// the rest are counted and dropped.
func TestRelayBoundsAFlood(t *testing.T) {
	r, f, c := newTestRelay(t)
	d := transport(1452)
	for range 3 * PerEndpoint {
		r.FromClient(d, ep(cliEP))
	}
	if len(f.backbone) != PerEndpoint {
		t.Fatalf("relayed %d of a flood from one endpoint, want %d", len(f.backbone), PerEndpoint)
	}
	c.advance(rateSlot)
	f.reset()
	for range 3 * PerEndpoint {
		r.FromClient(d, ep(cliEP))
	}
	if len(f.backbone) != PerEndpoint {
		t.Fatalf("relayed %d in the next slot, want %d", len(f.backbone), PerEndpoint)
	}
	// Many endpoints: the total bound.
	c.advance(rateSlot)
	f.reset()
	n := 2 * Total / PerEndpoint
	for i := range n {
		f.owners[netip.AddrPortFrom(cliEP.Addr(), uint16(1000+i))] = owner
	}
	for i := range n {
		for range PerEndpoint {
			r.FromClient(d, ep(netip.AddrPortFrom(cliEP.Addr(), uint16(1000+i))))
		}
	}
	if len(f.backbone) != Total {
		t.Fatalf("relayed %d from %d endpoints, want %d", len(f.backbone), n, Total)
	}
	s := r.Stats()
	if s["drop_rate_endpoint"] != 4*PerEndpoint || s["drop_rate_total"] != uint64(n*PerEndpoint-Total) {
		t.Fatalf("stats %v", s)
	}
}

// TestRelayWindow: an endpoint is relayed for Window at most, Grace after
// this gateway claimed its client, and not again until its cooldown ends.
func TestRelayWindow(t *testing.T) {
	r, f, c := newTestRelay(t)
	d := transport(64)
	r.FromClient(d, ep(cliEP))
	c.advance(Window - time.Millisecond)
	r.FromClient(d, ep(cliEP))
	c.advance(2 * time.Millisecond)
	r.FromClient(d, ep(cliEP))
	if len(f.backbone) != 2 {
		t.Fatalf("relayed %d datagrams across the window, want 2", len(f.backbone))
	}
	c.advance(Cooldown / 2)
	r.sweep(c.now())
	r.FromClient(d, ep(cliEP))
	if len(f.backbone) != 2 {
		t.Fatal("relayed again during the cooldown")
	}
	c.advance(Cooldown)
	r.sweep(c.now())
	r.FromClient(d, ep(cliEP))
	if len(f.backbone) != 3 {
		t.Fatal("not relayed again after the cooldown")
	}
	// This gateway claims the client: Grace more.
	r.OwnerChanged(cluster.Record{Owner: "a1", Endpoint: cliEP}, cluster.Record{Owner: "b2", Endpoint: cliEP})
	c.advance(Grace - time.Millisecond)
	r.FromClient(d, ep(cliEP))
	c.advance(2 * time.Millisecond)
	r.FromClient(d, ep(cliEP))
	if len(f.backbone) != 4 {
		t.Fatalf("relayed %d, want 4: Grace after the claim and no more", len(f.backbone))
	}
	// Another gateway's claim changes nothing.
	r.OwnerChanged(cluster.Record{}, cluster.Record{Owner: "b1", Endpoint: cliEP})
}

// TestRelayToClientOnlyForItsOwner: the owner's datagrams for a client are
// sent from the client socket only for an endpoint this gateway relays to
// that very owner, within the window and Grace; any other is dropped and
// counted.
func TestRelayToClientOnlyForItsOwner(t *testing.T) {
	r, f, c := newTestRelay(t)
	d := transport(64)
	r.FromBackbone(owner, device.RelayToClient, cliEP, d) // not relayed yet
	r.FromClient(d, ep(cliEP))
	r.FromBackbone(other, device.RelayToClient, cliEP, d)                                            // another gateway
	r.FromBackbone(owner, device.RelayToClient, netip.MustParseAddrPort("203.0.113.1:1000"), d)      // another endpoint
	r.FromBackbone(owner, device.RelayToClient, netip.AddrPortFrom(cliEP.Addr(), cliEP.Port()+1), d) // another port
	if len(f.socket) != 0 {
		t.Fatalf("sent %v", f.socket)
	}
	r.FromBackbone(owner, device.RelayToClient, cliEP, d)
	if len(f.socket) != 1 || f.socket[0] != cliEP {
		t.Fatalf("sent %v", f.socket)
	}
	c.advance(Window + Grace + time.Millisecond)
	r.FromBackbone(owner, device.RelayToClient, cliEP, d)
	if len(f.socket) != 1 {
		t.Fatal("sent after the window and Grace")
	}
	if s := r.Stats(); s["drop_not_relaying"] != 5 || s["to_client"] != 1 {
		t.Fatalf("stats %v", s)
	}
}

// TestRelayOwnerSide: as the owner, a relayed datagram is injected as if
// from the client's endpoint, and the device's datagrams to that endpoint
// go back through the relaying gateway for Hold after the latest; the
// session is held Grace after losing the client while that lasts.
func TestRelayOwnerSide(t *testing.T) {
	r, f, c := newTestRelay(t)
	d := transport(64)
	if r.Divert(d, ep(cliEP)) {
		t.Fatal("diverted before anything was relayed here")
	}
	r.FromBackbone(other, device.RelayToOwner, cliEP, d)
	if len(f.injected) != 1 || f.injected[0] != cliEP {
		t.Fatalf("injected %v", f.injected)
	}
	lost := cluster.Record{Owner: "b2", Endpoint: cliEP}
	if h := r.HoldSession(cluster.Record{Owner: "a1", Endpoint: cliEP}, lost); h != Grace {
		t.Fatalf("HoldSession %v, want %v", h, Grace)
	}
	if !r.Divert(d, ep(cliEP)) || r.Divert(d, ep(netip.MustParseAddrPort("203.0.113.1:1000"))) || r.Divert(d, bindtestEndpoint{}) {
		t.Fatal("Divert took the wrong datagrams")
	}
	if len(f.backbone) != 1 || f.backbone[0] != (sent{other, device.RelayToClient, cliEP}) {
		t.Fatalf("backbone %v", f.backbone)
	}
	c.advance(Hold + time.Millisecond)
	if r.Divert(d, ep(cliEP)) || r.HoldSession(cluster.Record{}, lost) != 0 {
		t.Fatal("still diverting (or holding) after Hold")
	}
	f.injectOK = false
	r.FromBackbone(other, device.RelayToOwner, cliEP, d)
	if s := r.Stats(); s["injected"] != 1 || s["diverted"] != 1 || s["drop_inject"] != 1 {
		t.Fatalf("stats %v", s)
	}
	c.advance(Hold + Grace + time.Second)
	r.sweep(c.now())
	if r.inN.Load() != 0 {
		t.Fatal("the owner's route was not forgotten")
	}
}

// TestRelayDoesNotAllocate: the per-datagram paths of both sides, once an
// endpoint is relayed, allocate nothing.
func TestRelayDoesNotAllocate(t *testing.T) {
	r, _, _ := newTestRelay(t)
	nop := &nopFakes{}
	r.backbone, r.bind, r.sender = nop, nop, nop
	d := transport(1452)
	e := ep(cliEP)
	r.FromClient(d, e)
	r.FromBackbone(owner, device.RelayToOwner, cliEP, d)
	for name, fn := range map[string]func(){
		"FromClient":           func() { r.FromClient(d, e) },
		"FromBackbone(client)": func() { r.FromBackbone(owner, device.RelayToClient, cliEP, d) },
		"FromBackbone(owner)":  func() { r.FromBackbone(owner, device.RelayToOwner, cliEP, d) },
		"Divert":               func() { r.Divert(d, e) },
	} {
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Errorf("%s: %v allocs", name, n)
		}
	}
}

type nopFakes struct{ fakes }

func (*nopFakes) SendRelay(netip.Addr, device.RelayKind, netip.AddrPort, []byte) error { return nil }
func (*nopFakes) Inject([]byte, conn.Endpoint) bool                                    { return true }
func (*nopFakes) Send([][]byte, conn.Endpoint) error                                   { return nil }

// BenchmarkRelayFromClient is the relaying gateway's cost per datagram
// of a relayed endpoint; run with -benchmem (0 allocs/op).
func BenchmarkRelayFromClient(b *testing.B) {
	f := &nopFakes{fakes{owners: map[netip.AddrPort]netip.Addr{cliEP: owner}}}
	r := New(Config{Backbone: f, Bind: f, Sender: f, Owners: f, Self: "b2"})
	d := transport(1452)
	e := ep(cliEP)
	b.ReportAllocs()
	for b.Loop() {
		r.FromClient(d, e)
	}
}

// BenchmarkRelayDivert is the owner's cost per datagram it sends to a
// relayed endpoint; run with -benchmem (0 allocs/op).
func BenchmarkRelayDivert(b *testing.B) {
	f := &nopFakes{}
	r := New(Config{Backbone: f, Bind: f, Sender: f, Owners: f, Self: "a1"})
	d := transport(1452)
	e := ep(cliEP)
	r.FromBackbone(other, device.RelayToOwner, cliEP, d)
	b.ReportAllocs()
	for b.Loop() {
		r.Divert(d, e)
	}
}

// TestRelayReplaysWhatTheMoveDropped: a draining owner keeps copies of
// what it sends clients directly; the first datagram relayed from a
// client's endpoint sends that endpoint's copies of the last recentAge
// through the relaying gateway (the load balancer dropped the originals
// sent after the move), oldest first, and nothing of other endpoints.
func TestRelayReplaysWhatTheMoveDropped(t *testing.T) {
	r, f, c := newTestRelay(t)
	d := transport(64)
	otherEP := netip.MustParseAddrPort("203.0.113.1:1000")
	r.Divert(d, ep(cliEP)) // not draining: nothing kept
	r.Draining()
	r.Draining()
	old := transport(64)
	old[8] = 1
	r.Divert(old, ep(cliEP)) // too old by the time the client's datagram arrives
	c.advance(recentAge)
	for i := range 3 {
		m := transport(64)
		m[8] = byte(10 + i)
		if r.Divert(m, ep(cliEP)) {
			t.Fatal("diverted before anything was relayed here")
		}
		r.Divert(d, ep(otherEP))
		c.advance(10 * time.Millisecond)
	}
	r.FromBackbone(other, device.RelayToOwner, cliEP, d)
	if len(f.backbone) != 3 {
		t.Fatalf("replayed %v, want the 3 recent datagrams to %v", f.backbone, cliEP)
	}
	for _, s := range f.backbone {
		if s != (sent{other, device.RelayToClient, cliEP}) {
			t.Fatalf("replayed %v", f.backbone)
		}
	}
	// Relayed again soon after: no replay (the datagrams since were
	// diverted).
	r.FromBackbone(other, device.RelayToOwner, cliEP, d)
	if len(f.backbone) != 3 || r.Stats()["replayed"] != 3 {
		t.Fatalf("replayed again: %v", f.backbone)
	}
}

// TestRelayRecentDoesNotAllocate: keeping copies while draining
// allocates nothing per datagram.
func TestRelayRecentDoesNotAllocate(t *testing.T) {
	r, _, _ := newTestRelay(t)
	r.Draining()
	d := transport(1452)
	e := ep(cliEP)
	if n := testing.AllocsPerRun(1000, func() { r.Divert(d, e) }); n != 0 {
		t.Fatalf("Divert while draining: %v allocs", n)
	}
}
