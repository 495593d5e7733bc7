package router_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"testing"

	"github.com/anyguard/anyguard/router"
	"github.com/anyguard/anyguard/router/routertest"
)

const headroom = 16

var (
	client1  = netip.MustParseAddr("10.99.0.2")
	client2  = netip.MustParseAddr("10.99.0.3")
	server   = netip.MustParseAddr("10.1.0.10")
	client6  = netip.MustParseAddr("fd99::2")
	server6  = netip.MustParseAddr("fd01::10")
	outside  = netip.MustParseAddr("192.0.2.1")
	clientNt = netip.MustParsePrefix("10.99.0.0/16")

	// Backbone addresses of other gateways, the next hops of backbone routes.
	gwB = netip.MustParseAddr("100.64.0.2") // serves 10.2.0.0/16
	gwC = netip.MustParseAddr("100.64.0.3") // serves 10.4.0.0/16
	gwD = netip.MustParseAddr("100.64.0.4") // owns client 10.99.0.7
	// A client whose session another gateway (gwD) holds.
	remoteClient = netip.MustParseAddr("10.99.0.7")
	noVia        netip.Addr
)

type fixture struct {
	r                           *router.Router
	clients, egress             *routertest.Sink
	backbone                    *routertest.ViaSink
	clientID, egressID, bboneID router.PortID
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{r: router.New(), clients: &routertest.Sink{}, egress: &routertest.Sink{}, backbone: &routertest.ViaSink{}}
	f.clientID = f.r.AddPort("clients", router.KindClient, f.clients)
	f.egressID = f.r.AddPort("egress", router.KindEgress, f.egress)
	f.bboneID = f.r.AddPort("backbone", router.KindBackbone, f.backbone)
	must(t, f.r.SetRoutes([]router.Route{
		{Prefix: netip.MustParsePrefix("10.99.0.2/32"), Port: f.clientID},
		{Prefix: netip.MustParsePrefix("10.99.0.3/32"), Port: f.clientID},
		{Prefix: netip.MustParsePrefix("fd99::2/128"), Port: f.clientID},
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Port: f.egressID},
		{Prefix: netip.MustParsePrefix("fd01::/64"), Port: f.egressID},
		{Prefix: netip.MustParsePrefix("10.2.0.0/16"), Port: f.bboneID, Via: gwB},
		{Prefix: netip.MustParsePrefix("10.4.0.0/16"), Port: f.bboneID, Via: gwC},
		{Prefix: netip.PrefixFrom(remoteClient, 32), Port: f.bboneID, Via: gwD},
		{Prefix: netip.MustParsePrefix("10.5.0.0/16"), Port: f.bboneID}, // no next hop
		{Prefix: netip.MustParsePrefix("10.6.0.0/16"), Port: f.egressID, Via: gwB},
	}))
	must(t, f.r.SetSources(f.clientID, []router.SourceRule{
		{Prefix: netip.MustParsePrefix("10.99.0.2/32"), Allow: true},
		{Prefix: netip.MustParsePrefix("10.99.0.3/32"), Allow: true},
		{Prefix: netip.MustParsePrefix("fd99::2/128"), Allow: true},
	}))
	must(t, f.r.SetSources(f.egressID, []router.SourceRule{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Allow: true},
		{Prefix: netip.MustParsePrefix("::/0"), Allow: true},
		{Prefix: clientNt, Allow: false},
	}))
	must(t, f.r.SetSources(f.bboneID, []router.SourceRule{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Allow: true},
	}))
	return f
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestForwardDecisions(t *testing.T) {
	tests := []struct {
		name     string
		in       string // port
		src, dst netip.Addr
		ttl      uint8
		wantPort string // "" = dropped
		drop     router.DropReason
		wantVia  netip.Addr // for the backbone
	}{
		{"client to egress", "clients", client1, server, 64, "egress", 0, noVia},
		{"client to egress v6", "clients", client6, server6, 64, "egress", 0, noVia},
		{"egress to client", "egress", server, client1, 64, "clients", 0, noVia},
		{"client to client hairpin", "clients", client1, client2, 64, "clients", 0, noVia},
		{"client to backbone", "clients", client1, netip.MustParseAddr("10.2.3.4"), 64, "backbone", 0, gwB},
		{"client to other region", "clients", client1, netip.MustParseAddr("10.4.0.1"), 64, "backbone", 0, gwC},
		{"egress to client owned elsewhere", "egress", server, remoteClient, 64, "backbone", 0, gwD},
		{"client to client owned elsewhere", "clients", client1, remoteClient, 64, "backbone", 0, gwD},
		{"backbone route without via", "clients", client1, netip.MustParseAddr("10.5.0.1"), 64, "backbone", 0, noVia},
		{"via ignored on a plain port", "clients", client1, netip.MustParseAddr("10.6.0.1"), 64, "egress", 0, noVia},
		{"backbone to client", "backbone", server, client1, 64, "clients", 0, noVia},
		{"spoofed client source", "clients", netip.MustParseAddr("10.99.0.9"), server, 64, "", router.DropSourceInvalid, noVia},
		{"egress claims client source", "egress", client2, client1, 64, "", router.DropSourceInvalid, noVia},
		{"no route", "clients", client1, outside, 64, "", router.DropNoRoute, noVia},
		{"ttl expired", "clients", client1, server, 1, "", router.DropTTLExpired, noVia},
		{"ttl zero", "clients", client1, server, 0, "", router.DropTTLExpired, noVia},
		{"hop limit expired", "clients", client6, server6, 1, "", router.DropTTLExpired, noVia},
		{"split horizon", "backbone", server, netip.MustParseAddr("10.2.0.1"), 64, "", router.DropSplitHorizon, noVia},
		{"split horizon to owned elsewhere", "backbone", server, remoteClient, 64, "", router.DropSplitHorizon, noVia},
		{"ttl expired before via", "clients", client1, netip.MustParseAddr("10.4.0.1"), 1, "", router.DropTTLExpired, noVia},
		{"egress loop", "egress", server, netip.MustParseAddr("10.1.0.20"), 64, "", router.DropLoop, noVia},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ports := map[string]router.PortID{"clients": f.clientID, "egress": f.egressID, "backbone": f.bboneID}
			sinks := map[string]*routertest.Sink{"clients": f.clients, "egress": f.egress, "backbone": &f.backbone.Sink}
			pkt := routertest.Packet(headroom, tc.src, tc.dst, tc.ttl, []byte("hello"))
			f.r.Forward(ports[tc.in], [][]byte{pkt}, headroom)
			for name, s := range sinks {
				got := len(s.Packets())
				want := 0
				if name == tc.wantPort {
					want = 1
				}
				if got != want {
					t.Errorf("port %s got %d packets, want %d", name, got, want)
				}
			}
			if tc.wantPort == "" {
				if n := f.r.Dropped(tc.drop); n != 1 {
					t.Errorf("Dropped(%v) = %d, want 1 (stats %+v)", tc.drop, n, f.r.Stats().Drops)
				}
				return
			}
			out := sinks[tc.wantPort].Packets()[0]
			if tc.wantPort == "backbone" {
				if vias := f.backbone.Vias(); len(vias) != 1 || vias[0] != tc.wantVia {
					t.Errorf("vias = %v, want [%v]", vias, tc.wantVia)
				}
			}
			wantTTL := tc.ttl - 1
			gotTTL := out[8]
			if tc.src.Is6() {
				gotTTL = out[7]
			} else if routertest.Checksum(out[:20]) != 0 {
				t.Errorf("IPv4 header checksum invalid after forwarding: % x", out[:20])
			}
			if gotTTL != wantTTL {
				t.Errorf("TTL = %d, want %d", gotTTL, wantTTL)
			}
		})
	}
}

