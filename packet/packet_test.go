package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

// ip4 returns an IPv4 packet with a header of ihl words (options zero)
// carrying payload, with a valid header checksum.
func ip4(ihl int, proto uint8, src, dst string, payload []byte) []byte {
	hl := ihl * 4
	p := make([]byte, hl+len(payload))
	p[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], Checksum(p[:hl]))
	copy(p[hl:], payload)
	return p
}

// ip6 returns an IPv6 packet with next header nh carrying payload.
func ip6(nh uint8, src, dst string, payload []byte) []byte {
	p := make([]byte, 40+len(payload))
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(len(payload)))
	p[6], p[7] = nh, 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	copy(p[40:], payload)
	return p
}

// with returns a copy of p changed by f.
func with(p []byte, f func(p []byte) []byte) []byte { return f(bytes.Clone(p)) }

func TestParseGood(t *testing.T) {
	v4 := ip4(5, ProtoUDP, "10.0.0.1", "192.0.2.7", []byte("hello"))
	h, err := Parse(v4)
	if err != nil {
		t.Fatal(err)
	}
	want := Header{
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("192.0.2.7"),
		Payload: []byte("hello"), Length: 25, HeaderLen: 20, Version: 4, Proto: ProtoUDP, TTL: 64,
	}
	checkHeader(t, "IPv4", h, want)

	opts := ip4(7, ProtoTCP, "10.0.0.1", "10.0.0.2", []byte("xy"))
	h, err = Parse(append(opts, "trailing bytes are not part of the packet"...))
	if err != nil {
		t.Fatal(err)
	}
	checkHeader(t, "IPv4 with options", h, Header{
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
		Payload: []byte("xy"), Length: 30, HeaderLen: 28, Version: 4, Proto: ProtoTCP, TTL: 64,
	})

	if hl, total, err := IPv4Lengths(opts); hl != 28 || total != 30 || err != nil {
		t.Errorf("IPv4Lengths with options: %d, %d, %v", hl, total, err)
	}

	frag := with(v4, func(p []byte) []byte { p[6] = 0x20; return p }) // MF
	if h, err := Parse(frag); err != nil || !h.Fragment {
		t.Errorf("MF set: Fragment %v, err %v", h.Fragment, err)
	}
	off := with(v4, func(p []byte) []byte { p[7] = 1; return p }) // offset 8
	if h, err := Parse(off); err != nil || !h.Fragment {
		t.Errorf("fragment offset: Fragment %v, err %v", h.Fragment, err)
	}
	df := with(v4, func(p []byte) []byte { p[6] = 0x40; return p }) // DF only
	if h, err := Parse(df); err != nil || h.Fragment {
		t.Errorf("DF only: Fragment %v, err %v", h.Fragment, err)
	}

	v6 := ip6(ProtoICMPv6, "fd00::1", "2001:db8::2", []byte("abc"))
	h, err = Parse(append(v6, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	checkHeader(t, "IPv6", h, Header{
		Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("2001:db8::2"),
		Payload: []byte("abc"), Length: 43, HeaderLen: 40, Version: 6, Proto: ProtoICMPv6, TTL: 64,
	})

	// Extension headers are not walked: Proto names the first one.
	hbh := ip6(0, "fd00::1", "fd00::2", make([]byte, 16))
	if h, err := Parse(hbh); err != nil || h.Proto != 0 || h.HeaderLen != 40 || len(h.Payload) != 16 {
		t.Errorf("IPv6 with a hop-by-hop header: %+v, %v", h, err)
	}
	// A bare IPv6 header (payload length 0, nothing after it) is a packet.
	if h, err := Parse(ip6(59, "fd00::1", "fd00::2", nil)); err != nil || h.Length != 40 || len(h.Payload) != 0 {
		t.Errorf("bare IPv6 header: %+v, %v", h, err)
	}
}

func checkHeader(t *testing.T, name string, got, want Header) {
	t.Helper()
	if !bytes.Equal(got.Payload, want.Payload) {
		t.Errorf("%s: payload %q, want %q", name, got.Payload, want.Payload)
	}
	got.Payload, want.Payload = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: got %+v\nwant %+v", name, got, want)
	}
}

func TestParseBad(t *testing.T) {
	v4 := ip4(5, ProtoUDP, "10.0.0.1", "10.0.0.2", make([]byte, 12))
	v6 := ip6(ProtoUDP, "fd00::1", "fd00::2", make([]byte, 12))
	tests := []struct {
		name string
		p    []byte
		want error
	}{
		{"nil", nil, ErrTruncated},
		{"empty", []byte{}, ErrTruncated},
		{"version 0", make([]byte, 60), ErrVersion},
		{"version 5", with(v4, func(p []byte) []byte { p[0] = 0x55; return p }), ErrVersion},
		{"version 15", []byte{0xf0}, ErrVersion},
		{"IPv4 one byte", []byte{0x45}, ErrTruncated},
		{"IPv4 19 bytes", v4[:19], ErrTruncated},
		{"IPv4 IHL 0", with(v4, func(p []byte) []byte { p[0] = 0x40; return p }), ErrHeaderLen},
		{"IPv4 IHL 4", with(v4, func(p []byte) []byte { p[0] = 0x44; return p }), ErrHeaderLen},
		{"IPv4 IHL beyond the packet", with(v4[:20], func(p []byte) []byte { p[0] = 0x46; p[3] = 24; return p }), ErrTruncated},
		{"IPv4 IHL 15, 20 bytes", with(v4[:20], func(p []byte) []byte { p[0] = 0x4f; p[3] = 60; return p }), ErrTruncated},
		{"IPv4 total length 0", with(v4, func(p []byte) []byte { p[2], p[3] = 0, 0; return p }), ErrLength},
		{"IPv4 total length below IHL", with(v4, func(p []byte) []byte { p[0] = 0x46; p[3] = 22; return p }), ErrLength},
		{"IPv4 total length beyond the packet", v4[:31], ErrTruncated},
		{"IPv4 total length 65535", with(v4, func(p []byte) []byte { p[2], p[3] = 0xff, 0xff; return p }), ErrTruncated},
		{"IPv6 one byte", []byte{0x60}, ErrTruncated},
		{"IPv6 39 bytes", v6[:39], ErrTruncated},
		{"IPv6 payload beyond the packet", v6[:51], ErrTruncated},
		{"IPv6 jumbogram (payload length 0 with payload)", with(v6, func(p []byte) []byte { p[4], p[5] = 0, 0; return p }), ErrLength},
	}
	for _, tt := range tests {
		h, err := Parse(tt.p)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.want)
		}
		if h.Version != 0 || h.Payload != nil || h.Src.IsValid() {
			t.Errorf("%s: a refused packet returned header %+v", tt.name, h)
		}
		if len(tt.p) > 0 && tt.p[0]>>4 == 4 {
			if hl, total, err := IPv4Lengths(tt.p); !errors.Is(err, tt.want) || hl != 0 || total != 0 {
				t.Errorf("%s: IPv4Lengths %d, %d, %v; want %v", tt.name, hl, total, err, tt.want)
			}
		}
	}
}

