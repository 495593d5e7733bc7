package netstack

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/anyguard/anyguard/packet"
)

// l4Packet builds an IP packet from src to dst carrying an L4 message of
// protocol proto with a correct checksum at csumOff (-1: none).
func l4Packet(src, dst netip.Addr, proto uint8, l4 []byte, csumOff int) []byte {
	var p []byte
	if src.Is4() {
		p = make([]byte, 20, 20+len(l4))
		p[0] = 0x45
		binary.BigEndian.PutUint16(p[2:], uint16(20+len(l4)))
		p[8], p[9] = 64, proto
		s, d := src.As4(), dst.As4()
		copy(p[12:], s[:])
		copy(p[16:], d[:])
		binary.BigEndian.PutUint16(p[10:], packet.Checksum(p[:20]))
	} else {
		p = make([]byte, 40, 40+len(l4))
		p[0] = 0x60
		binary.BigEndian.PutUint16(p[4:], uint16(len(l4)))
		p[6], p[7] = proto, 64
		s, d := src.As16(), dst.As16()
		copy(p[8:], s[:])
		copy(p[24:], d[:])
	}
	hl := len(p)
	p = append(p, l4...)
	if csumOff >= 0 {
		m := p[hl:]
		var init uint16
		if proto != packet.ProtoICMPv4 {
			init = packet.PseudoHeaderSum(proto, src, dst, len(m))
		}
		binary.BigEndian.PutUint16(m[csumOff:], ^packet.Sum(m, init))
	}
	return p
}

func TestChecksumsValid(t *testing.T) {
	tcp := make([]byte, 20+33)
	tcp[12] = 5 << 4
	udp := make([]byte, 8+7)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	icmp := []byte{8, 0, 0, 0, 0, 1, 0, 2, 'x'}
	icmp6 := []byte{128, 0, 0, 0, 0, 1, 0, 2, 'x'}
	type pk struct {
		name string
		p    []byte
	}
	var good []pk
	for _, fam := range [][2]netip.Addr{{clientV4, servedV4}, {clientV6, servedV6}} {
		good = append(good,
			pk{"tcp " + fam[0].String(), l4Packet(fam[0], fam[1], packet.ProtoTCP, tcp, 16)},
			pk{"udp " + fam[0].String(), l4Packet(fam[0], fam[1], packet.ProtoUDP, udp, 6)})
	}
	good = append(good,
		pk{"icmpv4", l4Packet(clientV4, servedV4, packet.ProtoICMPv4, icmp, 2)},
		pk{"icmpv6", l4Packet(clientV6, servedV6, packet.ProtoICMPv6, icmp6, 2)},
		pk{"udp4 no checksum", l4Packet(clientV4, servedV4, packet.ProtoUDP, udp, -1)},
		pk{"short tcp, left to the stack", l4Packet(clientV4, servedV4, packet.ProtoTCP, tcp[:10], -1)},
		pk{"other protocol", l4Packet(clientV4, servedV4, 47, []byte{1, 2, 3}, -1)})
	for _, g := range good {
		h, err := packet.Parse(g.p)
		if err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
		if !checksumsValid(&h, g.p) {
			t.Errorf("%s: valid packet refused", g.name)
		}
		if g.name == "udp4 no checksum" || g.name == "short tcp, left to the stack" || g.name == "other protocol" {
			continue
		}
		// Any flipped bit after the IP addresses (header, pseudo-header
		// length or payload) must be caught.
		for _, i := range []int{h.HeaderLen, h.HeaderLen + 3, len(g.p) - 1} {
			bad := append([]byte(nil), g.p...)
			bad[i] ^= 0x10
			hb, _ := packet.Parse(bad)
			if checksumsValid(&hb, bad) {
				t.Errorf("%s: byte %d flipped, accepted", g.name, i)
			}
		}
	}
	bad := l4Packet(clientV4, servedV4, packet.ProtoTCP, tcp, 16)
	bad[8]-- // TTL, IPv4 header checksum not updated
	if h, _ := packet.Parse(bad); checksumsValid(&h, bad) {
		t.Error("bad IPv4 header checksum accepted")
	}
	v6udp := l4Packet(clientV6, servedV6, packet.ProtoUDP, udp, -1)
	if h, _ := packet.Parse(v6udp); checksumsValid(&h, v6udp) {
		t.Error("IPv6 UDP without a checksum accepted")
	}
}

// TestNetstackBadChecksumDropped: a SYN with a wrong TCP checksum never
// reaches gVisor's TCP (which trusts the link's verification) and is
// counted.
func TestNetstackBadChecksumDropped(t *testing.T) {
	e := newTestEnv(t, nil)
	syn := make([]byte, 20)
	binary.BigEndian.PutUint16(syn[0:], 40000)
	binary.BigEndian.PutUint16(syn[2:], 80)
	syn[12], syn[13] = 5<<4, 0x02
	binary.BigEndian.PutUint16(syn[14:], 65535)
	p := l4Packet(clientV4, servedV4, packet.ProtoTCP, syn, 16)
	p[len(p)-1] ^= 1 // urgent pointer: checksum now wrong
	before := e.ns.Stats().Drops[DropStack]
	tcpIn := e.ns.stack.Stats().TCP.ValidSegmentsReceived.Value() + e.ns.stack.Stats().TCP.InvalidSegmentsReceived.Value()
	if err := e.ns.Deliver([][]byte{p}, 0); err != nil {
		t.Fatal(err)
	}
	if got := e.ns.Stats().Drops[DropStack] - before; got != 1 {
		t.Errorf("stack drops +%d, want +1", got)
	}
	// Deliver hands packets to the stack synchronously.
	if n := e.ns.stack.Stats().TCP.ValidSegmentsReceived.Value() + e.ns.stack.Stats().TCP.InvalidSegmentsReceived.Value(); n != tcpIn {
		t.Errorf("TCP saw %d segments", n-tcpIn)
	}
	if e.dialed.Load() != 0 {
		t.Error("dialed for a SYN with a bad checksum")
	}
}

// TestNetstackGROMerges: an upload reaches gVisor's TCP in fewer segments
// than the packets delivered, i.e. GRO merged them, and arrives intact.
func TestNetstackGROMerges(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	dst := netip.AddrPortFrom(servedV4, 5201)
	e := newTestEnv(t, func(e *testEnv, cfg *Config) {
		cfg.Dial = e.dialMap(map[netip.AddrPort]string{dst: ln.Addr().String()})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := e.dialTCP(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	const size = 8 << 20
	buf := make([]byte, 64<<10)
	for sent := 0; sent < size; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	if n := <-got; n != size {
		t.Fatalf("host received %d bytes, want %d", n, size)
	}
	pkts := e.ns.Stats().PacketsIn
	segs := e.ns.stack.Stats().TCP.ValidSegmentsReceived.Value()
	t.Logf("%d packets delivered, %d segments reached TCP", pkts, segs)
	if segs*4 > pkts*3 {
		t.Errorf("%d segments for %d packets: GRO merged less than a quarter", segs, pkts)
	}
}
