package failover

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// The traffic: IPv4/UDP packets whose payload names the client they belong
// to, so that every receiver can verify it got its own packet (a packet
// for another client is counted as misdelivered, never as an answer).
//
//	offset  size
//	0       4    magic "AGFO"
//	4       1    kind (kindEcho … kindPong)
//	5       4    client index
//	9       4    sequence number
//	13      8    send time, ns since the run's epoch
const (
	payloadLen = 21
	ipHdrLen   = 20
	udpHdrLen  = 8
	packetLen  = ipHdrLen + udpHdrLen + payloadLen

	echoPort = 7 // the private echo service's UDP port
	pingPort = 9 // the port the private pinger sends to on each client
)

// Kinds of packets.
const (
	kindEcho  byte = 1 // client → service
	kindReply byte = 2 // service → client, answering kindEcho
	kindPing  byte = 3 // pinger → client
	kindPong  byte = 4 // client → pinger, answering kindPing
)

var magic = [4]byte{'A', 'G', 'F', 'O'}

// msg is a parsed packet of the harness's traffic.
type msg struct {
	src, dst netip.Addr
	kind     byte
	client   uint32
	seq      uint32
	sent     int64
}

// Errors of parseMsg; the harness counts, never trusts, what fails.
var (
	errShort   = errors.New("packet too short")
	errNotUDP4 = errors.New("not IPv4/UDP")
	errMagic   = errors.New("not the harness's payload")
)

// parseMsg parses an IPv4/UDP packet of the harness's traffic.
func parseMsg(p []byte) (msg, error) {
	if len(p) < packetLen {
		return msg{}, errShort
	}
	if p[0] != 0x45 || p[9] != 17 {
		return msg{}, errNotUDP4
	}
	total := int(binary.BigEndian.Uint16(p[2:4]))
	if total < packetLen || total > len(p) {
		return msg{}, errShort
	}
	pl := p[ipHdrLen+udpHdrLen:]
	if [4]byte(pl[0:4]) != magic || pl[4] < kindEcho || pl[4] > kindPong {
		return msg{}, errMagic
	}
	return msg{
		src:    netip.AddrFrom4([4]byte(p[12:16])),
		dst:    netip.AddrFrom4([4]byte(p[16:20])),
		kind:   pl[4],
		client: binary.BigEndian.Uint32(pl[5:9]),
		seq:    binary.BigEndian.Uint32(pl[9:13]),
		sent:   int64(binary.BigEndian.Uint64(pl[13:21])),
	}, nil
}

// putMsg writes m as an IPv4/UDP packet into b (len ≥ packetLen) and
// returns the packet.
func putMsg(b []byte, m msg) []byte {
	p := b[:packetLen]
	sport, dport := uint16(echoPort), uint16(pingPort)
	switch m.kind {
	case kindEcho:
		sport, dport = pingPort, echoPort
	case kindPong:
		sport, dport = pingPort, echoPort
	}
	p[0], p[1] = 0x45, 0
	binary.BigEndian.PutUint16(p[2:4], packetLen)
	binary.BigEndian.PutUint32(p[4:8], 0)
	p[8], p[9] = 64, 17
	p[10], p[11] = 0, 0
	s, d := m.src.As4(), m.dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint16(p[10:12], ipChecksum(p[:ipHdrLen]))
	u := p[ipHdrLen:]
	binary.BigEndian.PutUint16(u[0:2], sport)
	binary.BigEndian.PutUint16(u[2:4], dport)
	binary.BigEndian.PutUint16(u[4:6], udpHdrLen+payloadLen)
	binary.BigEndian.PutUint16(u[6:8], 0) // no UDP checksum (allowed over IPv4)
	pl := u[udpHdrLen:]
	copy(pl[0:4], magic[:])
	pl[4] = m.kind
	binary.BigEndian.PutUint32(pl[5:9], m.client)
	binary.BigEndian.PutUint32(pl[9:13], m.seq)
	binary.BigEndian.PutUint64(pl[13:21], uint64(m.sent))
	return p
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
