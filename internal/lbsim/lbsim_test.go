package lbsim

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// echoBackend answers every datagram with its name prepended.
func echoBackend(t *testing.T, name string) netip.AddrPort {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(append([]byte(name+":"), buf[:n]...), from)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func roundTrip(t *testing.T, c *net.UDPConn, msg string) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no reply through the load balancer: %v", err)
	}
	return string(buf[:n])
}

func TestStickyMoveAndHealth(t *testing.T) {
	a, b := echoBackend(t, "a"), echoBackend(t, "b")
	lb, err := New("127.0.0.1:0", []netip.AddrPort{a, b})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(lb.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := roundTrip(t, c, "x")
	for range 5 {
		if got := roundTrip(t, c, "x"); got != first {
			t.Fatalf("flow not sticky: %q then %q", first, got)
		}
	}
	client := c.LocalAddr().(*net.UDPAddr).AddrPort()
	cur, ok := lb.Backend(client)
	if !ok {
		t.Fatal("no flow recorded")
	}
	lb.Move(client, 1-cur)
	if got := roundTrip(t, c, "x"); got == first {
		t.Fatalf("Move did not move the flow: still %q", got)
	}
	lb.SetHealthy(1-cur, false)
	if got := roundTrip(t, c, "x"); got != first {
		t.Fatalf("unhealthy backend kept the flow: %q", got)
	}
	if lb.Moves() != 2 {
		t.Fatalf("moves = %d", lb.Moves())
	}
}
