package cluster

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func testMeta() Meta {
	return Meta{
		Region:           "us-east-1",
		State:            StateReady,
		BackboneKey:      [32]byte{1, 2, 3},
		BackboneEndpoint: netip.MustParseAddrPort("203.0.113.7:51821"),
		BackboneAddr:     netip.MustParseAddr("100.64.1.2"),
		Prefixes:         []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd01::/64")},
		ClientDigest:     "0123456789ab",
		Version:          "v1.2.3",
	}
}

func TestMetaRoundTrip(t *testing.T) {
	m := testMeta()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
	}
	for i := range b {
		if _, err := DecodeMeta(b[:i]); !errors.Is(err, ErrBadMeta) {
			t.Fatalf("truncated at %d: err %v", i, err)
		}
	}
}

func TestMetaTooLarge(t *testing.T) {
	m := testMeta()
	for i := range 100 {
		m.Prefixes = append(m.Prefixes, netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, byte(i)}), 64))
	}
	if _, err := m.Encode(); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("err = %v", err)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	b, _ := testMeta().Encode()
	f.Add(b)
	f.Add([]byte{1, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			return
		}
		if _, err := m.Encode(); err != nil && !errors.Is(err, ErrMetaTooLarge) {
			t.Fatalf("decoded meta does not encode: %v", err)
		}
	})
}
