//go:build linux

package e2e

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// captureInitiation does what an attacker on the path does with tcpdump:
// it opens a packet socket in ns (a namespace the client's datagrams
// cross) and returns a channel that receives a copy of the first
// WireGuard handshake initiation (type 1, 148 bytes) sent from src to
// dst. Capturing stops then, or when t ends.
func captureInitiation(t testing.TB, ns *netns, src netip.Addr, dst netip.AddrPort) <-chan []byte {
	t.Helper()
	htons := func(v uint16) uint16 { return binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, v)) }
	var fd int
	err := ns.Do(func() error {
		var err error
		// ETH_P_ALL: the bridge ports' frames reach only those taps.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		t.Fatalf("packet socket in %s: %v", ns.Name, err)
	}
	got := make(chan []byte, 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer unix.Close(fd)
		buf := make([]byte, 2048)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // the receive timeout: look at stop again
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Protocol != htons(unix.ETH_P_IP) {
				continue
			}
			if p, ok := initiationIn(buf[:n], src, dst); ok {
				got <- append([]byte(nil), p...)
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
	return got
}

// initiationIn returns the UDP payload of the IPv4 packet pkt when it goes
// from src to dst and is a WireGuard handshake initiation.
func initiationIn(pkt []byte, src netip.Addr, dst netip.AddrPort) ([]byte, bool) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 || pkt[9] != unix.IPPROTO_UDP {
		return nil, false
	}
	ihl := int(pkt[0]&0x0f) * 4
	if ihl < 20 || len(pkt) < ihl+8 {
		return nil, false
	}
	s, _ := netip.AddrFromSlice(pkt[12:16])
	d, _ := netip.AddrFromSlice(pkt[16:20])
	udp := pkt[ihl:]
	if s != src || d != dst.Addr() || binary.BigEndian.Uint16(udp[2:4]) != dst.Port() {
		return nil, false
	}
	p := udp[8:]
	if len(p) != wgInitiationSize || p[0] != 1 || p[1] != 0 || p[2] != 0 || p[3] != 0 {
		return nil, false
	}
	return p, true
}
