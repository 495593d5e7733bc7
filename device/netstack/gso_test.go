package netstack

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// superSegment builds what gVisor's TCP hands a HostGSO link endpoint: IP
// and TCP headers whose checksum field holds only the pseudo-header sum,
// and a payload spread over several views.
func superSegment(t *testing.T, v6 bool, payload []byte, mss int, flags header.TCPFlags) *stack.PacketBuffer {
	t.Helper()
	var data buffer.Buffer
	for rest := payload; len(rest) > 0; {
		k := min(len(rest), 1000) // views smaller than an MSS, so segments straddle them
		data.Append(buffer.NewViewWithData(rest[:k]))
		rest = rest[k:]
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: 80, Payload: data})
	opts := []byte{1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8} // NOP NOP timestamps
	tcp := header.TCP(pkt.TransportHeader().Push(header.TCPMinimumSize + len(opts)))
	tcp.Encode(&header.TCPFields{SrcPort: 5201, DstPort: 40000, SeqNum: 0xfffff000, AckNum: 7,
		DataOffset: uint8(len(tcp)), Flags: flags, WindowSize: 1000})
	copy(tcp[header.TCPMinimumSize:], opts)
	g := stack.GSO{NeedsCsum: true, CsumOffset: header.TCPChecksumOffset, MSS: uint16(mss)}
	var src, dst tcpip.Address
	if v6 {
		src, dst = tcpip.AddrFrom16([16]byte{0xfd, 1, 15: 0x10}), tcpip.AddrFrom16([16]byte{0xfd, 0x99, 15: 2})
		ip := header.IPv6(pkt.NetworkHeader().Push(header.IPv6MinimumSize))
		ip.Encode(&header.IPv6Fields{PayloadLength: uint16(len(tcp) + len(payload)), TransportProtocol: header.TCPProtocolNumber,
			HopLimit: 64, SrcAddr: src, DstAddr: dst})
		g.Type, g.L3HdrLen = stack.GSOTCPv6, header.IPv6MinimumSize
	} else {
		src, dst = tcpip.AddrFrom4([4]byte{10, 1, 0, 10}), tcpip.AddrFrom4([4]byte{10, 99, 0, 2})
		ip := header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize))
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + len(tcp) + len(payload)), ID: 0xfffe,
			Flags: header.IPv4FlagDontFragment, TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
		ip.SetChecksum(^ip.CalculateChecksum())
		g.Type, g.L3HdrLen = stack.GSOTCPv4, header.IPv4MinimumSize
	}
	tcp.SetChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(tcp)+len(payload))))
	pkt.GSOOptions = g
	return pkt
}

