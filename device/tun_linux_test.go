package device

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/anyguard/anyguard/internal/e2etest"
	"github.com/anyguard/anyguard/router/routertest"
)

// inNewNetns runs f on a locked OS thread inside a fresh network namespace,
// so the test's TUN and traffic never touch the host's network.
func inNewNetns(t *testing.T, f func()) {
	t.Helper()
	e2etest.RequireRoot(t, "creating a network namespace and a TUN")
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		orig, err := netns.Get()
		if err != nil {
			t.Errorf("get netns: %v", err)
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			t.Errorf("new netns: %v", err)
			return
		}
		defer ns.Close()
		f()
	}()
	<-done
}

func TestTUNMultiQueueRoundTrip(t *testing.T) {
	inNewNetns(t, func() {
		var mu sync.Mutex
		var got [][]byte
		arrived := make(chan struct{}, 1)
		tn, err := OpenTUN(TUNConfig{
			Name:      "agtest0",
			Queues:    2,
			MTU:       1420,
			Addresses: []netip.Prefix{netip.MustParsePrefix("10.77.0.1/24")},
			Routes:    []netip.Prefix{netip.MustParsePrefix("10.78.0.0/24")},
		}, func(bufs [][]byte, off int) {
			mu.Lock()
			for _, b := range bufs {
				got = append(got, append([]byte(nil), b[off:]...))
			}
			mu.Unlock()
			select {
			case arrived <- struct{}{}:
			default:
			}
		})
		if err != nil {
			t.Errorf("OpenTUN: %v", err)
			return
		}
		defer tn.Close()
		link, err := netlink.LinkByName("agtest0")
		if err != nil {
			t.Errorf("link: %v", err)
			return
		}
		if link.Attrs().MTU != 1420 || link.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("link MTU %d flags %v", link.Attrs().MTU, link.Attrs().Flags)
		}
		if _, err := OpenTUN(TUNConfig{Name: "agtest0", Queues: 1, MTU: 1420}, func([][]byte, int) {}); err == nil {
			t.Error("second OpenTUN with the same name succeeded; it must refuse to attach to a running interface")
		}

		// Kernel → TUN: a datagram to an address routed into the TUN.
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 77, 0, 1), Port: 4000})
		if err != nil {
			t.Errorf("listen: %v", err)
			return
		}
		defer c.Close()
		if _, err := c.WriteToUDP([]byte("to-tun"), &net.UDPAddr{IP: net.IPv4(10, 78, 0, 5), Port: 9}); err != nil {
			t.Errorf("send: %v", err)
			return
		}
		// The kernel may send other packets first (IPv6 router
		// solicitations and the like): wait for ours.
		deadline := time.After(5 * time.Second)
		for found := false; !found; {
			select {
			case <-arrived:
			case <-time.After(50 * time.Millisecond):
			case <-deadline:
				mu.Lock()
				t.Errorf("datagram not read from the TUN; got %d other packets", len(got))
				mu.Unlock()
				return
			}
			mu.Lock()
			for _, p := range got {
				if len(p) >= 34 && bytes.HasSuffix(p, []byte("to-tun")) {
					found = true
				}
			}
			mu.Unlock()
		}

		// TUN → kernel: a UDP packet from 10.78.0.5 to the listening socket.
		pkt := routertest.Packet(16, netip.MustParseAddr("10.78.0.5"), netip.MustParseAddr("10.77.0.1"), 64, []byte("from-tun"))
		setUDPPort(pkt[16:], 9, 4000)
		if err := tn.Deliver([][]byte{pkt}, 16); err != nil {
			t.Errorf("Deliver: %v", err)
			return
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, from, err := c.ReadFromUDP(buf)
		if err != nil || string(buf[:n]) != "from-tun" || !from.IP.Equal(net.IPv4(10, 78, 0, 5)) {
			t.Errorf("socket got %q from %v, err %v", buf[:n], from, err)
		}
	})
}

// setUDPPort rewrites the UDP ports of an IPv4 packet built by routertest
// and clears the UDP checksum (optional in IPv4).
func setUDPPort(p []byte, src, dst uint16) {
	p[20], p[21] = byte(src>>8), byte(src)
	p[22], p[23] = byte(dst>>8), byte(dst)
	p[26], p[27] = 0, 0
}

func TestOpenTUNUnprivilegedError(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs only unprivileged: checks the error a user without CAP_NET_ADMIN gets (root has the capability)")
	}
	_, err := OpenTUN(TUNConfig{Name: "agtest1", Queues: 1, MTU: 1420}, func([][]byte, int) {})
	if err == nil {
		t.Fatal("OpenTUN succeeded without privileges")
	}
}