func TestMalformedPackets(t *testing.T) {
	good := routertest.Packet(headroom, client1, server, 64, []byte("payload"))
	good6 := routertest.Packet(headroom, client6, server6, 64, []byte("payload"))
	set := func(b []byte, i int, v byte) []byte { c := append([]byte(nil), b...); c[headroom+i] = v; return c }
	tests := []struct {
		name string
		pkt  []byte
		drop router.DropReason
	}{
		{"empty", make([]byte, headroom), router.DropTruncated},
		{"shorter than headroom", make([]byte, 3), router.DropTruncated},
		{"version 5", set(good, 0, 0x55), router.DropBadHeader},
		{"version 0", set(good, 0, 0x05), router.DropBadHeader},
		{"ihl too small", set(good, 0, 0x44), router.DropBadHeader},
		{"ihl beyond packet", set(good, 0, 0x4f), router.DropBadHeader},
		{"v4 truncated header", good[:headroom+12], router.DropTruncated},
		{"v4 truncated payload", good[:len(good)-3], router.DropTruncated},
		{"v4 total length too small", set(set(good, 2, 0), 3, 10), router.DropBadHeader},
		{"v6 truncated header", good6[:headroom+30], router.DropTruncated},
		{"v6 truncated payload", good6[:len(good6)-1], router.DropTruncated},
		{"v6 jumbogram", set(set(good6, 4, 0), 5, 0), router.DropBadHeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.r.Forward(f.clientID, [][]byte{tc.pkt}, headroom)
			if n := f.r.Dropped(tc.drop); n != 1 {
				t.Fatalf("Dropped(%v) = %d, want 1; all drops %v", tc.drop, n, f.r.Stats().Drops)
			}
			if len(f.egress.Packets()) != 0 {
				t.Fatal("malformed packet was forwarded")
			}
		})
	}
}

