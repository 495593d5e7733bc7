package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/anyguard/anyguard/wgkey"
)

// Wire format, version 1. A record is
//
//	version  1 byte  = 1
//	flags    1 byte  bits 0-1 endpoint (0 none, 1 IPv4, 2 IPv6),
//	                 bit 2 client by index, bit 3 reserved (0),
//	                 bits 4-7 reason
//	client   32 bytes public key, or (bit 2) 4-byte client-set tag
//	         followed by a uvarint index into that set
//	version  uvarint, 1..MaxVersion
//	time     6 bytes wall milliseconds, then uvarint logical counter
//	owner    1 byte length 0..MaxOwnerLen, then that many bytes
//	endpoint 4 or 16 address bytes, then 2 port bytes (absent for none)
//
// Fixed-size integers are big endian; uvarints are those of encoding/binary
// and must be minimal, so every record has exactly one encoding.
// A batch is
//
//	version  1 byte = 1
//	count    uvarint
//	records  count records as above, nothing after them
const (
	wireVersion = 1

	flagEndpointMask = 0x03
	flagEndpoint4    = 0x01
	flagEndpoint6    = 0x02
	flagIndex        = 0x04
	flagReserved     = 0x08
	reasonShift      = 4

	// minRecordLen is the smallest possible encoded record: client by index
	// 0, no owner, no endpoint.
	minRecordLen = 2 + 4 + 1 + 1 + 6 + 1 + 1
)

// MaxOwnerLen is the longest owner (node) name a record may carry, the same
// bound the configuration puts on node names.
const MaxOwnerLen = 63

// MaxBatchSize bounds an encoded batch, below memberlist's 20 MB limit on
// push/pull state.
const MaxBatchSize = 16 << 20

// Errors that decoding and encoding return, wrapped (in a *DecodeError when
// decoding). Callers branch on them with errors.Is.
var (
	ErrTruncated     = errors.New("truncated")
	ErrTooLarge      = errors.New("too large")
	ErrBadVersion    = errors.New("unsupported format version")
	ErrBadOwner      = errors.New("invalid owner name: want 0 to 63 bytes of A-Z a-z 0-9 . _ -")
	ErrMalformed     = errors.New("malformed")
	ErrInvalidRecord = errors.New("invalid record")
	// ErrUnknownClientSet means a record names its client by an index into
	// a client set other than the decoder's (the tag differs, the decoder
	// has none, or the index is out of range): the two gateways do not
	// serve the same clients.
	ErrUnknownClientSet = errors.New("client index refers to a different client set")
)

