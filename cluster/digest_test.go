package cluster

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anyguard/anyguard/wgkey"
)

func TestDigestBits(t *testing.T) {
	for _, c := range []struct {
		n    int
		bits uint8
	}{
		{0, 0}, {1, 0}, {32, 0}, {33, 1}, {64, 1}, {65, 2}, {1800, 6}, {100_000, 12}, {1 << 30, maxDigestBits},
	} {
		if got := digestBits(c.n); got != c.bits {
			t.Errorf("digestBits(%d) = %d, want %d", c.n, got, c.bits)
		}
	}
}

func TestDigestRoundTrip(t *testing.T) {
	for _, bits := range []uint8{0, 3, maxDigestBits} {
		hs := make([]uint32, 1<<bits)
		for i := range hs {
			hs[i] = uint32(i*2654435761) ^ 0xdeadbeef
		}
		b := appendDigest(nil, "gw-1.eu", bits, hs)
		d, err := decodeDigest(b)
		if err != nil {
			t.Fatalf("bits %d: %v", bits, err)
		}
		if d.from != "gw-1.eu" || d.bits != bits || len(d.hashes) != len(hs) {
			t.Fatalf("bits %d: decoded %q %d %d", bits, d.from, d.bits, len(d.hashes))
		}
		for i := range hs {
			if d.hashes[i] != hs[i] {
				t.Fatalf("bits %d: hash %d = %x, want %x", bits, i, d.hashes[i], hs[i])
			}
		}
	}
}

// TestDigestRefusesBadInput: every malformed digest is a *DecodeError.
func TestDigestRefusesBadInput(t *testing.T) {
	good := appendDigest(nil, "a", 1, []uint32{1, 2})
	for name, b := range map[string][]byte{
		"empty":         nil,
		"wrong type":    append([]byte{1}, good[1:]...),
		"no name":       {stateDigest, 0, 0, 0, 0, 0, 0},
		"bad name":      {stateDigest, 1, '/', 0, 0, 0, 0, 0},
		"name too long": append([]byte{stateDigest, 64}, bytes.Repeat([]byte{'a'}, 64)...),
		"bits too many": {stateDigest, 1, 'a', maxDigestBits + 1},
		"truncated":     good[:len(good)-1],
		"trailing":      append(append([]byte{}, good...), 0),
	} {
		_, err := decodeDigest(b)
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Errorf("%s: err = %v, want a *DecodeError", name, err)
		}
	}
}

// TestDifferingFindsChangedBuckets: two tables that differ in a few
// clients agree on every other bucket, and the records of the differing
// buckets carry what the other side lacks.
func TestDifferingFindsChangedBuckets(t *testing.T) {
	clients := genClients(2000)
	a, _ := NewTable("a", NewHLC(nil, 0), TableOptions{})
	b, _ := NewTable("b", NewHLC(nil, 0), TableOptions{})
	ep := netip.MustParseAddrPort("192.0.2.1:1")
	for _, k := range clients {
		r, _ := a.Claim(k, ep, ReasonHandshake)
		if _, err := b.Apply(r); err != nil {
			t.Fatal(err)
		}
	}
	bits := digestBits(len(clients))
	if d := a.Differing(bits, b.Digest(bits)); len(d) != 0 {
		t.Fatalf("equal tables differ in %d records", len(d))
	}
	// b misses 3 newer claims of a.
	var missing []wgkey.Key
	for _, k := range clients[:3] {
		a.Claim(k, netip.MustParseAddrPort("192.0.2.2:2"), ReasonHandshake)
		missing = append(missing, k)
	}
	rs := a.Differing(bits, b.Digest(bits))
	if len(rs) == 0 || len(rs) > 3*4*digestBucketRecords {
		t.Fatalf("%d records to repair 3 clients", len(rs))
	}
	changed, err := b.Merge(rs)
	if err != nil || len(changed) != 3 {
		t.Fatalf("merge changed %d (%v), want the 3 missing", len(changed), err)
	}
	for _, k := range missing {
		ra, _ := a.Get(k)
		rb, _ := b.Get(k)
		if ra != rb {
			t.Fatalf("after repair b has %+v, a %+v", rb, ra)
		}
	}
	if d := b.Differing(bits, a.Digest(bits)); len(d) != 0 {
		t.Fatalf("repaired tables still differ in %d records", len(d))
	}
	if d := a.Differing(bits, make([]uint32, 3)); d != nil {
		t.Fatal("a digest of the wrong length was compared")
	}
}

// TestDigestSkipsCollectableTombstones: a tombstone past the horizon is
// left out, so a gateway that already collected it does not differ.
func TestDigestSkipsCollectableTombstones(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	a, _ := NewTable("a", NewHLC(clock, 0), TableOptions{TombstoneTTL: time.Minute})
	k := genClients(1)[0]
	a.Claim(k, netip.AddrPort{}, ReasonHandshake)
	a.Release(k)
	if a.Digest(0)[0] == 0 {
		t.Fatal("a fresh tombstone is not in the digest")
	}
	now = now.Add(2 * time.Minute)
	a.hlc.Now()
	if h := a.Digest(0)[0]; h != 0 {
		t.Fatalf("an old tombstone is still in the digest (%x)", h)
	}
}

func FuzzDecodeDigest(f *testing.F) {
	f.Add(appendDigest(nil, "a", 0, []uint32{7}))
	f.Add(appendDigest(nil, "node-1", 2, []uint32{1, 2, 3, 4}))
	f.Add([]byte{stateDigest, 1, 'a', 15})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeDigest(b)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DecodeError", err)
			}
			return
		}
		if out := appendDigest(nil, d.from, d.bits, d.hashes); !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, out)
		}
	})
}

// TestFuzzSeedsCheckedIn keeps a seed corpus for FuzzDecodeDigest in
// testdata, like the record fuzzers'.
func TestFuzzSeedsCheckedIn(t *testing.T) {
	ents, err := os.ReadDir(filepath.Join("testdata", "fuzz", "FuzzDecodeDigest"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("no checked-in seeds for FuzzDecodeDigest: %v", err)
	}
}
