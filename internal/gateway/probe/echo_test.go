package probe

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/anyguard/anyguard/packet"
)

// reply turns an echo request built by EchoRequest into the reply a host
// would send (addresses swapped, type changed; checksums are not checked
// by echoReplySeq).
func reply(req []byte) []byte {
	r := append([]byte(nil), req...)
	if r[0]>>4 == 4 {
		copy(r[12:16], req[16:20])
		copy(r[16:20], req[12:16])
		r[20] = 0
		return r
	}
	copy(r[8:24], req[24:40])
	copy(r[24:40], req[8:24])
	r[40] = 129
	return r
}

func TestEchoRoundTrip(t *testing.T) {
	for _, pair := range [][2]string{{"192.0.0.254", "10.99.0.1"}, {"100::fe", "fd00::1"}} {
		src, dst := netip.MustParseAddr(pair[0]), netip.MustParseAddr(pair[1])
		req := EchoRequest(src, dst, 0xbeef, 7)
		if uint16(len(req)) != uint16(ipLen(req)) {
			t.Errorf("%v: length field %d, packet %d", src, ipLen(req), len(req))
		}
		if _, ok := echoReplySeq(req, 0xbeef); ok {
			t.Errorf("%v: a request parsed as a reply", src)
		}
		if seq, ok := echoReplySeq(reply(req), 0xbeef); !ok || seq != 7 {
			t.Errorf("%v: reply parsed as %d %v", src, seq, ok)
		}
		if _, ok := echoReplySeq(reply(req), 0xbeee); ok {
			t.Errorf("%v: reply with another id accepted", src)
		}
	}
	// The IPv4 header and ICMP checksums verify.
	req := EchoRequest(netip.MustParseAddr("192.0.0.254"), netip.MustParseAddr("10.99.0.1"), 1, 2)
	if packet.Sum(req[:20], 0) != 0xffff || packet.Sum(req[20:], 0) != 0xffff {
		t.Errorf("bad checksums: header %#x, icmp %#x", packet.Sum(req[:20], 0), packet.Sum(req[20:], 0))
	}
}

func ipLen(p []byte) int {
	if p[0]>>4 == 4 {
		return int(binary.BigEndian.Uint16(p[2:]))
	}
	return 40 + int(binary.BigEndian.Uint16(p[4:]))
}

// FuzzEchoReplySeq: the probe parses whatever the client device hands it;
// it must never panic, and what it accepts must carry the probe's id and
// payload.
func FuzzEchoReplySeq(f *testing.F) {
	f.Add(reply(EchoRequest(netip.MustParseAddr("192.0.0.254"), netip.MustParseAddr("10.99.0.1"), 0x1234, 1)), uint16(0x1234))
	f.Add(reply(EchoRequest(netip.MustParseAddr("100::fe"), netip.MustParseAddr("fd00::1"), 0x1234, 2)), uint16(0x1234))
	f.Add([]byte{0x45, 0, 0, 20}, uint16(0))
	f.Add([]byte{0x4f}, uint16(0))
	f.Fuzz(func(t *testing.T, p []byte, id uint16) {
		if _, ok := echoReplySeq(p, id); ok {
			var icmp []byte
			if p[0]>>4 == 4 {
				icmp = p[int(p[0]&0xf)*4:]
			} else {
				icmp = p[40:]
			}
			if binary.BigEndian.Uint16(icmp[4:]) != id || string(icmp[8:8+len(probePayload)]) != probePayload {
				t.Fatalf("accepted %x as a reply to id %#x", p, id)
			}
		}
	})
}
