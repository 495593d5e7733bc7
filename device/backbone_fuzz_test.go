package device

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/anyguard/anyguard/router/routertest"
)

// bbSeedDir holds the checked-in seeds of FuzzBackboneOuter.
const bbSeedDir = "testdata/fuzz/FuzzBackboneOuter"

// refCheckOuter is checkOuter written out field by field from RFC 791, as
// the fuzz target's oracle: a packet from the backbone is accepted only as
// an unfragmented IPv4 packet carrying IP in IP (protocol 4), or a relayed
// client datagram (protocol 253: relayed), to local, whose header and total
// lengths fit the bytes received.
func refCheckOuter(p []byte, local netip.Addr) (hl, total int, reason backboneDrop) {
	if len(p) < 20 {
		return 0, 0, dropTruncated
	}
	version, ihl := p[0]>>4, int(p[0]&0x0f)
	if version != 4 || ihl < 5 {
		return 0, 0, dropNotIPIP
	}
	total = int(p[2])<<8 | int(p[3])
	if total <= ihl*4 || total > len(p) {
		return 0, 0, dropTruncated
	}
	moreFragments := p[6]&0x20 != 0
	fragOffset := int(p[6]&0x1f)<<8 | int(p[7])
	if (p[9] != 4 && p[9] != 253) || moreFragments || fragOffset != 0 {
		return 0, 0, dropNotIPIP
	}
	if netip.AddrFrom4([4]byte{p[16], p[17], p[18], p[19]}) != local {
		return 0, 0, dropWrongDestination
	}
	if p[9] == 253 {
		return ihl * 4, total, relayed
	}
	return ihl * 4, total, dropNone
}

