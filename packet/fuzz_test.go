package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"runtime"
	"testing"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// FuzzParse: Parse never panics or reads beyond its input, and agrees with
// golang.org/x/net's header parsers plus the length rules written out
// below; ParseEcho agrees with a checksum computed by refSum, and what it
// reads, AppendEcho writes back the same.
func FuzzParse(f *testing.F) {
	switch runtime.GOOS {
	case "darwin", "ios", "dragonfly", "netbsd", "freebsd":
		f.Skip("x/net/ipv4.ParseHeader reads the length fields in host order here")
	}
	src, dst := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	src6, dst6 := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	f.Add(AppendEcho(nil, src, dst, Echo{ID: 1, Seq: 2, Data: []byte("ping")}))
	f.Add(AppendEcho(nil, src6, dst6, Echo{Reply: true, ID: 1, Seq: 2, Data: []byte("pong")}))
	f.Add(ip4(6, ProtoUDP, "10.0.0.1", "10.0.0.2", []byte("options")))
	f.Add(ip6(0, "fd00::1", "fd00::2", make([]byte, 8)))
	f.Add([]byte{0x45})
	f.Add([]byte{0x60})
	f.Fuzz(func(t *testing.T, p []byte) {
		h, err := Parse(p)
		FlowHash(p)
		want := refParse(p)
		if (err == nil) != (want != nil) {
			t.Fatalf("Parse err %v, reference accepts: %v", err, want != nil)
		}
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrHeaderLen) && !errors.Is(err, ErrLength) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !bytes.Equal(h.Payload, want.Payload) {
			t.Fatalf("payload % x, reference % x", h.Payload, want.Payload)
		}
		h.Payload, want.Payload = nil, nil
		if !reflect.DeepEqual(h, *want) {
			t.Fatalf("Parse %+v\nreference %+v", h, *want)
		}
		h, _ = Parse(p)
		e, ok := ParseEcho(h)
		if !ok {
			return
		}
		var ph uint16
		if h.Version == 6 {
			var b [40]byte
			s, d := h.Src.As16(), h.Dst.As16()
			copy(b[:], s[:])
			copy(b[16:], d[:])
			binary.BigEndian.PutUint32(b[32:], uint32(len(h.Payload)))
			b[39] = ProtoICMPv6
			ph = refSum(b[:], 0)
		}
		if e.ChecksumOK != (refSum(h.Payload, ph) == 0xffff) {
			t.Fatalf("ChecksumOK %v for % x", e.ChecksumOK, h.Payload)
		}
		out := AppendEcho(nil, h.Src, h.Dst, e)
		h2, err := Parse(out)
		if err != nil {
			t.Fatalf("AppendEcho wrote a packet Parse refuses: %v", err)
		}
		e2, ok := ParseEcho(h2)
		if !ok || e2.Reply != e.Reply || e2.Code != e.Code || e2.ID != e.ID || e2.Seq != e.Seq || !bytes.Equal(e2.Data, e.Data) || !e2.ChecksumOK {
			t.Fatalf("echo %+v written and read back as %+v (%v)", e, e2, ok)
		}
	})
}

// refParse is the reference for Parse: the header fields as x/net reads
// them, accepted when the rules of Parse's documentation hold.
func refParse(p []byte) *Header {
	if len(p) == 0 {
		return nil
	}
	switch p[0] >> 4 {
	case 4:
		x, err := ipv4.ParseHeader(p)
		if err != nil || x.Len < 20 || x.TotalLen < x.Len || len(p) < x.TotalLen {
			return nil
		}
		h := &Header{
			Version: 4, HeaderLen: x.Len, Length: x.TotalLen, TTL: uint8(x.TTL), Proto: uint8(x.Protocol),
			Fragment: x.Flags&ipv4.MoreFragments != 0 || x.FragOff != 0,
			Payload:  p[x.Len:x.TotalLen],
		}
		h.Src, _ = netip.AddrFromSlice(x.Src.To4())
		h.Dst, _ = netip.AddrFromSlice(x.Dst.To4())
		return h
	case 6:
		x, err := ipv6.ParseHeader(p)
		if err != nil || (x.PayloadLen == 0 && len(p) > 40) || len(p) < 40+x.PayloadLen {
			return nil
		}
		h := &Header{
			Version: 6, HeaderLen: 40, Length: 40 + x.PayloadLen, TTL: uint8(x.HopLimit), Proto: uint8(x.NextHeader),
			Payload: p[40 : 40+x.PayloadLen],
		}
		h.Src, _ = netip.AddrFromSlice(x.Src)
		h.Dst, _ = netip.AddrFromSlice(x.Dst)
		return h
	}
	return nil
}