// DecodeError describes input that DecodeRecord or DecodeBatch refused.
type DecodeError struct {
	Op     string // "decode record" or "decode batch"
	Field  string // the field being read, e.g. "owner"
	Offset int    // byte offset of the field in the input
	Err    error  // one of the sentinel errors above, possibly wrapped
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("%s: %s at byte %d: %v", e.Op, e.Field, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// ClientSet is the sorted set of configured client public keys, identical on
// every gateway that has the same configuration. It lets a record name its
// client by a small index instead of a 32-byte key. Its Tag identifies the
// set, so that a gateway whose set differs refuses indexed records instead of
// resolving them to the wrong client. A nil *ClientSet is an empty set.
type ClientSet struct {
	keys []wgkey.Key // sorted, unique, no zero key
	tag  uint32
}

// NewClientSet returns the set of the non-zero keys in ks, which it does not
// modify or retain.
func NewClientSet(ks []wgkey.Key) *ClientSet {
	s := &ClientSet{keys: make([]wgkey.Key, 0, len(ks))}
	for _, k := range ks {
		if !k.IsZero() {
			s.keys = append(s.keys, k)
		}
	}
	slices.SortFunc(s.keys, compareKeys)
	s.keys = slices.Compact(s.keys)
	h := sha256.New()
	h.Write([]byte("anyguard client index v1\n"))
	for _, k := range s.keys {
		h.Write(k[:])
	}
	s.tag = binary.BigEndian.Uint32(h.Sum(nil))
	return s
}

func compareKeys(a, b wgkey.Key) int { return bytes.Compare(a[:], b[:]) }

// Len returns the number of keys in s.
func (s *ClientSet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// Tag returns a 32-bit digest of the set that indexed records carry.
func (s *ClientSet) Tag() uint32 {
	if s == nil {
		return 0
	}
	return s.tag
}

// Index returns k's position in the sorted set.
func (s *ClientSet) Index(k wgkey.Key) (uint32, bool) {
	if s == nil {
		return 0, false
	}
	i, ok := slices.BinarySearchFunc(s.keys, k, compareKeys)
	return uint32(i), ok
}

// Key returns the key at index i.
func (s *ClientSet) Key(i uint32) (wgkey.Key, bool) {
	if s == nil || uint64(i) >= uint64(len(s.keys)) {
		return wgkey.Key{}, false
	}
	return s.keys[i], true
}

// Codec encodes and decodes records. The zero Codec always sends full client
// keys; with Clients set, it sends clients of that set as indexes (the
// record shrinks from 57 to about 31 bytes) and resolves indexed records
// whose tag matches. Records naming their client by key are always accepted.
// A Codec is a value and safe for concurrent use.
type Codec struct {
	Clients *ClientSet
}

// AppendRecord appends the encoding of r to dst. It fails only for a record
// that does not pass Validate; every record a Table holds does.
func AppendRecord(dst []byte, r Record) ([]byte, error) { return Codec{}.AppendRecord(dst, r) }

// DecodeRecord decodes one record from the start of b and returns it with
// the number of bytes it took.
func DecodeRecord(b []byte) (Record, int, error) { return Codec{}.DecodeRecord(b) }

// AppendBatch appends the encoding of rs as one batch to dst.
func AppendBatch(dst []byte, rs []Record) ([]byte, error) { return Codec{}.AppendBatch(dst, rs) }

// DecodeBatch decodes a batch that fills all of b.
func DecodeBatch(b []byte) ([]Record, error) { return Codec{}.DecodeBatch(b) }

// AppendRecord appends the encoding of r to dst. It fails, leaving dst as it
// was, only for a record that does not pass Validate.
func (c Codec) AppendRecord(dst []byte, r Record) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return dst, fmt.Errorf("encode record: %w", err)
	}
	return c.appendValid(dst, r), nil
}

func (c Codec) appendValid(dst []byte, r Record) []byte {
	flags := byte(r.Reason) << reasonShift
	addr := r.Endpoint.Addr()
	switch {
	case !addr.IsValid():
	case addr.Is4():
		flags |= flagEndpoint4
	default:
		flags |= flagEndpoint6
	}
	idx, byIndex := c.Clients.Index(r.Client)
	if byIndex {
		flags |= flagIndex
	}
	dst = append(dst, wireVersion, flags)
	if byIndex {
		dst = binary.BigEndian.AppendUint32(dst, c.Clients.tag)
		dst = binary.AppendUvarint(dst, uint64(idx))
	} else {
		dst = append(dst, r.Client[:]...)
	}
	dst = binary.AppendUvarint(dst, r.Version)
	w := uint64(r.Time) >> logicalBits
	dst = append(dst, byte(w>>40), byte(w>>32), byte(w>>24), byte(w>>16), byte(w>>8), byte(w))
	dst = binary.AppendUvarint(dst, uint64(r.Time.Logical()))
	dst = append(dst, byte(len(r.Owner)))
	dst = append(dst, r.Owner...)
	switch flags & flagEndpointMask {
	case flagEndpoint4:
		a := addr.As4()
		dst = append(dst, a[:]...)
		dst = binary.BigEndian.AppendUint16(dst, r.Endpoint.Port())
	case flagEndpoint6:
		a := addr.As16()
		dst = append(dst, a[:]...)
		dst = binary.BigEndian.AppendUint16(dst, r.Endpoint.Port())
	}
	return dst
}

// decoder reads fields from b and reports failures as *DecodeError.
type decoder struct {
	b   []byte
	off int
	op  string
	// names interns owner names while decoding a batch, where a few node
	// names repeat for every client.
	names map[string]string
}

const maxInternedNames = 1024

func (d *decoder) name(p []byte) string {
	if len(p) == 0 {
		return ""
	}
	if d.names == nil {
		return string(p)
	}
	if s, ok := d.names[string(p)]; ok {
		return s
	}
	s := string(p)
	if len(d.names) < maxInternedNames {
		d.names[s] = s
	}
	return s
}

func (d *decoder) fail(field string, off int, err error) error {
	return &DecodeError{Op: d.op, Field: field, Offset: off, Err: err}
}

func (d *decoder) next(n int, field string) ([]byte, error) {
	if len(d.b)-d.off < n {
		return nil, d.fail(field, d.off, ErrTruncated)
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p, nil
}

func (d *decoder) uvarint(field string) (uint64, error) {
	v, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		return 0, d.fail(field, d.off, ErrTruncated)
	case n < 0:
		return 0, d.fail(field, d.off, fmt.Errorf("%w: varint overflows 64 bits", ErrMalformed))
	case n > 1 && d.b[d.off+n-1] == 0:
		return 0, d.fail(field, d.off, fmt.Errorf("%w: varint not minimal", ErrMalformed))
	}
	d.off += n
	return v, nil
}

// DecodeRecord decodes one record from the start of b and returns it with
// the number of bytes it took. Errors are *DecodeError wrapping ErrTruncated,
// ErrBadVersion, ErrBadOwner, ErrMalformed, ErrInvalidRecord or
// ErrUnknownClientSet. A decoded record passes Validate.
func (c Codec) DecodeRecord(b []byte) (Record, int, error) {
	d := decoder{b: b, op: "decode record"}
	r, err := c.decode(&d)
	if err != nil {
		return Record{}, 0, err
	}
	return r, d.off, nil
}

func (c Codec) decode(d *decoder) (Record, error) {
	var r Record
	start := d.off
	p, err := d.next(2, "header")
	if err != nil {
		return r, err
	}
	if p[0] != wireVersion {
		return r, d.fail("version", start, fmt.Errorf("%w %d (want %d)", ErrBadVersion, p[0], wireVersion))
	}
	flags := p[1]
	if flags&flagReserved != 0 || flags&flagEndpointMask == flagEndpointMask {
		return r, d.fail("flags", start+1, fmt.Errorf("%w: flags %#02x", ErrMalformed, flags))
	}
	r.Reason = Reason(flags >> reasonShift)

	off := d.off
	if flags&flagIndex != 0 {
		p, err := d.next(4, "client set tag")
		if err != nil {
			return r, err
		}
		tag := binary.BigEndian.Uint32(p)
		off := d.off
		i, err := d.uvarint("client index")
		if err != nil {
			return r, err
		}
		if i > 1<<32-1 {
			return r, d.fail("client index", off, fmt.Errorf("%w: index %d", ErrMalformed, i))
		}
		if c.Clients == nil || tag != c.Clients.tag {
			return r, d.fail("client set tag", off-4, fmt.Errorf("%w: tag %08x, ours %08x", ErrUnknownClientSet, tag, c.Clients.Tag()))
		}
		k, ok := c.Clients.Key(uint32(i))
		if !ok {
			return r, d.fail("client index", off, fmt.Errorf("%w: index %d of %d", ErrUnknownClientSet, i, c.Clients.Len()))
		}
		r.Client = k
	} else {
		p, err := d.next(wgkey.Len, "client")
		if err != nil {
			return r, err
		}
		r.Client = wgkey.Key(p)
		if r.Client.IsZero() {
			return r, d.fail("client", off, fmt.Errorf("%w: zero client key", ErrInvalidRecord))
		}
	}

	off = d.off
	if r.Version, err = d.uvarint("version"); err != nil {
		return r, err
	}
	if r.Version == 0 || r.Version > MaxVersion {
		return r, d.fail("version", off, fmt.Errorf("%w: version %d out of range 1..%d", ErrInvalidRecord, r.Version, uint64(MaxVersion)))
	}

	if p, err = d.next(6, "time"); err != nil {
		return r, err
	}
	wall := uint64(p[0])<<40 | uint64(p[1])<<32 | uint64(p[2])<<24 | uint64(p[3])<<16 | uint64(p[4])<<8 | uint64(p[5])
	off = d.off
	l, err := d.uvarint("logical time")
	if err != nil {
		return r, err
	}
	if l > 1<<logicalBits-1 {
		return r, d.fail("logical time", off, fmt.Errorf("%w: logical counter %d", ErrMalformed, l))
	}
	r.Time = Timestamp(wall<<logicalBits | l)

	off = d.off
	if p, err = d.next(1, "owner length"); err != nil {
		return r, err
	}
	if n := int(p[0]); n > MaxOwnerLen {
		return r, d.fail("owner length", off, fmt.Errorf("%w: %d bytes", ErrBadOwner, n))
	}
	off = d.off
	if p, err = d.next(int(p[0]), "owner"); err != nil {
		return r, err
	}
	if len(p) > 0 && !validNameBytes(p) {
		return r, d.fail("owner", off, ErrBadOwner)
	}
	r.Owner = d.name(p)

	switch flags & flagEndpointMask {
	case flagEndpoint4:
		if p, err = d.next(4+2, "endpoint"); err != nil {
			return r, err
		}
		r.Endpoint = netip.AddrPortFrom(netip.AddrFrom4([4]byte(p)), binary.BigEndian.Uint16(p[4:]))
	case flagEndpoint6:
		if p, err = d.next(16+2, "endpoint"); err != nil {
			return r, err
		}
		r.Endpoint = netip.AddrPortFrom(netip.AddrFrom16([16]byte(p)), binary.BigEndian.Uint16(p[16:]))
	}
	return r, nil
}

// AppendBatch appends the encoding of rs as one batch to dst. It fails,
// leaving dst as it was, if a record does not pass Validate or the batch
// would exceed MaxBatchSize (ErrTooLarge).
func (c Codec) AppendBatch(dst []byte, rs []Record) ([]byte, error) {
	start := len(dst)
	dst = append(dst, wireVersion)
	dst = binary.AppendUvarint(dst, uint64(len(rs)))
	for i, r := range rs {
		if err := r.Validate(); err != nil {
			return dst[:start], fmt.Errorf("encode batch: record %d: %w", i, err)
		}
		dst = c.appendValid(dst, r)
		if len(dst)-start > MaxBatchSize {
			return dst[:start], fmt.Errorf("encode batch of %d records: %w: more than %d bytes", len(rs), ErrTooLarge, MaxBatchSize)
		}
	}
	return dst, nil
}

// DecodeBatch decodes a batch that fills all of b. Errors are as for
// DecodeRecord, plus ErrTooLarge for input over MaxBatchSize and
// ErrMalformed for bytes after the last record; the DecodeError's Field
// names the failing record's index.
func (c Codec) DecodeBatch(b []byte) ([]Record, error) {
	d := decoder{b: b, op: "decode batch", names: make(map[string]string)}
	if len(b) > MaxBatchSize {
		return nil, d.fail("batch", 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxBatchSize))
	}
	p, err := d.next(1, "version")
	if err != nil {
		return nil, err
	}
	if p[0] != wireVersion {
		return nil, d.fail("version", 0, fmt.Errorf("%w %d (want %d)", ErrBadVersion, p[0], wireVersion))
	}
	off := d.off
	n, err := d.uvarint("count")
	if err != nil {
		return nil, err
	}
	if n > uint64(len(b)-d.off)/minRecordLen {
		return nil, d.fail("count", off, fmt.Errorf("%w: %d records cannot fit in %d bytes", ErrTruncated, n, len(b)-d.off))
	}
	rs := make([]Record, 0, n)
	for i := range n {
		r, err := c.decode(&d)
		if err != nil {
			var de *DecodeError
			if errors.As(err, &de) {
				de.Field = fmt.Sprintf("record %d: %s", i, de.Field)
			}
			return nil, err
		}
		rs = append(rs, r)
	}
	if d.off != len(b) {
		return nil, d.fail("end", d.off, fmt.Errorf("%w: %d bytes after the last record", ErrMalformed, len(b)-d.off))
	}
	return rs, nil
}