func TestOversizedBufferIsTrimmed(t *testing.T) {
	f := newFixture(t)
	pkt := routertest.Packet(headroom, client1, server, 64, []byte("abc"))
	padded := append(pkt, make([]byte, 100)...) // trailing garbage beyond the IP length
	f.r.Forward(f.clientID, [][]byte{padded}, headroom)
	got := f.egress.Packets()
	if len(got) != 1 || len(got[0]) != len(pkt)-headroom {
		t.Fatalf("got %d packets, len %d; want 1 of len %d", len(got), len(got[0]), len(pkt)-headroom)
	}
}

func TestBatchSplitsByPort(t *testing.T) {
	f := newFixture(t)
	batch := [][]byte{
		routertest.Packet(headroom, client1, server, 64, nil),
		routertest.Packet(headroom, client1, client2, 64, nil),
		routertest.Packet(headroom, client1, outside, 64, nil),
		routertest.Packet(headroom, client1, server, 64, nil),
		routertest.Packet(headroom, client2, netip.MustParseAddr("10.2.0.1"), 64, nil),
	}
	f.r.Forward(f.clientID, batch, headroom)
	if a, b, c := len(f.egress.Packets()), len(f.clients.Packets()), len(f.backbone.Packets()); a != 2 || b != 1 || c != 1 {
		t.Fatalf("egress=%d clients=%d backbone=%d, want 2 1 1", a, b, c)
	}
	st := f.r.Stats()
	if st.Ports[f.clientID].RxPackets != 5 || st.Ports[f.egressID].TxPackets != 2 || st.Drops[router.DropNoRoute] != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

// TestBatchViasFollowPackets: in a batch whose packets go to different next
// hops (and some elsewhere or nowhere), every packet reaches the backbone
// with the via of its own route, in order, and the next batch starts afresh.
func TestBatchViasFollowPackets(t *testing.T) {
	f := newFixture(t)
	dsts := []netip.Addr{
		netip.MustParseAddr("10.2.0.1"), // gwB
		server,                          // egress
		netip.MustParseAddr("10.4.9.9"), // gwC
		remoteClient,                    // gwD
		outside,                         // no route
		netip.MustParseAddr("10.2.7.7"), // gwB
		netip.MustParseAddr("10.5.0.1"), // backbone, no via
		netip.MustParseAddr("10.6.0.1"), // egress; its via is ignored
		netip.MustParseAddr("10.4.0.1"), // gwC
	}
	wantVia := map[netip.Addr]netip.Addr{
		netip.MustParseAddr("10.2.0.1"): gwB, netip.MustParseAddr("10.2.7.7"): gwB,
		netip.MustParseAddr("10.4.9.9"): gwC, netip.MustParseAddr("10.4.0.1"): gwC,
		remoteClient: gwD, netip.MustParseAddr("10.5.0.1"): noVia,
	}
	for round := range 2 {
		var batch [][]byte
		for i, d := range dsts {
			batch = append(batch, routertest.Packet(headroom, client1, d, 64, []byte{byte(i)}))
		}
		f.r.Forward(f.clientID, batch, headroom)
		pkts, vias := f.backbone.Packets(), f.backbone.Vias()
		if len(pkts) != 6*(round+1) || len(vias) != len(pkts) {
			t.Fatalf("round %d: %d packets, %d vias; want 6 of each per round", round, len(pkts), len(vias))
		}
		var order []byte
		for i, p := range pkts[6*round:] {
			dst := netip.AddrFrom4([4]byte(p[16:20]))
			if got, want := vias[6*round+i], wantVia[dst]; got != want {
				t.Errorf("round %d: packet to %v went via %v, want %v", round, dst, got, want)
			}
			order = append(order, p[28])
		}
		if string(order) != string([]byte{0, 2, 3, 5, 6, 8}) {
			t.Errorf("round %d: backbone packets in order %v", round, order)
		}
	}
	if n := len(f.egress.Packets()); n != 4 {
		t.Errorf("egress got %d packets, want 4", n)
	}
}

func TestLookupHop(t *testing.T) {
	f := newFixture(t)
	if hop, ok := f.r.LookupHop(netip.MustParseAddr("10.4.1.1")); !ok || hop != (router.Hop{Port: f.bboneID, Via: gwC}) {
		t.Fatalf("LookupHop = %+v, %v", hop, ok)
	}
	// A client moving to another gateway changes only its next hop.
	must(t, f.r.SetRoute(router.Route{Prefix: netip.PrefixFrom(remoteClient, 32), Port: f.bboneID, Via: gwB}))
	if hop, ok := f.r.LookupHop(remoteClient); !ok || hop != (router.Hop{Port: f.bboneID, Via: gwB}) {
		t.Fatalf("after move: LookupHop = %+v, %v", hop, ok)
	}
	if id, ok := f.r.Lookup(remoteClient); !ok || id != f.bboneID {
		t.Fatalf("Lookup = %v, %v", id, ok)
	}
	if _, ok := f.r.LookupHop(outside); ok {
		t.Fatal("LookupHop found a route for an unrouted address")
	}
}

func TestPortErrorCounted(t *testing.T) {
	f := newFixture(t)
	f.egress.Err = errors.New("closed")
	f.r.Forward(f.clientID, [][]byte{routertest.Packet(headroom, client1, server, 64, nil), routertest.Packet(headroom, client1, server, 64, nil)}, headroom)
	if n := f.r.Dropped(router.DropPortError); n != 2 {
		t.Fatalf("port errors = %d, want 2", n)
	}
	f.backbone.Err = errors.New("closed")
	f.r.Forward(f.clientID, [][]byte{routertest.Packet(headroom, client1, remoteClient, 64, nil)}, headroom)
	if n := f.r.Dropped(router.DropPortError); n != 3 {
		t.Fatalf("port errors after a ViaPort error = %d, want 3", n)
	}
}

func TestNewPortDeniesAllSources(t *testing.T) {
	r := router.New()
	sink := &routertest.Sink{}
	in := r.AddPort("in", router.KindClient, sink)
	out := r.AddPort("out", router.KindEgress, sink)
	must(t, r.SetRoutes([]router.Route{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Port: out}}))
	r.Forward(in, [][]byte{routertest.Packet(headroom, client1, server, 64, nil)}, headroom)
	if r.Dropped(router.DropSourceInvalid) != 1 || len(sink.Packets()) != 0 {
		t.Fatal("a port without source rules must drop everything")
	}
}

