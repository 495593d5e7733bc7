package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/wgkey"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the fuzz seed corpus under testdata/fuzz")

// testKey returns a deterministic non-zero key.
func testKey(i int) wgkey.Key {
	var k wgkey.Key
	for j := range k {
		k[j] = byte(i*31 + j*7 + 1)
	}
	k[0], k[1] = byte(i>>8), byte(i)
	return k
}

// testClients is the client set the fuzz seeds were encoded with.
func testClients() *ClientSet {
	ks := make([]wgkey.Key, 1000)
	for i := range ks {
		ks[i] = testKey(i)
	}
	return NewClientSet(ks)
}

var testTime = MakeTimestamp(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), 3)

func sampleRecords() []Record {
	return []Record{
		{Client: testKey(1), Owner: "gw-eu-1", Version: 7, Time: testTime, Endpoint: netip.MustParseAddrPort("198.51.100.7:51820"), Reason: ReasonHandshake},
		{Client: testKey(2), Owner: "gw-us-east-2.prod", Version: 300, Time: testTime + 1, Endpoint: netip.MustParseAddrPort("[2001:db8::1]:4500"), Reason: ReasonData},
		{Client: testKey(3), Owner: "", Version: 1 << 40, Time: 0, Reason: ReasonRelease},                                          // tombstone, no endpoint
		{Client: testKey(4), Owner: strings.Repeat("a", MaxOwnerLen), Version: MaxVersion, Time: Timestamp(1<<64 - 1), Reason: 15}, // extremes
		{Client: testKey(5000), Owner: "n", Version: 1, Time: testTime, Endpoint: netip.MustParseAddrPort("[::ffff:192.0.2.1]:0")}, // 4in6, not in the set
		{Client: testKey(6), Owner: "b_c", Version: 2, Time: testTime, Endpoint: netip.MustParseAddrPort("0.0.0.0:65535"), Reason: ReasonTakeover},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, c := range []struct {
		name  string
		codec Codec
	}{{"keys", Codec{}}, {"index", Codec{Clients: testClients()}}} {
		for i, r := range sampleRecords() {
			b, err := c.codec.AppendRecord([]byte("prefix"), r)
			if err != nil {
				t.Fatalf("%s %d: AppendRecord: %v", c.name, i, err)
			}
			got, n, err := c.codec.DecodeRecord(append(b[len("prefix"):], "trailer"...))
			if err != nil {
				t.Fatalf("%s %d: DecodeRecord: %v", c.name, i, err)
			}
			if got != r || n != len(b)-len("prefix") {
				t.Fatalf("%s %d: got %+v (%d bytes), want %+v (%d bytes)", c.name, i, got, n, r, len(b)-len("prefix"))
			}
		}
	}
}

func TestRecordSize(t *testing.T) {
	r := Record{Client: testKey(42), Owner: "gw-eu-1", Version: 1234, Time: testTime, Endpoint: netip.MustParseAddrPort("198.51.100.7:51820"), Reason: ReasonHandshake}
	set := testClients()
	idx, _ := set.Index(r.Client)
	idxLen := len(binary.AppendUvarint(nil, uint64(idx))) // 1 byte below 128, 3 bytes up to 2 million
	for _, c := range []struct {
		name  string
		codec Codec
		want  int
	}{
		// 2 header + 32 key + 2 version + 7 time + 8 owner + 6 endpoint
		{"key", Codec{}, 57},
		// 2 header + 4 tag + index + 2 version + 7 time + 8 owner + 6 endpoint
		{"index", Codec{Clients: set}, 29 + idxLen},
	} {
		b, err := c.codec.AppendRecord(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != c.want {
			t.Errorf("%s: %d bytes, want %d", c.name, len(b), c.want)
		}
		t.Logf("%s: %d bytes per record (IPv4 endpoint, 7-byte owner)", c.name, len(b))
	}
}

func TestAppendRecordInvalid(t *testing.T) {
	good := sampleRecords()[0]
	for _, c := range []struct {
		name string
		edit func(*Record)
		want error
	}{
		{"zero client", func(r *Record) { r.Client = wgkey.Key{} }, ErrInvalidRecord},
		{"version 0", func(r *Record) { r.Version = 0 }, ErrInvalidRecord},
		{"version too big", func(r *Record) { r.Version = MaxVersion + 1 }, ErrInvalidRecord},
		{"owner too long", func(r *Record) { r.Owner = strings.Repeat("a", MaxOwnerLen+1) }, ErrBadOwner},
		{"owner with space", func(r *Record) { r.Owner = "gw 1" }, ErrBadOwner},
		{"owner with slash", func(r *Record) { r.Owner = "gw/1" }, ErrBadOwner},
		{"zone", func(r *Record) { r.Endpoint = netip.MustParseAddrPort("[fe80::1%eth0]:1") }, ErrInvalidRecord},
		{"port without address", func(r *Record) { r.Endpoint = netip.AddrPortFrom(netip.Addr{}, 5) }, ErrInvalidRecord},
		{"reason 16", func(r *Record) { r.Reason = 16 }, ErrInvalidRecord},
	} {
		r := good
		c.edit(&r)
		b, err := AppendRecord([]byte("x"), r)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		if string(b) != "x" {
			t.Errorf("%s: dst changed to %q", c.name, b)
		}
		if _, err := AppendBatch(nil, []Record{good, r}); !errors.Is(err, c.want) {
			t.Errorf("%s: AppendBatch: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	set := testClients()
	valid, _ := AppendRecord(nil, sampleRecords()[0])
	indexed, _ := Codec{Clients: set}.AppendRecord(nil, sampleRecords()[0])

	// Every strict prefix of a valid record is truncated.
	for _, b := range [][]byte{valid, indexed} {
		for n := range len(b) {
			_, _, err := Codec{Clients: set}.DecodeRecord(b[:n])
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("prefix of %d of %d bytes: %v, want ErrTruncated", n, len(b), err)
			}
		}
	}

	edit := func(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }
	ownerOff := 2 + 32 + 1 + 7 // header, key, version 7, time
	for _, c := range []struct {
		name  string
		in    []byte
		codec Codec
		want  error
		field string
	}{
		{"version 0", edit(valid, func(b []byte) []byte { b[0] = 0; return b }), Codec{}, ErrBadVersion, "version"},
		{"version 2", edit(valid, func(b []byte) []byte { b[0] = 2; return b }), Codec{}, ErrBadVersion, "version"},
		{"reserved flag", edit(valid, func(b []byte) []byte { b[1] |= flagReserved; return b }), Codec{}, ErrMalformed, "flags"},
		{"endpoint kind 3", edit(valid, func(b []byte) []byte { b[1] |= 3; return b }), Codec{}, ErrMalformed, "flags"},
		{"zero key", edit(valid, func(b []byte) []byte { clear(b[2:34]); return b }), Codec{}, ErrInvalidRecord, "client"},
		{"version field 0", edit(valid, func(b []byte) []byte { b[34] = 0; return b }), Codec{}, ErrInvalidRecord, "version"},
		{"version not minimal", edit(valid, func(b []byte) []byte {
			return append(append(b[:34:34], 0x87, 0x00), b[35:]...)
		}), Codec{}, ErrMalformed, "version"},
		{"version overflow", edit(valid, func(b []byte) []byte {
			return append(append(b[:34:34], bytes.Repeat([]byte{0xff}, 10)...), b[35:]...)
		}), Codec{}, ErrMalformed, "version"},
		{"version above MaxVersion", edit(valid, func(b []byte) []byte {
			return append(append(b[:34:34], 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40), b[35:]...)
		}), Codec{}, ErrInvalidRecord, "version"},
		{"logical above 16 bits", edit(valid, func(b []byte) []byte {
			return append(append(b[:41:41], 0x80, 0x80, 0x04), b[42:]...)
		}), Codec{}, ErrMalformed, "logical time"},
		{"owner length 64", edit(valid, func(b []byte) []byte { b[ownerOff] = 64; return b }), Codec{}, ErrBadOwner, "owner length"},
		{"owner length 255", edit(valid, func(b []byte) []byte { b[ownerOff] = 255; return b }), Codec{}, ErrBadOwner, "owner length"},
		{"owner bad byte", edit(valid, func(b []byte) []byte { b[ownerOff+3] = '/'; return b }), Codec{}, ErrBadOwner, "owner"},
		{"owner NUL", edit(valid, func(b []byte) []byte { b[ownerOff+1] = 0; return b }), Codec{}, ErrBadOwner, "owner"},
		{"index without set", indexed, Codec{}, ErrUnknownClientSet, "client set tag"},
		{"index other set", indexed, Codec{Clients: NewClientSet([]wgkey.Key{testKey(1)})}, ErrUnknownClientSet, "client set tag"},
		{"index out of range", edit(indexed, func(b []byte) []byte {
			return append(append(b[:6:6], 0xe8, 0x07), b[7:]...) // index 1000 of 1000
		}), Codec{Clients: set}, ErrUnknownClientSet, "client index"},
		{"index above 32 bits", edit(indexed, func(b []byte) []byte {
			return append(append(b[:6:6], 0x80, 0x80, 0x80, 0x80, 0x10), b[7:]...)
		}), Codec{Clients: set}, ErrMalformed, "client index"},
	} {
		_, n, err := c.codec.DecodeRecord(c.in)
		var de *DecodeError
		if !errors.Is(err, c.want) || !errors.As(err, &de) || de.Field != c.field || n != 0 {
			t.Errorf("%s: got %v (n=%d), want %v in field %q", c.name, err, n, c.want, c.field)
		}
	}
}

func TestDecodeErrorMessage(t *testing.T) {
	b, _ := AppendRecord(nil, sampleRecords()[0])
	b[2+32+1+7] = 99
	_, _, err := DecodeRecord(b)
	want := "decode record: owner length at byte 42: invalid owner name: want 0 to 63 bytes of A-Z a-z 0-9 . _ -: 99 bytes"
	if err == nil || err.Error() != want {
		t.Fatalf("got %q\nwant %q", err, want)
	}
}

func TestBatchRoundTrip(t *testing.T) {
	codec := Codec{Clients: testClients()}
	for _, rs := range [][]Record{nil, sampleRecords()} {
		b, err := codec.AppendBatch(nil, rs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := codec.DecodeBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(rs) {
			t.Fatalf("got %d records, want %d", len(got), len(rs))
		}
		for i := range rs {
			if got[i] != rs[i] {
				t.Fatalf("record %d: got %+v, want %+v", i, got[i], rs[i])
			}
		}
	}
}

func TestDecodeBatchErrors(t *testing.T) {
	rs := sampleRecords()
	valid, _ := AppendBatch(nil, rs)
	for n := range len(valid) {
		if _, err := DecodeBatch(valid[:n]); !errors.Is(err, ErrTruncated) {
			t.Fatalf("prefix of %d of %d bytes: %v, want ErrTruncated", n, len(valid), err)
		}
	}
	badThird := bytes.Clone(valid)
	first, _ := AppendRecord(nil, rs[0])
	second, _ := AppendRecord(nil, rs[1])
	badThird[2+len(first)+len(second)] = 9 // version byte of record 2
	for _, c := range []struct {
		name  string
		in    []byte
		want  error
		field string
	}{
		{"bad version", append([]byte{2}, valid[1:]...), ErrBadVersion, "version"},
		{"trailing byte", append(bytes.Clone(valid), 0), ErrMalformed, "end"},
		{"count too big", []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3}, ErrTruncated, "count"},
		{"count below records", append([]byte{1, 1}, valid[2:]...), ErrMalformed, "end"},
		{"bad record", badThird, ErrBadVersion, "record 2: version"},
		{"too large", make([]byte, MaxBatchSize+1), ErrTooLarge, "batch"},
		{"empty", nil, ErrTruncated, "version"},
	} {
		_, err := DecodeBatch(c.in)
		var de *DecodeError
		if !errors.Is(err, c.want) || !errors.As(err, &de) || de.Field != c.field || de.Op != "decode batch" {
			t.Errorf("%s: got %v, want %v in field %q", c.name, err, c.want, c.field)
		}
	}
}

func TestAppendBatchTooLarge(t *testing.T) {
	rs := make([]Record, MaxBatchSize/57+1) // key-form records of 57 bytes
	for i := range rs {
		rs[i] = Record{Client: testKey(i), Owner: "gw-eu-1", Version: 1234, Time: testTime, Endpoint: netip.MustParseAddrPort("198.51.100.7:51820")}
	}
	b, err := AppendBatch([]byte("x"), rs)
	if !errors.Is(err, ErrTooLarge) || string(b) != "x" {
		t.Fatalf("got %v (%d bytes), want ErrTooLarge and dst unchanged", err, len(b))
	}
}

func TestClientSet(t *testing.T) {
	ks := []wgkey.Key{testKey(3), testKey(1), {}, testKey(2), testKey(1)}
	s := NewClientSet(ks)
	if s.Len() != 3 {
		t.Fatalf("Len() = %d, want 3 (zero and duplicate keys dropped)", s.Len())
	}
	if ks[0] != testKey(3) {
		t.Fatal("NewClientSet modified its argument")
	}
	for i := range uint32(3) {
		k, ok := s.Key(i)
		j, ok2 := s.Index(k)
		if !ok || !ok2 || j != i {
			t.Fatalf("Key(%d)/Index disagree: %d %v %v", i, j, ok, ok2)
		}
	}
	if _, ok := s.Key(3); ok {
		t.Fatal("Key(3) of 3")
	}
	if _, ok := s.Index(testKey(4)); ok {
		t.Fatal("Index of a key not in the set")
	}
	if NewClientSet([]wgkey.Key{testKey(2), testKey(1), testKey(3)}).Tag() != s.Tag() {
		t.Fatal("tag depends on order")
	}
	if NewClientSet([]wgkey.Key{testKey(1), testKey(2)}).Tag() == s.Tag() {
		t.Fatal("tag ignores a missing key")
	}
	var none *ClientSet
	if _, ok := none.Index(testKey(1)); ok || none.Len() != 0 || none.Tag() != 0 {
		t.Fatal("nil ClientSet is not empty")
	}
}

func TestCodecNoAllocs(t *testing.T) {
	r := sampleRecords()[1]
	buf := make([]byte, 0, 128)
	for _, codec := range []Codec{{}, {Clients: testClients()}} {
		if n := testing.AllocsPerRun(100, func() { buf, _ = codec.AppendRecord(buf[:0], r) }); n != 0 {
			t.Errorf("AppendRecord: %v allocs, want 0", n)
		}
		b, _ := codec.AppendRecord(nil, r)
		// One allocation: the owner string.
		if n := testing.AllocsPerRun(100, func() { _, _, _ = codec.DecodeRecord(b) }); n > 1 {
			t.Errorf("DecodeRecord: %v allocs, want at most 1", n)
		}
	}
}

// fuzzSeeds are the checked-in seed inputs, by fuzz target and name.
func fuzzSeeds() map[string]map[string][]byte {
	codec := Codec{Clients: testClients()}
	rec := map[string][]byte{}
	for i, r := range sampleRecords() {
		rec[fmt.Sprintf("key_%d", i)], _ = AppendRecord(nil, r)
		rec[fmt.Sprintf("index_%d", i)], _ = codec.AppendRecord(nil, r)
	}
	b := rec["key_0"]
	rec["truncated"] = b[:len(b)-1]
	rec["bad_version"] = append([]byte{2}, b[1:]...)
	rec["owner_too_long"] = append(bytes.Clone(b[:42]), append([]byte{200}, b[43:]...)...)
	rec["varint_overflow"] = append(bytes.Clone(b[:34]), bytes.Repeat([]byte{0xff}, 12)...)
	rec["empty"] = []byte{}

	batch := map[string][]byte{}
	batch["empty"], _ = AppendBatch(nil, nil)
	batch["keys"], _ = AppendBatch(nil, sampleRecords())
	batch["index"], _ = codec.AppendBatch(nil, sampleRecords())
	batch["huge_count"] = []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}
	batch["trailing"] = append(bytes.Clone(batch["keys"]), 0)
	batch["truncated"] = batch["index"][:len(batch["index"])-3]
	return map[string]map[string][]byte{"FuzzDecodeRecord": rec, "FuzzDecodeBatch": batch}
}

// TestFuzzSeeds checks that the corpus under testdata/fuzz matches the
// current encoder; run with -update-seeds to rewrite it.
func TestFuzzSeeds(t *testing.T) {
	for target, seeds := range fuzzSeeds() {
		dir := filepath.Join("testdata", "fuzz", target)
		if *updateSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for name, b := range seeds {
			path := filepath.Join(dir, name)
			want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if *updateSeeds {
				if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != want {
				t.Errorf("%s is missing or stale (%v): run go test ./cluster -run TestFuzzSeeds -update-seeds", path, err)
			}
		}
	}
}

// checkDecoded checks what every successful decode must satisfy.
func checkDecoded(t *testing.T, codec Codec, in []byte, r Record, n int) {
	t.Helper()
	if err := r.Validate(); err != nil {
		t.Fatalf("decoded record does not validate: %v", err)
	}
	out, err := codec.AppendRecord(nil, r)
	if err != nil {
		t.Fatalf("re-encode: %v", err)
	}
	back, m, err := codec.DecodeRecord(out)
	if err != nil || back != r || m != len(out) {
		t.Fatalf("round trip: %+v, %d, %v; want %+v", back, m, err, r)
	}
	// Encodings are unique, so a key-form record re-encodes to its input.
	if codec.Clients == nil && !bytes.Equal(out, in[:n]) {
		t.Fatalf("re-encoding differs:\n in %x\nout %x", in[:n], out)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	set := testClients()
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, codec := range []Codec{{}, {Clients: set}} {
			r, n, err := codec.DecodeRecord(b)
			if err != nil {
				var de *DecodeError
				if !errors.As(err, &de) || n != 0 {
					t.Fatalf("error %v is not a *DecodeError or n = %d", err, n)
				}
				continue
			}
			if n < minRecordLen || n > len(b) {
				t.Fatalf("n = %d of %d", n, len(b))
			}
			checkDecoded(t, codec, b, r, n)
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	set := testClients()
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, codec := range []Codec{{}, {Clients: set}} {
			rs, err := codec.DecodeBatch(b)
			if err != nil {
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("error %v is not a *DecodeError", err)
				}
				continue
			}
			out, err := codec.AppendBatch(nil, rs)
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			if codec.Clients == nil && !bytes.Equal(out, b) {
				t.Fatalf("re-encoding differs:\n in %x\nout %x", b, out)
			}
			back, err := codec.DecodeBatch(out)
			if err != nil || len(back) != len(rs) {
				t.Fatalf("round trip: %d records, %v", len(back), err)
			}
			for i := range rs {
				if back[i] != rs[i] {
					t.Fatalf("record %d: %+v, want %+v", i, back[i], rs[i])
				}
			}
		}
	})
}

// FuzzRecordRoundTrip builds records from arbitrary fields: every valid one
// must survive encode and decode unchanged, in both client forms.
func FuzzRecordRoundTrip(f *testing.F) {
	for _, r := range sampleRecords() {
		a := r.Endpoint.Addr().AsSlice()
		f.Add(r.Client[:], r.Owner, r.Version, uint64(r.Time), a, r.Endpoint.Port(), uint8(r.Reason))
	}
	f.Add(make([]byte, 32), "", uint64(0), uint64(0), []byte{}, uint16(1), uint8(200))
	set := testClients()
	f.Fuzz(func(t *testing.T, client []byte, owner string, version, ts uint64, addr []byte, port uint16, reason uint8) {
		var r Record
		copy(r.Client[:], client)
		if len(client) == 2 { // reach the indexed form often
			k, _ := set.Key(uint32(client[0])<<8 | uint32(client[1]))
			r.Client = k
		}
		r.Owner, r.Version, r.Time, r.Reason = owner, version, Timestamp(ts), Reason(reason)
		if a, ok := netip.AddrFromSlice(addr); ok {
			r.Endpoint = netip.AddrPortFrom(a, port)
		}
		valid := r.Validate() == nil
		for _, codec := range []Codec{{}, {Clients: set}} {
			b, err := codec.AppendRecord(nil, r)
			if valid != (err == nil) {
				t.Fatalf("Validate and AppendRecord disagree: %v", err)
			}
			if !valid {
				continue
			}
			got, n, err := codec.DecodeRecord(b)
			if err != nil || got != r || n != len(b) {
				t.Fatalf("round trip: %+v, %d, %v; want %+v", got, n, err, r)
			}
		}
	})
}

func benchRecord() Record {
	return Record{Client: testKey(42), Owner: "gw-eu-1", Version: 1234, Time: testTime, Endpoint: netip.MustParseAddrPort("198.51.100.7:51820"), Reason: ReasonHandshake}
}

func BenchmarkAppendRecord(b *testing.B) {
	for _, c := range []struct {
		name  string
		codec Codec
	}{{"key", Codec{}}, {"index", Codec{Clients: testClients()}}} {
		b.Run(c.name, func(b *testing.B) {
			r := benchRecord()
			buf := make([]byte, 0, 128)
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = c.codec.AppendRecord(buf[:0], r)
			}
			b.ReportMetric(float64(len(buf)), "bytes/record")
		})
	}
}

func BenchmarkDecodeRecord(b *testing.B) {
	for _, c := range []struct {
		name  string
		codec Codec
	}{{"key", Codec{}}, {"index", Codec{Clients: testClients()}}} {
		b.Run(c.name, func(b *testing.B) {
			in, _ := c.codec.AppendRecord(nil, benchRecord())
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := c.codec.DecodeRecord(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkBatch10k(b *testing.B) {
	rs := make([]Record, 10_000)
	for i := range rs {
		rs[i] = benchRecord()
		rs[i].Client = testKey(i)
	}
	ks := make([]wgkey.Key, len(rs))
	for i, r := range rs {
		ks[i] = r.Client
	}
	codec := Codec{Clients: NewClientSet(ks)}
	enc, _ := codec.AppendBatch(nil, rs)
	b.Run("encode", func(b *testing.B) {
		buf := make([]byte, 0, len(enc))
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = codec.AppendBatch(buf[:0], rs)
		}
		b.ReportMetric(float64(len(buf))/float64(len(rs)), "bytes/record")
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := codec.DecodeBatch(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