// A Header reused for Decode (as the router does) holds nothing of the
// previous packet after an error.
func TestDecodeReuse(t *testing.T) {
	var h Header
	if err := h.Decode(ip6(ProtoUDP, "fd00::1", "fd00::2", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	if err := h.Decode([]byte{0x45, 0, 0, 10}); !errors.Is(err, ErrTruncated) {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h, Header{}) {
		t.Errorf("after an error: %+v", h)
	}
	if err := h.Decode(ip4(5, ProtoTCP, "10.0.0.1", "10.0.0.2", nil)); err != nil || h.Version != 4 || h.Fragment || len(h.Payload) != 0 {
		t.Errorf("%+v, %v", h, err)
	}
}

func TestDecrementTTL(t *testing.T) {
	v4 := ip4(5, ProtoUDP, "10.0.0.1", "10.0.0.2", []byte("x"))
	for ttl := 2; ttl <= 255; ttl++ {
		p := with(v4, func(p []byte) []byte {
			p[8] = byte(ttl)
			binary.BigEndian.PutUint16(p[10:], 0)
			binary.BigEndian.PutUint16(p[10:], Checksum(p[:20]))
			return p
		})
		if !DecrementTTL(p) {
			t.Fatalf("TTL %d: not forwarded", ttl)
		}
		if p[8] != byte(ttl-1) {
			t.Fatalf("TTL %d became %d", ttl, p[8])
		}
		if Sum(p[:20], 0) != 0xffff {
			t.Fatalf("TTL %d: header checksum %#04x wrong after the update", ttl, binary.BigEndian.Uint16(p[10:]))
		}
	}
	for _, ttl := range []byte{0, 1} {
		p := with(v4, func(p []byte) []byte { p[8] = ttl; return p })
		before := bytes.Clone(p)
		if DecrementTTL(p) || !bytes.Equal(p, before) {
			t.Errorf("TTL %d: forwarded or changed", ttl)
		}
	}
	v6 := ip6(ProtoUDP, "fd00::1", "fd00::2", nil)
	if !DecrementTTL(v6) || v6[7] != 63 {
		t.Errorf("IPv6 hop limit 64 became %d", v6[7])
	}
	v6[7] = 1
	if DecrementTTL(v6) || v6[7] != 1 {
		t.Error("IPv6 hop limit 1 forwarded or changed")
	}
}

func TestFlowHash(t *testing.T) {
	a := ip4(5, ProtoUDP, "10.0.0.1", "10.0.0.2", nil)
	b := ip4(5, ProtoTCP, "10.0.0.1", "10.0.0.2", []byte("other payload"))
	c := ip4(5, ProtoUDP, "10.0.0.1", "10.0.0.3", nil)
	if FlowHash(a) != FlowHash(b) {
		t.Error("one flow, two hashes")
	}
	if FlowHash(a) == FlowHash(c) {
		t.Error("two destinations, one hash")
	}
	// The value is part of the behaviour (it picks TUN queues): pinned to
	// what device/tun_linux.go computed before this package.
	if got := FlowHash(a); got != 0x797459fe {
		t.Errorf("FlowHash(10.0.0.1 > 10.0.0.2) = %#x", got)
	}
	d := ip6(ProtoUDP, "fd00::1", "fd00::2", nil)
	e := ip6(ProtoUDP, "fd00::1", "fd00::3", nil)
	if FlowHash(d) == FlowHash(e) || FlowHash(d) == 0 {
		t.Error("IPv6 destinations not told apart")
	}
	for _, p := range [][]byte{nil, a[:19], d[:39], make([]byte, 40), {0x70, 1, 2}} {
		if FlowHash(p) != 0 {
			t.Errorf("FlowHash(% x) = %#x, want 0", p, FlowHash(p))
		}
	}
}

func TestNoAllocs(t *testing.T) {
	v4 := ip4(5, ProtoICMPv4, "10.0.0.1", "10.0.0.2", nil)
	v6 := ip6(ProtoICMPv6, "fd00::1", "fd00::2", nil)
	buf := make([]byte, 0, 200)
	src6, dst6 := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	n := testing.AllocsPerRun(100, func() {
		h, _ := Parse(v4)
		h6, _ := Parse(v6)
		_, _ = ParseEcho(h)
		_, _ = ParseEcho(h6)
		_ = FlowHash(v4) + FlowHash(v6)
		DecrementTTL(v4)
		_ = Checksum(v4) + UpdateChecksum(1, 2, 3) + PseudoHeaderSum(ProtoUDP, src6, dst6, 8)
		buf = AppendEcho(buf[:0], src6, dst6, Echo{ID: 1, Seq: 2, Data: []byte("payload")})
	})
	if n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}

func BenchmarkParse(b *testing.B) {
	v4 := ip4(5, ProtoUDP, "10.0.0.1", "10.0.0.2", make([]byte, 1000))
	v6 := ip6(ProtoUDP, "fd00::1", "fd00::2", make([]byte, 1000))
	b.ReportAllocs()
	for b.Loop() {
		h, _ := Parse(v4)
		h6, _ := Parse(v6)
		if h.Version+h6.Version != 10 {
			b.Fatal("bad parse")
		}
	}
}

func BenchmarkFlowHash(b *testing.B) {
	v6 := ip6(ProtoUDP, "fd00::1", "fd00::2", nil)
	b.ReportAllocs()
	for b.Loop() {
		FlowHash(v6)
	}
}