func TestConfigErrors(t *testing.T) {
	r := router.New()
	if err := r.SetRoutes([]router.Route{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Port: 3}}); !errors.Is(err, router.ErrUnknownPort) {
		t.Fatalf("unknown port: %v", err)
	}
	if err := r.SetRoute(router.Route{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Port: 3}); !errors.Is(err, router.ErrUnknownPort) {
		t.Fatalf("unknown port: %v", err)
	}
	if err := r.SetSources(9, nil); !errors.Is(err, router.ErrUnknownPort) {
		t.Fatalf("unknown port: %v", err)
	}
	id := r.AddPort("x", router.KindClient, routertest.Discard{})
	if err := r.SetRoutes([]router.Route{{Port: id}}); err == nil {
		t.Fatal("invalid prefix accepted")
	}
}

func TestIncrementalRoutes(t *testing.T) {
	f := newFixture(t)
	p := netip.MustParsePrefix("10.99.0.9/32")
	must(t, f.r.SetRoute(router.Route{Prefix: p, Port: f.bboneID}))
	if id, ok := f.r.Lookup(p.Addr()); !ok || id != f.bboneID {
		t.Fatalf("after SetRoute: %v %v", id, ok)
	}
	f.r.DeleteRoute(p)
	if _, ok := f.r.Lookup(p.Addr()); ok {
		t.Fatal("route still present after DeleteRoute")
	}
	if id, ok := f.r.Lookup(client1); !ok || id != f.clientID {
		t.Fatal("unrelated route lost")
	}
}

