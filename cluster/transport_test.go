package cluster

import (
	"bytes"
	"io"
	"log"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// lineLog collects what a transport logs.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSpace(string(p)))
	return len(p), nil
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func startTransport(t *testing.T) (*gossipTransport, *lineLog) {
	t.Helper()
	ll := &lineLog{}
	tr, err := newGossipTransport(netip.MustParseAddrPort("127.0.0.1:0"), log.New(ll, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown() })
	return tr, ll
}

func dialUDP(t *testing.T, tr *gossipTransport) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(tr.port()))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func nextPacket(t *testing.T, tr *gossipTransport) *memberlist.Packet {
	t.Helper()
	select {
	case p := <-tr.PacketCh():
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no packet within 5 s")
		return nil
	}
}

// TestTransportHandsExactCopies: each datagram reaches memberlist as a
// buffer of exactly its length, whatever the datagram before it was; an
// empty datagram is dropped and logged, and the next one still arrives.
func TestTransportHandsExactCopies(t *testing.T) {
	tr, ll := startTransport(t)
	c := dialUDP(t, tr)
	big := bytes.Repeat([]byte{0xAB}, 60000)
	for _, msg := range [][]byte{big, []byte("x"), {}, []byte("hello gossip")} {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range [][]byte{big, []byte("x"), []byte("hello gossip")} {
		p := nextPacket(t, tr)
		if !bytes.Equal(p.Buf, want) {
			t.Fatalf("packet of %d bytes, want %d", len(p.Buf), len(want))
		}
		if cap(p.Buf) != len(want) {
			t.Errorf("a %d-byte datagram arrived in a %d-byte buffer", len(want), cap(p.Buf))
		}
		from, ok := p.From.(*net.UDPAddr)
		if !ok || from.AddrPort() != c.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Errorf("from %v, want %v", p.From, c.LocalAddr())
		}
		if p.Timestamp.IsZero() {
			t.Error("no timestamp")
		}
	}
	if !strings.Contains(ll.String(), "UDP packet too short (0 bytes) from=127.0.0.1:") {
		t.Errorf("the empty datagram was not logged with its source; log:\n%s", ll)
	}
	if !isEmptyDatagram(ll.String()) {
		t.Error("isEmptyDatagram does not recognise the transport's own line")
	}
}

// TestTransportJunkCostsItsLength: what a flood of small datagrams makes
// the gateway allocate is about their own size, not a 64 KiB buffer each
// (memberlist's NetTransport: 4,000 datagrams of 100 bytes cost it
// ≈ 260 MB).
func TestTransportJunkCostsItsLength(t *testing.T) {
	tr, _ := startTransport(t)
	c := dialUDP(t, tr)
	const n, size = 4000, 100
	junk := bytes.Repeat([]byte{0x5A}, size)
	got := make(chan int)
	go func() {
		k := 0
		for k < n {
			select {
			case <-tr.PacketCh():
				k++
			case <-time.After(2 * time.Second):
				got <- k
				return
			}
		}
		got <- k
	}()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	sent := 0
	for i := range n {
		if _, err := c.Write(junk); err == nil {
			sent++
		}
		if i%100 == 99 {
			time.Sleep(time.Millisecond) // let the reader keep up
		}
	}
	k := <-got
	runtime.ReadMemStats(&after)
	if k < n/2 {
		t.Fatalf("only %d of %d datagrams (%d sent) arrived", k, n, sent)
	}
	perDatagram := (after.TotalAlloc - before.TotalAlloc) / uint64(k)
	t.Logf("%d datagrams of %d bytes: %d bytes allocated each (whole process)", k, size, perDatagram)
	if perDatagram > 2048 {
		t.Errorf("%d bytes allocated per %d-byte datagram, want under 2 KiB", perDatagram, size)
	}
}

// TestTransportStreamsAndDials: a TCP connection to the gossip port
// reaches memberlist's stream channel, and DialTimeout reaches a listener.
func TestTransportStreamsAndDials(t *testing.T) {
	a, _ := startTransport(t)
	b, _ := startTransport(t)
	conn, err := a.DialTimeout(net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port())), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("push-pull")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-b.StreamCh():
		defer s.Close()
		buf := make([]byte, 9)
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "push-pull" {
			t.Fatalf("stream read %q, %v", buf, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no stream")
	}
	// And WriteTo reaches the other's packet channel from a's port.
	if _, err := a.WriteTo([]byte("ping"), net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port()))); err != nil {
		t.Fatal(err)
	}
	p := nextPacket(t, b)
	if string(p.Buf) != "ping" || p.From.(*net.UDPAddr).Port != a.port() {
		t.Errorf("got %q from %v, want ping from port %d", p.Buf, p.From, a.port())
	}
	if _, err := a.WriteTo([]byte("x"), "not an address"); err == nil {
		t.Error("WriteTo an unparsable address did not fail")
	}
}

