package router_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/anyguard/anyguard/router"
	"github.com/anyguard/anyguard/router/routertest"
)

// FuzzForward feeds arbitrary bytes to the router as packets from every
// port. It must never panic, and every packet must be either delivered or
// counted as dropped; forwarded IPv4 headers keep a valid checksum when they
// came in with one.
func FuzzForward(f *testing.F) {
	f.Add(routertest.Packet(0, client1, server, 64, []byte("x")))
	f.Add(routertest.Packet(0, client6, server6, 2, []byte("x")))
	f.Add(routertest.Packet(0, server, client1, 1, nil))
	f.Add([]byte{0x45})
	f.Add([]byte{0x60, 0, 0, 0, 0, 0, 17, 64})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, from := range []string{"clients", "egress", "backbone"} {
			fx := newFixture(t)
			in := map[string]router.PortID{"clients": fx.clientID, "egress": fx.egressID, "backbone": fx.bboneID}[from]
			buf := make([]byte, headroom+len(data))
			copy(buf[headroom:], data)
			validSum := len(data) >= 20 && data[0]>>4 == 4 && data[0]&0xf == 5 && routertest.Checksum(data[:20]) == 0
			fx.r.Forward(in, [][]byte{buf}, headroom)
			st := fx.r.Stats()
			var delivered, dropped uint64
			for _, p := range st.Ports {
				delivered += p.TxPackets
			}
			for _, n := range st.Drops {
				dropped += n
			}
			if delivered+dropped != 1 {
				t.Fatalf("from %s: delivered %d + dropped %d != 1", from, delivered, dropped)
			}
			if nv, np := len(fx.backbone.Vias()), len(fx.backbone.Packets()); nv != np {
				t.Fatalf("from %s: backbone got %d packets but %d vias", from, np, nv)
			}
			if delivered == 1 && validSum {
				var out []byte
				for _, s := range []*routertest.Sink{fx.clients, fx.egress, &fx.backbone.Sink} {
					if ps := s.Packets(); len(ps) == 1 {
						out = ps[0]
					}
				}
				if routertest.Checksum(out[:20]) != 0 {
					t.Fatalf("checksum broken by TTL decrement: in % x out % x", data[:20], out[:20])
				}
				if int(binary.BigEndian.Uint16(out[2:4])) != len(out) {
					t.Fatalf("delivered %d bytes for IP length %d", len(out), binary.BigEndian.Uint16(out[2:4]))
				}
			}
		}
	})
}

// FuzzTTLChecksum checks the incremental checksum update against a full
// recomputation for every TTL and checksum starting value.
func FuzzTTLChecksum(f *testing.F) {
	f.Add(uint8(64), uint8(17), uint16(0x1234), []byte{10, 99, 0, 2, 10, 1, 0, 10})
	f.Add(uint8(2), uint8(6), uint16(0xffff), []byte{0, 0, 0, 0, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, ttl, proto uint8, id uint16, addrs []byte) {
		if ttl < 2 || len(addrs) < 8 {
			return
		}
		src := netip.AddrFrom4([4]byte(addrs[0:4]))
		dst := netip.AddrFrom4([4]byte(addrs[4:8]))
		pkt := routertest.Packet(headroom, src, dst, ttl, nil)
		p := pkt[headroom:]
		p[9] = proto
		binary.BigEndian.PutUint16(p[4:], id)
		p[10], p[11] = 0, 0
		binary.BigEndian.PutUint16(p[10:], routertest.Checksum(p[:20]))
		r := router.New()
		sink := &routertest.Sink{}
		in := r.AddPort("in", router.KindClient, sink)
		out := r.AddPort("out", router.KindEgress, sink)
		if err := r.SetRoutes([]router.Route{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Port: out}}); err != nil {
			t.Fatal(err)
		}
		if err := r.SetSources(in, []router.SourceRule{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Allow: true}}); err != nil {
			t.Fatal(err)
		}
		r.Forward(in, [][]byte{pkt}, headroom)
		got := sink.Packets()
		if len(got) != 1 {
			t.Fatalf("not forwarded: %v", r.Stats().Drops)
		}
		if got[0][8] != ttl-1 || routertest.Checksum(got[0][:20]) != 0 {
			t.Fatalf("ttl %d sum %#x: bad header after decrement % x", ttl, binary.BigEndian.Uint16(got[0][10:]), got[0][:20])
		}
	})
}