func TestGSOSegments(t *testing.T) {
	for _, tc := range []struct {
		name    string
		v6      bool
		size    int
		mss     int
		flags   header.TCPFlags
		wantSeg int
	}{
		{"v4 many", false, 32000, 1368, header.TCPFlagAck | header.TCPFlagPsh | header.TCPFlagFin | header.TCPFlagCwr, 24},
		{"v4 exact", false, 2 * 1368, 1368, header.TCPFlagAck, 2},
		{"v4 one", false, 100, 1368, header.TCPFlagAck | header.TCPFlagPsh, 1},
		{"v4 empty", false, 0, 1368, header.TCPFlagAck, 1},
		{"v6 many", true, 30000, 1348, header.TCPFlagAck | header.TCPFlagPsh, 23},
		{"v6 tiny mss", true, 5000, 88, header.TCPFlagAck, 57},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := make([]byte, tc.size)
			for i := range payload {
				payload[i] = byte(rand.N(256))
			}
			pkt := superSegment(t, tc.v6, payload, tc.mss, tc.flags)
			defer pkt.DecRef()
			if got := gsoSegments(pkt); got != tc.wantSeg {
				t.Fatalf("gsoSegments = %d, want %d", got, tc.wantSeg)
			}
			b := emitBatch{mtu: 1420}
			if !b.appendPacket(pkt) {
				t.Fatal("appendPacket refused a valid super-segment")
			}
			if len(b.out) != tc.wantSeg {
				t.Fatalf("%d packets, want %d", len(b.out), tc.wantSeg)
			}
			var got []byte
			for i, o := range b.out {
				p := o[netstackEmitOffset:]
				var ipLen int
				var src, dst tcpip.Address
				if tc.v6 {
					ip := header.IPv6(p)
					if int(ip.PayloadLength())+header.IPv6MinimumSize != len(p) {
						t.Fatalf("seg %d: payload length %d, packet %d", i, ip.PayloadLength(), len(p))
					}
					ipLen, src, dst = header.IPv6MinimumSize, ip.SourceAddress(), ip.DestinationAddress()
				} else {
					ip := header.IPv4(p)
					if !ip.IsValid(len(p)) || !ip.IsChecksumValid() || int(ip.TotalLength()) != len(p) {
						t.Fatalf("seg %d: bad IPv4 header % x", i, p[:20])
					}
					if want := uint16(0xfffe + i); ip.ID() != want {
						t.Errorf("seg %d: ID %#x, want %#x", i, ip.ID(), want)
					}
					ipLen, src, dst = header.IPv4MinimumSize, ip.SourceAddress(), ip.DestinationAddress()
				}
				tcp := header.TCP(p[ipLen:])
				data := p[ipLen+int(tcp.DataOffset()):]
				if !tcp.IsChecksumValid(src, dst, checksum.Checksum(data, 0), uint16(len(data))) {
					t.Fatalf("seg %d: bad TCP checksum", i)
				}
				if want := uint32(0xfffff000) + uint32(len(got)); tcp.SequenceNumber() != want {
					t.Errorf("seg %d: seq %#x, want %#x", i, tcp.SequenceNumber(), want)
				}
				if i < len(b.out)-1 && len(data) != tc.mss {
					t.Errorf("seg %d: %d bytes, want MSS %d", i, len(data), tc.mss)
				}
				want := tc.flags
				if i < len(b.out)-1 {
					want &^= header.TCPFlagFin | header.TCPFlagPsh
				}
				if i > 0 {
					want &^= header.TCPFlagCwr
				}
				if tcp.Flags() != want {
					t.Errorf("seg %d: flags %v, want %v", i, tcp.Flags(), want)
				}
				got = append(got, data...)
			}
			if !bytes.Equal(got, payload) {
				t.Fatal("segments' payload differs from the super-segment's")
			}
		})
	}
}

func TestGSOBadHeaders(t *testing.T) {
	tcp := make([]byte, 20)
	tcp[12] = 5 << 4
	ip4 := make([]byte, 20)
	ip4[0] = 0x45
	ip6 := make([]byte, 40)
	ip6[0] = 0x60
	if !gsoHeadersOK(ip4, tcp) || !gsoHeadersOK(ip6, tcp) {
		t.Fatal("valid headers refused")
	}
	badTCP := append([]byte(nil), tcp...)
	badTCP[12] = 8 << 4 // says 32 bytes, has 20
	for name, h := range map[string][2][]byte{
		"short tcp":  {ip4, tcp[:19]},
		"tcp offset": {ip4, badTCP},
		"ipv4 ihl":   {append([]byte{0x46}, ip4[1:]...), tcp},
		"short ipv4": {ip4[:19], tcp},
		"short ipv6": {ip6[:39], tcp},
		"version 5":  {append([]byte{0x55}, ip4[1:]...), tcp},
		"empty ip":   {nil, tcp},
	} {
		if gsoHeadersOK(h[0], h[1]) {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestGSOEmitNoAllocs guards the emit loop's cutting of super-segments.
func TestGSOEmitNoAllocs(t *testing.T) {
	payload := make([]byte, 32000)
	pkt := superSegment(t, false, payload, 1368, header.TCPFlagAck)
	defer pkt.DecRef()
	b := emitBatch{mtu: 1420}
	b.appendPacket(pkt) // grows the buffers once
	allocs := testing.AllocsPerRun(100, func() {
		b.out = b.out[:0]
		b.appendPacket(pkt)
	})
	if allocs != 0 {
		t.Errorf("%v allocs per super-segment, want 0", allocs)
	}
}