// TestTransportAdvertise: the advertise address is the one given, else
// the bound one with the bound port; a bad one is an error.
func TestTransportAdvertise(t *testing.T) {
	tr, _ := startTransport(t)
	ip, port, err := tr.FinalAdvertiseAddr("", 0)
	if err != nil || !ip.Equal(net.ParseIP("127.0.0.1")) || port != tr.port() {
		t.Errorf("bound: %v %d %v, want 127.0.0.1 %d", ip, port, err, tr.port())
	}
	ip, port, err = tr.FinalAdvertiseAddr("192.0.2.7", 7946)
	if err != nil || !ip.Equal(net.ParseIP("192.0.2.7")) || len(ip) != net.IPv4len || port != 7946 {
		t.Errorf("given: %v %d %v", ip, port, err)
	}
	if _, _, err := tr.FinalAdvertiseAddr("gateway-1", 7946); err == nil {
		t.Error("a host name was accepted as an advertise address")
	}
}

// TestTransportShutdown: Shutdown returns while memberlist reads nothing
// (a datagram and a connection waiting to be handed over), closes both
// sockets, and may be called twice.
func TestTransportShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	ll := &lineLog{}
	tr, err := newGossipTransport(netip.MustParseAddrPort("127.0.0.1:0"), log.New(ll, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	port := tr.port()
	u, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write([]byte("unread"))
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // both wait on their channels now
	done := make(chan struct{})
	go func() { tr.Shutdown(); tr.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown hung")
	}
	if _, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
		t.Error("the TCP port still takes connections")
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Errorf("%d goroutines after Shutdown, %d before", g, before)
	}
	if strings.Contains(ll.String(), "[ERR]") {
		t.Errorf("Shutdown logged errors:\n%s", ll)
	}
}

// TestTransportPortInUse: a taken TCP or UDP port is a clear error, and
// the socket of the other kind bound on the way is closed again.
func TestTransportPortInUse(t *testing.T) {
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	port := udp.LocalAddr().(*net.UDPAddr).Port
	_, err = newGossipTransport(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), log.New(io.Discard, "", 0))
	if err == nil || !strings.Contains(err.Error(), "listen on UDP") {
		t.Fatalf("UDP port taken: err %v", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("the TCP port the failed start bound is still taken: %v", err)
	}
	ln.Close()

	mc := memberlist.DefaultLANConfig()
	mc.BindAddr, mc.BindPort = "127.0.0.1", 0
	mc.Logger = log.New(io.Discard, "", 0)
	tr, err := newTransport(mc)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown()
	if mc.BindPort != tr.port() || mc.AdvertisePort != tr.port() {
		t.Errorf("dynamic port %d not written back (bind %d, advertise %d)", tr.port(), mc.BindPort, mc.AdvertisePort)
	}
	mc2 := memberlist.DefaultLANConfig()
	mc2.BindAddr, mc2.BindPort = "127.0.0.1", tr.port()
	mc2.Logger = log.New(io.Discard, "", 0)
	if _, err := newTransport(mc2); err == nil {
		t.Error("a second transport bound the same fixed port")
	}
	mc2.BindAddr = "localhost"
	if _, err := newTransport(mc2); err == nil || !strings.Contains(err.Error(), "bind address") {
		t.Errorf("bind address not an IP: err %v", err)
	}
}

// BenchmarkGossipDatagram: what one small gossip datagram costs to
// receive with memberlist's NetTransport and with gossipTransport, sent
// and read over loopback (compare B/op in one -benchmem run).
func BenchmarkGossipDatagram(b *testing.B) {
	type transport interface {
		PacketCh() <-chan *memberlist.Packet
		Shutdown() error
	}
	for _, tc := range []struct {
		name  string
		start func() (transport, int, error)
	}{
		{"memberlist", func() (transport, int, error) {
			nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
				BindAddrs: []string{"127.0.0.1"}, Logger: log.New(io.Discard, "", 0)})
			if err != nil {
				return nil, 0, err
			}
			return nt, nt.GetAutoBindPort(), nil
		}},
		{"anyguard", func() (transport, int, error) {
			gt, err := newGossipTransport(netip.MustParseAddrPort("127.0.0.1:0"), log.New(io.Discard, "", 0))
			if err != nil {
				return nil, 0, err
			}
			return gt, gt.port(), nil
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tr, port, err := tc.start()
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Shutdown()
			c, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			junk := bytes.Repeat([]byte{0x5A}, 100)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(junk); err != nil {
					b.Fatal(err)
				}
				<-tr.PacketCh()
			}
		})
	}
}