// bbSeeds are the seeds of FuzzBackboneOuter: packets as a backbone peer
// sends them to bbB, and the ways they can be wrong.
func bbSeeds(t testing.TB) map[string][]byte {
	inner := routertest.Packet(0, netip.MustParseAddr("10.1.0.10"), netip.MustParseAddr("10.99.0.2"), 64, []byte("inner"))
	p := NewBackbonePort("seed", 1440, bbA, func([][]byte, int) {})
	defer p.Close()
	if err := p.DeliverVia([][]byte{append(make([]byte, bbHeadroom), inner...)}, []netip.Addr{bbB}, bbHeadroom); err != nil {
		t.Fatal(err)
	}
	bufs, sizes := [][]byte{make([]byte, bbHeadroom+1500)}, []int{0}
	if n, err := p.Read(bufs, sizes, bbHeadroom); n != 1 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	good := append([]byte(nil), bufs[0][bbHeadroom:bbHeadroom+sizes[0]]...)
	edit := func(f func(h []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	if err := p.SendRelay(bbB, RelayToOwner, netip.MustParseAddrPort("198.51.100.7:51820"), msg(4, 48)); err != nil {
		t.Fatal(err)
	}
	if n, err := p.Read(bufs, sizes, bbHeadroom); n != 1 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	relay := append([]byte(nil), bufs[0][bbHeadroom:bbHeadroom+sizes[0]]...)
	editRelay := func(f func(h []byte) []byte) []byte { return f(append([]byte(nil), relay...)) }
	return map[string][]byte{
		"relay":            relay,
		"relay-bad-kind":   editRelay(func(h []byte) []byte { h[20] = 7; return h }),
		"relay-no-message": editRelay(func(h []byte) []byte { h = h[:20+19]; binary.BigEndian.PutUint16(h[2:], uint16(len(h))); return h }),
		"good":             good,
		"ip-options": edit(func(h []byte) []byte {
			o := append(append(append([]byte(nil), h[:20]...), 1, 1, 1, 0), h[20:]...)
			o[0] = 0x46
			binary.BigEndian.PutUint16(o[2:], uint16(len(o)))
			return o
		}),
		"padding":           edit(func(h []byte) []byte { return append(h, 0, 0, 0) }),
		"truncated":         edit(func(h []byte) []byte { return h[:len(h)-1] }),
		"header-only":       edit(func(h []byte) []byte { binary.BigEndian.PutUint16(h[2:], 20); return h }),
		"ihl-beyond-length": edit(func(h []byte) []byte { h[0] = 0x4f; return h }),
		"ihl-too-small":     edit(func(h []byte) []byte { h[0] = 0x44; return h }),
		"ipv6-outer":        edit(func(h []byte) []byte { h[0] = 0x65; return h }),
		"udp":               edit(func(h []byte) []byte { h[9] = 17; return h }),
		"more-fragments":    edit(func(h []byte) []byte { h[6] |= 0x20; return h }),
		"fragment-offset":   edit(func(h []byte) []byte { h[7] = 1; return h }),
		"wrong-destination": edit(func(h []byte) []byte { h[19] ^= 1; return h }),
		"empty":             {},
	}
}

// TestWriteBackboneFuzzSeeds regenerates the checked-in seeds of
// FuzzBackboneOuter when ANYGUARD_WRITE_SEEDS=1.
func TestWriteBackboneFuzzSeeds(t *testing.T) {
	if os.Getenv("ANYGUARD_WRITE_SEEDS") != "1" {
		t.Skip("set ANYGUARD_WRITE_SEEDS=1 to regenerate " + bbSeedDir)
	}
	for name, p := range bbSeeds(t) {
		if err := hsWriteSeed(filepath.Join(bbSeedDir, name), p); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBackboneFuzzSeedsCheckedIn: the checked-in seeds are the ones
// bbSeeds makes, so the corpus covers every drop reason.
func TestBackboneFuzzSeedsCheckedIn(t *testing.T) {
	for name, want := range bbSeeds(t) {
		got, err := os.ReadFile(filepath.Join(bbSeedDir, name))
		if err != nil {
			t.Fatalf("seed %s: %v (regenerate with ANYGUARD_WRITE_SEEDS=1)", name, err)
		}
		if lit := "go test fuzz v1\n[]byte(" + strconv.Quote(string(want)) + ")\n"; string(got) != lit {
			t.Errorf("seed %s differs from what bbSeeds makes (regenerate with ANYGUARD_WRITE_SEEDS=1)", name)
		}
	}
}

// FuzzBackboneOuter feeds arbitrary decrypted backbone packets to the
// receiving side of a BackbonePort: checkOuter must agree with the
// field-by-field oracle, never panic, and Write must count every packet
// under exactly one reason and forward exactly the inner packet of the
// accepted ones, in place.
func FuzzBackboneOuter(f *testing.F) {
	for _, p := range bbSeeds(f) {
		f.Add(p)
	}
	rec := &bbRecorder{}
	port := NewBackbonePort("fuzz", 1440, bbB, rec.forward)
	handled := 0
	port.SetRelayHandler(func(from netip.Addr, kind RelayKind, ep netip.AddrPort, d []byte) {
		if !from.Is4() || (kind != RelayToOwner && kind != RelayToClient) || Classify(d) != msgTransport || ep.Port() == 0 {
			panic("relay handler called with an unchecked datagram")
		}
		handled++
	})
	f.Cleanup(func() { port.Close() })
	f.Fuzz(func(t *testing.T, p []byte) {
		hl, total, reason := port.checkOuter(p)
		if rhl, rtotal, rreason := refCheckOuter(p, bbB); reason != rreason || hl != rhl || total != rtotal {
			t.Fatalf("checkOuter = %d, %d, %d; oracle %d, %d, %d", hl, total, reason, rhl, rtotal, rreason)
		}
		before := port.Stats()
		rec.mu.Lock()
		rec.packets, rec.offsets = nil, nil
		rec.mu.Unlock()
		buf := append(make([]byte, bbHeadroom), p...)
		if n, err := port.Write([][]byte{buf}, bbHeadroom); n != 1 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		after := port.Stats()
		counted := (after.Decapsulated - before.Decapsulated) + (after.NotIPIP - before.NotIPIP) +
			(after.WrongDestination - before.WrongDestination) + (after.Truncated - before.Truncated) +
			(after.RelayedIn - before.RelayedIn) + (after.BadRelay - before.BadRelay)
		if counted != 1 {
			t.Fatalf("one packet counted %d times: before %+v after %+v", counted, before, after)
		}
		if handled != int(after.RelayedIn) {
			t.Fatalf("relay handler called %d times for %d relayed", handled, after.RelayedIn)
		}
		got, offsets := rec.snapshot()
		if reason != dropNone {
			if len(got) != 0 {
				t.Fatalf("dropped packet (reason %d) was forwarded", reason)
			}
			return
		}
		if len(got) != 1 || offsets[0] != bbHeadroom+hl || !bytes.Equal(got[0], p[hl:total]) {
			t.Fatalf("forwarded %x at %v, want %x at %d", got, offsets, p[hl:total], bbHeadroom+hl)
		}
	})
}
