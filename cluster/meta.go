package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/anyguard/anyguard/wgkey"
)

// State is a gateway's readiness as it tells the others.
type State uint8

const (
	StateStarting State = iota // not yet carrying traffic
	StateReady                 // carrying traffic
	StateDraining              // shutting down: take no new work from it
)

func (s State) String() string {
	switch s {
	case StateStarting:
		return "starting"
	case StateReady:
		return "ready"
	case StateDraining:
		return "draining"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Meta is what a gateway tells the others about itself, as memberlist node
// metadata (at most MaxMetaSize bytes encoded).
type Meta struct {
	Region           string
	State            State
	BackboneKey      wgkey.Key      // public key of its backbone device
	BackboneEndpoint netip.AddrPort // where its backbone device listens
	BackboneAddr     netip.Addr     // its IPv4 address inside the backbone
	Prefixes         []netip.Prefix // private networks it serves
	ClientDigest     string         // digest of its client set (hex prefix)
	Version          string         // software version
	// ClientTag identifies the client set behind compact (indexed)
	// ownership records; set by the Cluster, not the caller.
	ClientTag uint32
}

// MaxMetaSize is memberlist's limit on node metadata; it panics beyond it.
const MaxMetaSize = 512

const metaVersion = 1

// ErrMetaTooLarge is returned when the metadata (mostly the prefix list)
// does not fit memberlist's 512 bytes.
var ErrMetaTooLarge = errors.New("gateway metadata exceeds 512 bytes: too many served prefixes")

// ErrBadMeta is returned for metadata that does not decode.
var ErrBadMeta = errors.New("malformed gateway metadata")

// Encode returns the wire form of m.
func (m Meta) Encode() ([]byte, error) {
	b := make([]byte, 0, 128)
	b = append(b, metaVersion, byte(m.State))
	b = appendString(b, m.Region)
	b = append(b, m.BackboneKey[:]...)
	b = appendAddrPort(b, m.BackboneEndpoint)
	b = appendAddr(b, m.BackboneAddr)
	if len(m.Prefixes) > 255 {
		return nil, ErrMetaTooLarge
	}
	b = append(b, byte(len(m.Prefixes)))
	for _, p := range m.Prefixes {
		b = appendAddr(b, p.Addr())
		b = append(b, byte(p.Bits()))
	}
	b = appendString(b, m.ClientDigest)
	b = appendString(b, m.Version)
	b = binary.BigEndian.AppendUint32(b, m.ClientTag)
	if len(b) > MaxMetaSize {
		return nil, ErrMetaTooLarge
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	if len(s) > 255 {
		s = s[:255]
	}
	b = append(b, byte(len(s)))
	return append(b, s...)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	switch {
	case a.Is4():
		v := a.As4()
		return append(append(b, 4), v[:]...)
	case a.Is6():
		v := a.As16()
		return append(append(b, 6), v[:]...)
	}
	return append(b, 0)
}

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	b = appendAddr(b, ap.Addr())
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

// DecodeMeta parses metadata written by Encode.
func DecodeMeta(b []byte) (Meta, error) {
	d := metaDecoder{b: b}
	var m Meta
	if d.byte() != metaVersion {
		return Meta{}, fmt.Errorf("%w: unknown version", ErrBadMeta)
	}
	m.State = State(d.byte())
	m.Region = d.string()
	copy(m.BackboneKey[:], d.take(wgkey.Len))
	m.BackboneEndpoint = netip.AddrPortFrom(d.addr(), d.uint16())
	m.BackboneAddr = d.addr()
	n := int(d.byte())
	for range n {
		a := d.addr()
		bits := int(d.byte())
		p, err := a.Prefix(bits)
		if err != nil || !a.IsValid() {
			d.err = true
			break
		}
		m.Prefixes = append(m.Prefixes, p)
	}
	m.ClientDigest = d.string()
	m.Version = d.string()
	m.ClientTag = binary.BigEndian.Uint32(d.take(4))
	if d.err {
		return Meta{}, fmt.Errorf("%w: truncated or invalid", ErrBadMeta)
	}
	if m.State > StateDraining {
		return Meta{}, fmt.Errorf("%w: state %d", ErrBadMeta, m.State)
	}
	return m, nil
}

type metaDecoder struct {
	b   []byte
	err bool
}

func (d *metaDecoder) take(n int) []byte {
	if d.err || len(d.b) < n {
		d.err = true
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *metaDecoder) byte() byte     { return d.take(1)[0] }
func (d *metaDecoder) uint16() uint16 { return binary.BigEndian.Uint16(d.take(2)) }
func (d *metaDecoder) string() string { return string(d.take(int(d.byte()))) }

func (d *metaDecoder) addr() netip.Addr {
	switch d.byte() {
	case 0:
		return netip.Addr{}
	case 4:
		return netip.AddrFrom4([4]byte(d.take(4)))
	case 6:
		return netip.AddrFrom16([16]byte(d.take(16)))
	}
	d.err = true
	return netip.Addr{}
}