// TestConcurrentForwardAndUpdate runs forwarding while routes change; run
// with -race it proves the table swap is safe.
func TestConcurrentForwardAndUpdate(t *testing.T) {
	f := newFixture(t)
	discard := f.r.AddPort("discard", router.KindEgress, routertest.Discard{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bufs := make([][]byte, 32)
			for i := range bufs {
				bufs[i] = routertest.Packet(headroom, client1, netip.MustParseAddr("10.3.0.1"), 255, nil)
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, b := range bufs {
					b[headroom+8] = 255 // keep TTL from expiring
					binary.BigEndian.PutUint16(b[headroom+10:], 0)
					binary.BigEndian.PutUint16(b[headroom+10:], routertest.Checksum(b[headroom:headroom+20]))
				}
				f.r.Forward(f.clientID, bufs, headroom)
			}
		}()
	}
	p := netip.MustParsePrefix("10.3.0.0/16")
	for i := range 2000 {
		if i%2 == 0 {
			must(t, f.r.SetRoute(router.Route{Prefix: p, Port: discard}))
		} else {
			f.r.DeleteRoute(p)
		}
	}
	close(stop)
	wg.Wait()
}

func TestForwardDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector (sync.Pool drops items); covered by the non-race run of make test")
	}
	f := newFixture(t)
	d := f.r.AddPort("discard", router.KindEgress, routertest.Discard{})
	must(t, f.r.SetRoute(router.Route{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Port: d}))
	bufs := benchBatch(64)
	f.r.Forward(f.clientID, bufs, headroom) // warm the pool
	allocs := testing.AllocsPerRun(100, func() {
		resetTTL(bufs)
		f.r.Forward(f.clientID, bufs, headroom)
	})
	if allocs != 0 {
		t.Fatalf("Forward allocated %.1f times per batch, want 0", allocs)
	}
}

// TestForwardViaDoesNotAllocate covers the ViaPort path: packets to clients
// owned by other gateways, each batch spread over several next hops.
func TestForwardViaDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector (sync.Pool drops items); covered by the non-race run of make test")
	}
	f := newFixture(t)
	d := f.r.AddPort("backbone2", router.KindBackbone, routertest.DiscardVia{})
	addViaRoutes(t, f, d, 256)
	bufs := viaBatch(64, 256)
	f.r.Forward(f.egressID, bufs, headroom) // warm the pool
	allocs := testing.AllocsPerRun(100, func() {
		resetTTL(bufs)
		f.r.Forward(f.egressID, bufs, headroom)
	})
	if allocs != 0 {
		t.Fatalf("Forward to a ViaPort allocated %.1f times per batch, want 0", allocs)
	}
}

// addViaRoutes routes clients 10.99.1.0 … 10.99.1.0+n-1 (as /32s) to port
// via eight other gateways, as if those gateways held their sessions.
func addViaRoutes(t testing.TB, f *fixture, port router.PortID, n int) {
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, 99, byte(1 + i>>8), byte(i)})
		via := netip.AddrFrom4([4]byte{100, 64, 0, byte(2 + i%8)})
		must(t, f.r.SetRoute(router.Route{Prefix: netip.PrefixFrom(a, 32), Port: port, Via: via}))
	}
}

// viaBatch is n packets of 1400 bytes from the egress to the clients that
// addViaRoutes(clients) routed.
func viaBatch(n, clients int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		j := i * 7 % clients
		dst := netip.AddrFrom4([4]byte{10, 99, byte(1 + j>>8), byte(j)})
		bufs[i] = routertest.Packet(headroom, server, dst, 255, make([]byte, 1372))
	}
	return bufs
}

func benchBatch(n int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		src := client1
		if i%2 == 1 {
			src = client2
		}
		bufs[i] = routertest.Packet(headroom, src, server, 255, make([]byte, 1372))
	}
	return bufs
}

func resetTTL(bufs [][]byte) {
	for _, b := range bufs {
		p := b[headroom:]
		p[8] = 255
		p[10], p[11] = 0, 0
		binary.BigEndian.PutUint16(p[10:], routertest.Checksum(p[:20]))
	}
}

// BenchmarkForward measures one batch of 128 packets of 1400 bytes going
// from the client port to the egress; run with -benchmem (0 allocs/op).
func BenchmarkForward(b *testing.B) {
	f := newFixture(b)
	d := f.r.AddPort("discard", router.KindEgress, routertest.Discard{})
	must(b, f.r.SetRoute(router.Route{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Port: d}))
	// A realistic table: 10k client routes.
	for i := range 10000 {
		a := netip.AddrFrom4([4]byte{10, 99, byte(i >> 8), byte(i)})
		must(b, f.r.SetRoute(router.Route{Prefix: netip.PrefixFrom(a, 32), Port: f.clientID}))
	}
	bufs := benchBatch(128)
	b.ReportAllocs()
	b.SetBytes(int64(128 * (len(bufs[0]) - headroom)))
	b.ResetTimer()
	for b.Loop() {
		for _, p := range bufs {
			p[headroom+8] = 255 // cheap: checksum goes stale, router does not verify it
		}
		f.r.Forward(f.clientID, bufs, headroom)
	}
	b.ReportMetric(float64(b.N*128)/b.Elapsed().Seconds(), "pkts/s")
}

