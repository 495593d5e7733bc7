package cluster

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// Anti-entropy by digest. memberlist's periodic push/pull exchanges each
// side's LocalState with one random member. Sending the whole table there
// costs its size every few seconds whatever changed (1.8k records: 10.8
// kB/s per gateway; 100k clients: megabytes each time). Instead, outside a
// join, a gateway sends a digest: its records split into 2^bits buckets by
// the first bits of the client key, one 32-bit hash per bucket. The other
// side computes its own hashes at the same bits and sends the records of
// every bucket that differs back, in a reliable message; as both sides of a
// push/pull do this, after one exchange both hold the greater record of
// every client either had. A join still sends the whole table, which the
// joining gateway needs anyway.
//
// Digest wire format:
//
//	type     1 byte = stateDigest
//	name     1 byte length 1..MaxOwnerLen, then the sender's node name
//	bits     1 byte, 0..maxDigestBits
//	hashes   2^bits × 4 bytes, big endian, bucket 0 first
const (
	stateDigest = 0x81

	// digestBucketRecords is about how many records a bucket holds: the
	// digest costs 4/digestBucketRecords bytes per record, and a bucket
	// that differs costs about digestBucketRecords records to repair.
	digestBucketRecords = 32
	maxDigestBits       = 14 // 64 KiB of hashes, enough for half a million records
)

// digestBits returns the bucket bits for a table of n records.
func digestBits(n int) uint8 {
	b := 0
	if n > digestBucketRecords {
		b = bits.Len(uint((n - 1) / digestBucketRecords))
	}
	return uint8(min(b, maxDigestBits))
}

// bucketOf returns the bucket of client at bits (≤ 16).
func bucketOf(client *[32]byte, bits uint8) uint32 {
	if bits == 0 {
		return 0
	}
	return uint32(binary.BigEndian.Uint16(client[:2])) >> (16 - bits)
}

// recordHash is a hash of every field that makes a record newer or
// different (FNV-1a, 64 bits; deterministic across processes, unlike
// hash/maphash). Buckets XOR these, so the order of records does not matter.
func recordHash(r *Record) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for _, c := range r.Client {
		h = (h ^ uint64(c)) * prime
	}
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], r.Version)
	for _, c := range n {
		h = (h ^ uint64(c)) * prime
	}
	binary.BigEndian.PutUint64(n[:], uint64(r.Time))
	for _, c := range n {
		h = (h ^ uint64(c)) * prime
	}
	h = (h ^ uint64(len(r.Owner))) * prime
	for i := 0; i < len(r.Owner); i++ {
		h = (h ^ uint64(r.Owner[i])) * prime
	}
	a := r.Endpoint.Addr().As16()
	for _, c := range a {
		h = (h ^ uint64(c)) * prime
	}
	h = (h ^ uint64(r.Endpoint.Port()>>8)) * prime
	h = (h ^ uint64(r.Endpoint.Port()&0xff)) * prime
	h = (h ^ uint64(r.Reason)) * prime
	return h
}

// digest is a decoded digest message.
type digest struct {
	from   string
	bits   uint8
	hashes []uint32
}

func appendDigest(dst []byte, from string, bits uint8, hashes []uint32) []byte {
	dst = append(dst, stateDigest, byte(len(from)))
	dst = append(dst, from...)
	dst = append(dst, bits)
	for _, h := range hashes {
		dst = binary.BigEndian.AppendUint32(dst, h)
	}
	return dst
}

func decodeDigest(b []byte) (digest, error) {
	d := decoder{b: b, op: "decode digest"}
	t, err := d.next(1, "type")
	if err != nil {
		return digest{}, err
	}
	if t[0] != stateDigest {
		return digest{}, d.fail("type", 0, ErrMalformed)
	}
	nl, err := d.next(1, "name")
	if err != nil {
		return digest{}, err
	}
	off := d.off
	name, err := d.next(int(nl[0]), "name")
	if err != nil {
		return digest{}, err
	}
	if len(name) == 0 || len(name) > MaxOwnerLen || !validNameBytes(name) {
		return digest{}, d.fail("name", off, ErrBadOwner)
	}
	off = d.off
	bb, err := d.next(1, "bits")
	if err != nil {
		return digest{}, err
	}
	if bb[0] > maxDigestBits {
		return digest{}, d.fail("bits", off, ErrMalformed)
	}
	n := 1 << bb[0]
	hb, err := d.next(4*n, "hashes")
	if err != nil {
		return digest{}, err
	}
	if d.off != len(b) {
		return digest{}, d.fail("end", d.off, fmt.Errorf("%w: %d bytes after the hashes", ErrMalformed, len(b)-d.off))
	}
	out := digest{from: string(name), bits: bb[0], hashes: make([]uint32, n)}
	for i := range out.hashes {
		out.hashes[i] = binary.BigEndian.Uint32(hb[4*i:])
	}
	return out, nil
}

// Digest returns the table's bucket hashes at bits, leaving out tombstones
// that GC may already have removed elsewhere (they would keep buckets
// differing between gateways that collected them and gateways that did not).
func (t *Table) Digest(bits uint8) []uint32 {
	hashes := make([]uint32, 1<<bits)
	cut := t.horizon(t.hlc.Last())
	t.mu.Lock()
	for k, r := range t.recs {
		if r.Owner == "" && r.Time < cut {
			continue
		}
		hashes[bucketOf((*[32]byte)(&k), bits)] ^= uint32(recordHash(&r))
	}
	t.mu.Unlock()
	return hashes
}

// Differing returns the records of the buckets (at bits) whose hash in
// theirs differs from this table's, tombstones past the horizon left out as
// in Digest.
func (t *Table) Differing(bits uint8, theirs []uint32) []Record {
	ours := t.Digest(bits)
	if len(theirs) != len(ours) {
		return nil
	}
	differ := make([]bool, len(ours))
	n := 0
	for i := range ours {
		if ours[i] != theirs[i] {
			differ[i] = true
			n++
		}
	}
	if n == 0 {
		return nil
	}
	cut := t.horizon(t.hlc.Last())
	var rs []Record
	t.mu.Lock()
	for k, r := range t.recs {
		if differ[bucketOf((*[32]byte)(&k), bits)] && (r.Owner != "" || r.Time >= cut) {
			rs = append(rs, r)
		}
	}
	t.mu.Unlock()
	return rs
}
