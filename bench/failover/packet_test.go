package failover

import (
	"net/netip"
	"testing"
)

func TestMsgRoundTrip(t *testing.T) {
	m := msg{src: netip.MustParseAddr("10.99.0.2"), dst: netip.MustParseAddr("10.202.0.1"), kind: kindEcho, client: 7, seq: 9, sent: 123456789}
	b := putMsg(make([]byte, packetLen), m)
	if ipChecksum(b[:ipHdrLen]) != 0 {
		t.Error("IPv4 header checksum does not verify")
	}
	got, err := parseMsg(b)
	if err != nil || got != m {
		t.Fatalf("parseMsg = %+v, %v; want %+v", got, err, m)
	}
}

func TestParseMsgBad(t *testing.T) {
	good := putMsg(make([]byte, packetLen), msg{src: netip.MustParseAddr("10.99.0.2"), dst: netip.MustParseAddr("10.202.0.1"), kind: kindPing})
	cases := map[string][]byte{
		"empty":     nil,
		"short":     good[:packetLen-1],
		"ipv6":      append([]byte{0x60}, good[1:]...),
		"tcp":       func() []byte { b := append([]byte(nil), good...); b[9] = 6; return b }(),
		"length":    func() []byte { b := append([]byte(nil), good...); b[2], b[3] = 0xff, 0xff; return b }(),
		"magic":     func() []byte { b := append([]byte(nil), good...); b[ipHdrLen+udpHdrLen] = 'X'; return b }(),
		"kind zero": func() []byte { b := append([]byte(nil), good...); b[ipHdrLen+udpHdrLen+4] = 0; return b }(),
		"kind 9":    func() []byte { b := append([]byte(nil), good...); b[ipHdrLen+udpHdrLen+4] = 9; return b }(),
	}
	for name, b := range cases {
		if _, err := parseMsg(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzParseMsg: parseMsg never panics, and what it accepts it writes back
// unchanged.
func FuzzParseMsg(f *testing.F) {
	f.Add(putMsg(make([]byte, packetLen), msg{src: netip.MustParseAddr("10.99.0.2"), dst: netip.MustParseAddr("10.202.0.1"), kind: kindReply, client: 1, seq: 2, sent: 3}))
	f.Add([]byte{0x45, 0, 0, 49})
	f.Add(make([]byte, 100))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMsg(b)
		if err != nil {
			return
		}
		again, err := parseMsg(putMsg(make([]byte, packetLen), m))
		if err != nil || again != m {
			t.Fatalf("%+v did not survive a round trip: %+v, %v", m, again, err)
		}
	})
}