// BenchmarkForwardVia is BenchmarkForward for the backbone: 128 packets
// from the egress to clients held by eight other gateways, delivered to a
// ViaPort with one next hop each; run with -benchmem (0 allocs/op).
func BenchmarkForwardVia(b *testing.B) {
	f := newFixture(b)
	d := f.r.AddPort("backbone2", router.KindBackbone, routertest.DiscardVia{})
	addViaRoutes(b, f, d, 10000)
	bufs := viaBatch(128, 10000)
	b.ReportAllocs()
	b.SetBytes(int64(128 * (len(bufs[0]) - headroom)))
	b.ResetTimer()
	for b.Loop() {
		for _, p := range bufs {
			p[headroom+8] = 255
		}
		f.r.Forward(f.egressID, bufs, headroom)
	}
	b.ReportMetric(float64(b.N*128)/b.Elapsed().Seconds(), "pkts/s")
}

func BenchmarkForwardParallel(b *testing.B) {
	f := newFixture(b)
	d := f.r.AddPort("discard", router.KindEgress, routertest.Discard{})
	must(b, f.r.SetRoute(router.Route{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Port: d}))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		bufs := benchBatch(128)
		for pb.Next() {
			for _, p := range bufs {
				p[headroom+8] = 255
			}
			f.r.Forward(f.clientID, bufs, headroom)
		}
	})
}

// TestBatchLookupsFollowAddresses: within a batch, a packet whose source or
// destination differs from the one before is looked up afresh, also when
// the earlier one was dropped.
func TestBatchLookupsFollowAddresses(t *testing.T) {
	f := newFixture(t)
	spoofed := netip.MustParseAddr("10.99.0.9")
	batch := [][]byte{
		routertest.Packet(headroom, client1, server, 64, nil),
		routertest.Packet(headroom, spoofed, server, 64, nil), // source_invalid
		routertest.Packet(headroom, spoofed, server, 64, nil), // source_invalid again
		routertest.Packet(headroom, client1, server, 64, nil),
		routertest.Packet(headroom, client1, outside, 64, nil), // no_route
		routertest.Packet(headroom, client1, outside, 64, nil), // no_route again
		routertest.Packet(headroom, client1, server, 64, nil),
		routertest.Packet(headroom, client2, client1, 64, nil), // hairpin
		routertest.Packet(headroom, client6, server6, 64, nil),
		routertest.Packet(headroom, client1, server, 64, nil),
	}
	f.r.Forward(f.clientID, batch, headroom)
	st := f.r.Stats()
	if e, c := len(f.egress.Packets()), len(f.clients.Packets()); e != 5 || c != 1 {
		t.Fatalf("egress got %d, clients %d; want 5 and 1", e, c)
	}
	if st.Drops[router.DropSourceInvalid] != 2 || st.Drops[router.DropNoRoute] != 2 {
		t.Fatalf("drops %v", st.Drops)
	}
}

// BenchmarkForwardFlow is BenchmarkForward with one flow per batch, as a
// segmented TUN read (TSO) or a decrypted batch from one client gives.
func BenchmarkForwardFlow(b *testing.B) {
	f := newFixture(b)
	d := f.r.AddPort("discard", router.KindEgress, routertest.Discard{})
	must(b, f.r.SetRoute(router.Route{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Port: d}))
	for i := range 10000 {
		a := netip.AddrFrom4([4]byte{10, 99, byte(i >> 8), byte(i)})
		must(b, f.r.SetRoute(router.Route{Prefix: netip.PrefixFrom(a, 32), Port: f.clientID}))
	}
	bufs := make([][]byte, 128)
	for i := range bufs {
		bufs[i] = routertest.Packet(headroom, client1, server, 255, make([]byte, 1372))
	}
	b.ReportAllocs()
	b.SetBytes(int64(128 * (len(bufs[0]) - headroom)))
	for b.Loop() {
		for _, p := range bufs {
			p[headroom+8] = 255
		}
		f.r.Forward(f.clientID, bufs, headroom)
	}
}
