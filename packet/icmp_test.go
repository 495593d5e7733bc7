package packet

import (
	"bytes"
	"net/netip"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

func TestEchoRoundTrip(t *testing.T) {
	for _, tt := range []struct{ src, dst string }{
		{"10.0.0.1", "192.0.2.9"},
		{"fd00::1", "2001:db8::9"},
	} {
		src, dst := netip.MustParseAddr(tt.src), netip.MustParseAddr(tt.dst)
		for _, reply := range []bool{false, true} {
			e := Echo{Reply: reply, ID: 0x6167, Seq: 513, Data: []byte("anyguard probe")}
			p := AppendEcho([]byte("headroom"), src, dst, e)[len("headroom"):]
			h, err := Parse(p)
			if err != nil {
				t.Fatalf("%v reply=%v: %v", dst, reply, err)
			}
			if h.Src != src || h.Dst != dst || h.TTL != EchoTTL || h.Length != len(p) {
				t.Errorf("%v reply=%v: header %+v", dst, reply, h)
			}
			if src.Is4() && Sum(p[:20], 0) != 0xffff {
				t.Errorf("%v: IPv4 header checksum wrong", dst)
			}
			got, ok := ParseEcho(h)
			e.ChecksumOK = true
			if !ok || got.Reply != e.Reply || got.ID != e.ID || got.Seq != e.Seq || !bytes.Equal(got.Data, e.Data) || !got.ChecksumOK {
				t.Errorf("%v reply=%v: parsed %+v, %v; want %+v", dst, reply, got, ok, e)
			}
			checkWithXNet(t, h, e)
		}
	}
}

// checkWithXNet parses the ICMP message with golang.org/x/net/icmp, an
// independent implementation (it verifies no checksum, so that is left to
// ChecksumOK, checked against the reference sum in FuzzParse).
func checkWithXNet(t *testing.T, h Header, e Echo) {
	t.Helper()
	proto := 1
	var want icmp.Type = ipv4.ICMPTypeEcho
	switch {
	case h.Version == 4 && e.Reply:
		want = ipv4.ICMPTypeEchoReply
	case h.Version == 6 && e.Reply:
		proto, want = 58, ipv6.ICMPTypeEchoReply
	case h.Version == 6:
		proto, want = 58, ipv6.ICMPTypeEchoRequest
	}
	m, err := icmp.ParseMessage(proto, h.Payload)
	if err != nil {
		t.Fatal(err)
	}
	body, ok := m.Body.(*icmp.Echo)
	if m.Type != want || !ok || body.ID != int(e.ID) || body.Seq != int(e.Seq) || !bytes.Equal(body.Data, e.Data) {
		t.Errorf("x/net reads %v %+v", m.Type, m.Body)
	}
	if h.Version == 6 {
		// x/net computes the ICMPv6 checksum when given the pseudo-header.
		m.Checksum = 0
		b, err := m.Marshal(icmp.IPv6PseudoHeader(h.Src.AsSlice(), h.Dst.AsSlice()))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, h.Payload) {
			t.Errorf("ICMPv6 message\n% x, x/net marshals\n% x", h.Payload, b)
		}
	}
}

func TestParseEchoRefuses(t *testing.T) {
	src, dst := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	src6, dst6 := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	req4 := AppendEcho(nil, src, dst, Echo{ID: 1, Seq: 2})
	req6 := AppendEcho(nil, src6, dst6, Echo{ID: 1, Seq: 2})
	tests := []struct {
		name string
		p    []byte
	}{
		{"IPv4 UDP", with(req4, func(p []byte) []byte { p[9] = ProtoUDP; return p })},
		{"IPv4 MF", with(req4, func(p []byte) []byte { p[6] = 0x20; return p })},
		{"IPv4 fragment offset", with(req4, func(p []byte) []byte { p[7] = 3; return p })},
		{"ICMP type 3", with(req4, func(p []byte) []byte { p[20] = 3; return p })},
		{"ICMP shorter than 8 bytes", with(req4, func(p []byte) []byte { p[3] = 27; return p[:27] })},
		{"ICMPv6 type 1", with(req6, func(p []byte) []byte { p[40] = 1; return p })},
		{"ICMPv4 echo type in ICMPv6", with(req6, func(p []byte) []byte { p[40] = ICMPv4EchoRequest; return p })},
		{"ICMPv6 behind an extension header", with(req6, func(p []byte) []byte { p[6] = 0; return p })},
		{"ICMPv6 shorter than 8 bytes", with(req6, func(p []byte) []byte { p[5] = 7; return p[:47] })},
	}
	for _, tt := range tests {
		h, err := Parse(tt.p)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if e, ok := ParseEcho(h); ok {
			t.Errorf("%s: recognized as echo %+v", tt.name, e)
		}
	}
	if _, ok := ParseEcho(Header{}); ok {
		t.Error("the zero Header is an echo")
	}
	// A wrong checksum is reported, not refused.
	for _, p := range [][]byte{req4, req6} {
		bad := with(p, func(p []byte) []byte { p[len(p)-1] ^= 0x40; return p })
		h, _ := Parse(bad)
		if e, ok := ParseEcho(h); !ok || e.ChecksumOK {
			t.Errorf("corrupted echo: %+v, %v", e, ok)
		}
	}
	// The code is reported (callers decide).
	h, _ := Parse(with(req4, func(p []byte) []byte { p[21] = 9; return p }))
	if e, ok := ParseEcho(h); !ok || e.Code != 9 {
		t.Errorf("code 9: %+v, %v", e, ok)
	}
}

func TestAppendEchoPanicsOnMisuse(t *testing.T) {
	v4, v6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")
	for _, tt := range []struct {
		name     string
		src, dst netip.Addr
		data     int
	}{
		{"mixed families", v4, v6, 0},
		{"invalid source", netip.Addr{}, v6, 0},
		{"invalid destination", v6, netip.Addr{}, 0},
		{"IPv4 too long", v4, v4, 65535 - 28 + 1},
		{"IPv6 too long", v6, v6, 65535 - 8 + 1},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", tt.name)
				}
			}()
			AppendEcho(nil, tt.src, tt.dst, Echo{Data: make([]byte, tt.data)})
		}()
	}
	// The largest that fit do not panic.
	AppendEcho(nil, v4, v4, Echo{Data: make([]byte, 65535-28)})
	AppendEcho(nil, v6, v6, Echo{Data: make([]byte, 65535-8)})
}

func BenchmarkParseEcho(b *testing.B) {
	p := AppendEcho(nil, netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), Echo{Data: make([]byte, 56)})
	b.ReportAllocs()
	for b.Loop() {
		h, _ := Parse(p)
		if _, ok := ParseEcho(h); !ok {
			b.Fatal("not an echo")
		}
	}
}

func BenchmarkAppendEcho(b *testing.B) {
	src, dst := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	buf := make([]byte, 0, 128)
	data := make([]byte, 56)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendEcho(buf[:0], src, dst, Echo{Reply: true, ID: 1, Seq: 2, Data: data})
	}
}
