package device

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// The tests put a second gVisor stack, the "client", in front of the
// Netstack: the client's outbound packets are Delivered, and what the
// Netstack emits is injected into the client. Served destinations are
// mapped onto loopback servers by an injected Dial, so nothing leaves the
// machine.

var (
	gatewayV4 = netip.MustParsePrefix("10.99.0.1/16")
	gatewayV6 = netip.MustParsePrefix("fd99::1/64")
	clientV4  = netip.MustParseAddr("10.99.0.2")
	clientV6  = netip.MustParseAddr("fd99::2")
	servedV4  = netip.MustParseAddr("10.1.0.10")
	servedV6  = netip.MustParseAddr("fd01::10")
)

type testEnv struct {
	t      testing.TB
	ns     *Netstack
	client *stack.Stack
	ep     *channel.Endpoint
	cancel context.CancelFunc
	wg     sync.WaitGroup
	dialed atomic.Int64
}

// dialMap returns a Dial that reaches only the mapped destinations and
// counts its calls in env.dialed.
func (e *testEnv) dialMap(m map[netip.AddrPort]string) func(context.Context, string, netip.AddrPort) (net.Conn, error) {
	return func(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error) {
		e.dialed.Add(1)
		target, ok := m[dst]
		if !ok {
			return nil, fmt.Errorf("test dial %s %v: not mapped", network, dst)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, target)
	}
}

// newTestEnv builds a client stack and a Netstack; setup may fill cfg
// (it gets the env to reach dialMap).
func newTestEnv(t testing.TB, setup func(e *testEnv, cfg *NetstackConfig)) *testEnv {
	t.Helper()
	e := &testEnv{t: t}
	cfg := NetstackConfig{Addresses: []netip.Prefix{gatewayV4, gatewayV6}}
	cfg.Dial = e.dialMap(nil)
	if setup != nil {
		setup(e, &cfg)
	}

	e.client = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	e.ep = channel.New(1024, 1420, "")
	if err := e.client.CreateNIC(1, e.ep); err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{clientV4, clientV6} {
		proto := ipv4.ProtocolNumber
		if a.Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddrFromSlice(a.AsSlice()).WithPrefix()}
		if err := e.client.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
			t.Fatal(err)
		}
	}
	e.client.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: 1},
		{Destination: header.IPv6EmptySubnet, NIC: 1},
	})

	ns, err := NewNetstack(cfg, e.inject)
	if err != nil {
		t.Fatal(err)
	}
	e.ns = ns
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.wg.Add(1)
	go e.pump(ctx)
	t.Cleanup(e.close)
	return e
}

// inject is the Netstack's emit: packets go into the client stack.
func (e *testEnv) inject(bufs [][]byte, offset int) {
	if offset < 16 {
		e.t.Errorf("emit offset %d < 16", offset)
	}
	for _, b := range bufs {
		p := b[offset:]
		if len(p) == 0 {
			e.t.Errorf("empty packet emitted")
			continue
		}
		proto := ipv4.ProtocolNumber
		if p[0]>>4 == 6 {
			proto = ipv6.ProtocolNumber
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(p)})
		e.ep.InjectInbound(proto, pkt)
		pkt.DecRef()
		// Scribble over the buffer: the Netstack owns it again.
		for i := range p {
			p[i] = 0xa5
		}
	}
}

// pump Delivers the client's packets, with headroom, one batch per wakeup.
func (e *testEnv) pump(ctx context.Context) {
	defer e.wg.Done()
	for {
		pkt := e.ep.ReadContext(ctx)
		if pkt == nil {
			return
		}
		v := pkt.ToView()
		pkt.DecRef()
		b := make([]byte, 16+v.Size())
		copy(b[16:], v.AsSlice())
		v.Release()
		e.ns.Deliver([][]byte{b}, 16)
	}
}

func (e *testEnv) close() {
	e.ns.Close()
	e.cancel()
	e.wg.Wait()
	e.client.Close()
	e.ep.Close()
	e.client.Wait()
}

func fullAddr(ap netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	proto := ipv4.ProtocolNumber
	if ap.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(ap.Addr().AsSlice()), Port: ap.Port()}, proto
}

func (e *testEnv) dialTCP(ctx context.Context, dst netip.AddrPort) (*gonet.TCPConn, error) {
	fa, proto := fullAddr(dst)
	return gonet.DialContextTCP(ctx, e.client, fa, proto)
}

// ping sends one echo request from the client stack and waits for the reply
// payload.
func (e *testEnv) ping(dst netip.Addr, seq uint16, payload []byte, timeout time.Duration) ([]byte, error) {
	var wq waiter.Queue
	tproto, nproto, typ := icmp.ProtocolNumber4, ipv4.ProtocolNumber, byte(header.ICMPv4Echo)
	if dst.Is6() {
		tproto, nproto, typ = icmp.ProtocolNumber6, ipv6.ProtocolNumber, byte(header.ICMPv6EchoRequest)
	}
	ep, terr := e.client.NewEndpoint(tproto, nproto, &wq)
	if terr != nil {
		return nil, errors.New(terr.String())
	}
	defer ep.Close()
	entry, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)

	msg := append([]byte{typ, 0, 0, 0, 0, 0, byte(seq >> 8), byte(seq)}, payload...)
	fa, _ := fullAddr(netip.AddrPortFrom(dst, 0))
	if _, terr := ep.Write(bytes.NewReader(msg), tcpip.WriteOptions{To: &fa}); terr != nil {
		return nil, errors.New(terr.String())
	}
	deadline := time.After(timeout)
	for {
		var buf bytes.Buffer
		_, terr := ep.Read(&buf, tcpip.ReadOptions{})
		if terr == nil {
			r := buf.Bytes()
			if len(r) < 8 || int(r[6])<<8|int(r[7]) != int(seq) {
				return nil, fmt.Errorf("bad echo reply % x", r)
			}
			return r[8:], nil
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			return nil, errors.New(terr.String())
		}
		select {
		case <-ch:
		case <-deadline:
			return nil, errors.New("ping timeout")
		}
	}
}

func TestNetstackHTTP(t *testing.T) {
	big := bytes.Repeat([]byte("anyguard "), 200_000) // ~1.8 MB, many windows
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(big)
			return
		}
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	defer srv.Close()
	dst := netip.AddrPortFrom(servedV4, 8080)
	e := newTestEnv(t, func(e *testEnv, cfg *NetstackConfig) {
		cfg.Dial = e.dialMap(map[netip.AddrPort]string{dst: srv.Listener.Addr().String()})
	})
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return e.dialTCP(ctx, dst) },
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := hc.Get(fmt.Sprintf("http://10.1.0.10:8080/p%d", i))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if want := fmt.Sprintf("hello /p%d", i); string(b) != want {
				t.Errorf("got %q, want %q", b, want)
			}
		}()
	}
	wg.Wait()
	resp, err := hc.Get("http://10.1.0.10:8080/big")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(b, big) {
		t.Fatalf("big body: %d bytes, err %v", len(b), err)
	}
	st := e.ns.Stats()
	if st.TCPFlowsOpened == 0 || st.TCPFlowsFailed != 0 || st.PacketsIn == 0 || st.PacketsOut == 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestNetstackTCPv6(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	dst := netip.AddrPortFrom(servedV6, 7)
	e := newTestEnv(t, func(e *testEnv, cfg *NetstackConfig) {
		cfg.Dial = e.dialMap(map[netip.AddrPort]string{dst: ln.Addr().String()})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := e.dialTCP(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping6"))
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping6" {
		t.Fatalf("echo over IPv6: %q %v", b, err)
	}
}

// The client half-closes; the server sees EOF, answers and closes; the
// client reads the answer and EOF.
func TestNetstackTCPHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "got %d bytes", n)
	}()
	dst := netip.AddrPortFrom(servedV4, 9000)
	e := newTestEnv(t, func(e *testEnv, cfg *NetstackConfig) {
		cfg.Dial = e.dialMap(map[netip.AddrPort]string{dst: ln.Addr().String()})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := e.dialTCP(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(make([]byte, 300_000)); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "got 300000 bytes" {
		t.Fatalf("got %q, %v", b, err)
	}
	waitFor(t, "flow to end", func() bool { return e.ns.Stats().TCPFlowsActive == 0 })
}

func TestNetstackTCPRefused(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	dst := netip.AddrPortFrom(servedV4, 9)
	e := newTestEnv(t, func(e *testEnv, cfg *NetstackConfig) {
		cfg.Dial = e.dialMap(map[netip.AddrPort]string{dst: closed})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	c, err := e.dialTCP(ctx, dst)
	if err == nil {
		c.Close()
		t.Fatal("connected to a closed port")
	}
	if d := time.Since(start); d > 2*time.Second || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("after %v: %v (want a quick refusal)", d, err)
	}
	if st := e.ns.Stats(); st.TCPFlowsFailed != 1 || st.TCPFlowsOpened != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TCP and UDP to the gateway's own address are answered by the stack (RST,
// port unreachable) and never dialed on the host.
func TestNetstackOwnAddressRefuses(t *testing.T) {
	e := newTestEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, a := range []netip.Addr{gatewayV4.Addr(), gatewayV6.Addr()} {
		c, err := e.dialTCP(ctx, netip.AddrPortFrom(a, 80))
		if err == nil {
			c.Close()
			t.Fatalf("%v: connected", a)
		}
		if !strings.Contains(err.Error(), "refused") {
			t.Errorf("%v: %v", a, err)
		}
	}
	if n := e.dialed.Load(); n != 0 {
		t.Errorf("host dialed %d times", n)
	}
}

func TestNetstackUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		b := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("echo:"), b[:n]...), from)
		}
	}()
	dst := netip.AddrPortFrom(servedV4, 7)
	e := newTestEnv(t, func(e *testEnv, cfg *NetstackConfig) {
		cfg.Dial = e.dialMap(map[netip.AddrPort]string{dst: pc.LocalAddr().String()})
		cfg.UDPIdleTimeout = 300 * time.Millisecond
	})
	fa, proto := fullAddr(dst)
	c, err := gonet.DialUDP(e.client, nil, &fa, proto)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2000)
	for i, size := range []int{1, 100, 1200} {
		msg := bytes.Repeat([]byte{byte('a' + i)}, size)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], append([]byte("echo:"), msg...)) {
			t.Fatalf("round trip %d: %d bytes, %v", i, n, err)
		}
	}
	if st := e.ns.Stats(); st.UDPFlowsOpened != 1 || st.UDPFlowsActive != 1 {
		t.Errorf("stats %+v", st)
	}
	waitFor(t, "idle UDP flow to close", func() bool { return e.ns.Stats().UDPFlowsActive == 0 })
}

func TestNetstackPing(t *testing.T) {
	type call struct {
		dst     netip.Addr
		id, seq uint16
		payload string
	}
	calls := make(chan call, 10)
	e := newTestEnv(t, func(e *testEnv, cfg *NetstackConfig) {
		cfg.Ping = func(ctx context.Context, dst netip.Addr, id, seq uint16, payload []byte) ([]byte, error) {
			calls <- call{dst, id, seq, string(payload)}
			return payload, nil
		}
	})
	for i, dst := range []netip.Addr{servedV4, servedV6} {
		payload := []byte(fmt.Sprintf("payload %d with an odd length.", i))
		got, err := e.ping(dst, uint16(100+i), payload, 5*time.Second)
		if err != nil {
			t.Fatalf("%v: %v", dst, err)
		}
		if !bytes.Equal(got, payload) {
			t.Errorf("%v: reply payload %q", dst, got)
		}
		c := <-calls
		if c.dst != dst || c.seq != uint16(100+i) || c.payload != string(payload) {
			t.Errorf("Ping called with %+v", c)
		}
	}
	if st := e.ns.Stats(); st.ICMPEchoSent != 2 || st.ICMPEchoAnswered != 2 || st.ICMPEchoDropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestNetstackPingOwnAddress(t *testing.T) {
	e := newTestEnv(t, func(e *testEnv, cfg *NetstackConfig) {
		cfg.Ping = func(context.Context, netip.Addr, uint16, uint16, []byte) ([]byte, error) {
			t.Error("Ping called for the gateway's own address")
			return nil, errors.New("no")
		}
	})
	for _, a := range []netip.Addr{gatewayV4.Addr(), gatewayV6.Addr()} {
		got, err := e.ping(a, 7, []byte("self"), 5*time.Second)
		if err != nil || string(got) != "self" {
			t.Fatalf("%v: %q %v", a, got, err)
		}
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestNetstackPingUnavailable(t *testing.T) {
	var logs syncBuffer
	e := newTestEnv(t, func(e *testEnv, cfg *NetstackConfig) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		cfg.Ping = func(context.Context, netip.Addr, uint16, uint16, []byte) ([]byte, error) {
			return nil, fmt.Errorf("test: %w", ErrPingUnavailable)
		}
	})
	for i := range 3 {
		if _, err := e.ping(servedV4, uint16(i), []byte("x"), 200*time.Millisecond); err == nil {
			t.Fatal("got a reply")
		}
	}
	st := e.ns.Stats()
	if st.Drops[NetstackDropPingUnavailable] != 3 || st.ICMPEchoDropped != 3 || st.ICMPEchoSent != 0 {
		t.Errorf("stats %+v", st)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d log lines about unavailable echo, want 1:\n%s", n, logs.String())
	}
}

func TestNetstackPingTimeout(t *testing.T) {
	e := newTestEnv(t, func(e *testEnv, cfg *NetstackConfig) {
		cfg.PingTimeout = 50 * time.Millisecond
		cfg.Ping = func(ctx context.Context, _ netip.Addr, _, _ uint16, _ []byte) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
	})
	if _, err := e.ping(servedV4, 1, nil, 300*time.Millisecond); err == nil {
		t.Fatal("got a reply")
	}
	waitFor(t, "echo to be dropped", func() bool { return e.ns.Stats().Drops[NetstackDropPingFailed] == 1 })
}

// malformedPackets are packets the Netstack must drop without panicking.
func malformedPackets() [][]byte {
	v4 := appendEchoReply(nil, servedV4, clientV4, 1, 2, []byte("abc"))
	v6 := appendEchoReply(nil, servedV6, clientV6, 1, 2, []byte("abc"))
	badLen := append([]byte(nil), v4...)
	badLen[2], badLen[3] = 0xff, 0xff
	badIHL := append([]byte(nil), v4...)
	badIHL[0] = 0x44
	badV6Len := append([]byte(nil), v6...)
	badV6Len[4], badV6Len[5] = 0xff, 0xff
	return [][]byte{
		{},
		{0x45},
		{0x00, 1, 2, 3},
		{0x50, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8},
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		v4[:19],
		v6[:39],
		badLen,
		badIHL,
		badV6Len,
	}
}

// echoRequestPacket builds a client echo request (an echo reply with the
// type changed and the checksum fixed).
func echoRequestPacket(src, dst netip.Addr, payload []byte) []byte {
	p := appendEchoReply(nil, src, dst, 1, 2, payload)
	hdr := 20
	typ := byte(icmpv4EchoRequest)
	if src.Is6() {
		hdr, typ = 40, icmpv6EchoRequest
	}
	icmpMsg := p[hdr:]
	icmpMsg[0] = typ
	icmpMsg[2], icmpMsg[3] = 0, 0
	var sum uint16
	if src.Is6() {
		sum = pseudoHeaderSum(p[8:24], p[24:40], len(icmpMsg))
	}
	binary.BigEndian.PutUint16(icmpMsg[2:], ^checksum.Checksum(icmpMsg, sum))
	return p
}

func TestNetstackMalformed(t *testing.T) {
	e := newTestEnv(t, func(e *testEnv, cfg *NetstackConfig) {
		cfg.Ping = func(context.Context, netip.Addr, uint16, uint16, []byte) ([]byte, error) {
			t.Error("Ping called for a malformed echo request")
			return nil, errors.New("no")
		}
	})
	pkts := malformedPackets()
	for _, p := range pkts {
		b := append(make([]byte, 16), p...)
		if err := e.ns.Deliver([][]byte{b}, 16); err != nil {
			t.Errorf("Deliver: %v", err)
		}
	}
	// An offset past the buffer.
	e.ns.Deliver([][]byte{make([]byte, 4)}, 16)
	// An echo request with a bad checksum.
	req := echoRequestPacket(clientV4, servedV4, []byte("hi"))
	req[len(req)-1] ^= 0xff
	e.ns.Deliver([][]byte{req}, 0)

	want := uint64(len(pkts) + 2)
	if got := e.ns.Stats().Drops[NetstackDropMalformed]; got != want {
		t.Errorf("malformed drops %d, want %d", got, want)
	}
	// The stack still works.
	if _, err := e.ping(gatewayV4.Addr(), 1, []byte("ok"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestNetstackEchoRequestParse(t *testing.T) {
	for _, c := range []struct{ src, dst netip.Addr }{{clientV4, servedV4}, {clientV6, servedV6}} {
		p := echoRequestPacket(c.src, c.dst, []byte("odd"))
		e, ok := parseEchoRequest(p)
		if !ok || !e.valid || e.src != c.src || e.dst != c.dst || e.id != 1 || e.seq != 2 || string(e.payload) != "odd" {
			t.Errorf("%v: %+v %v", c.src, e, ok)
		}
	}
	// Replies carry correct checksums by gVisor's reckoning.
	r4 := header.IPv4(appendEchoReply(nil, servedV4, clientV4, 3, 4, []byte("xyz")))
	if !r4.IsChecksumValid() || header.ICMPv4(r4.Payload()).Type() != header.ICMPv4EchoReply {
		t.Error("bad IPv4 echo reply")
	}
	r6 := header.IPv6(appendEchoReply(nil, servedV6, clientV6, 3, 4, []byte("xyz")))
	ic := header.ICMPv6(r6.Payload())
	want := ic.Checksum()
	ic.SetChecksum(0)
	got := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: ic, Src: r6.SourceAddress(), Dst: r6.DestinationAddress()})
	if got != want {
		t.Errorf("ICMPv6 checksum %#x, want %#x", want, got)
	}
}

// Dropping a malformed packet allocates nothing.
func TestNetstackMalformedNoAllocs(t *testing.T) {
	ns, err := NewNetstack(NetstackConfig{}, func([][]byte, int) {})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	bufs := [][]byte{append(make([]byte, 16), 0x45, 0, 0, 0), append(make([]byte, 16), 0x70)}
	if n := testing.AllocsPerRun(100, func() { ns.Deliver(bufs, 16) }); n != 0 {
		t.Errorf("%v allocs per malformed batch", n)
	}
}

func TestNetstackConfigValidate(t *testing.T) {
	for _, cfg := range []NetstackConfig{
		{MTU: 100},
		{UDPIdleTimeout: -1},
		{MaxUDPFlows: -1},
		{Addresses: []netip.Prefix{{}}},
	} {
		if _, err := NewNetstack(cfg, func([][]byte, int) {}); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	if _, err := NewNetstack(NetstackConfig{}, nil); err == nil {
		t.Error("nil emit accepted")
	}
}

func TestNetstackCloseTwiceAndDeliverAfter(t *testing.T) {
	ns, err := NewNetstack(NetstackConfig{}, func([][]byte, int) {})
	if err != nil {
		t.Fatal(err)
	}
	ns.Close()
	ns.Close()
	if err := ns.Deliver([][]byte{echoRequestPacket(clientV4, servedV4, nil)}, 0); !errors.Is(err, ErrNetstackClosed) {
		t.Errorf("Deliver after Close: %v", err)
	}
	if d := ns.Stats().Drops[NetstackDropClosed]; d != 1 {
		t.Errorf("closed drops %d", d)
	}
}

// Close ends every flow and leaves no goroutine behind, even with flows
// open in both protocols and an echo in flight.
func TestNetstackCloseNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				accepted <- c
			}
		}()
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		tcpDst, udpDst := netip.AddrPortFrom(servedV4, 80), netip.AddrPortFrom(servedV4, 53)
		pingStarted := make(chan struct{}, 1)
		e := newTestEnv(t, func(e *testEnv, cfg *NetstackConfig) {
			cfg.Dial = e.dialMap(map[netip.AddrPort]string{tcpDst: ln.Addr().String(), udpDst: pc.LocalAddr().String()})
			cfg.Ping = func(ctx context.Context, _ netip.Addr, _, _ uint16, _ []byte) ([]byte, error) {
				pingStarted <- struct{}{}
				<-ctx.Done()
				return nil, ctx.Err()
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := e.dialTCP(ctx, tcpDst)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		hostSide := <-accepted
		defer hostSide.Close()
		fa, proto := fullAddr(udpDst)
		u, err := gonet.DialUDP(e.client, nil, &fa, proto)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		u.Write([]byte("q"))
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := pc.ReadFrom(make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
		go e.ping(servedV4, 1, nil, 100*time.Millisecond)
		<-pingStarted
		if st := e.ns.Stats(); st.TCPFlowsActive != 1 || st.UDPFlowsActive != 1 {
			t.Fatalf("stats %+v", st)
		}
		e.ns.Close()
		st := e.ns.Stats()
		if st.TCPFlowsActive != 0 || st.UDPFlowsActive != 0 {
			t.Errorf("after Close: %+v", st)
		}
		// The host side sees the flow end.
		hostSide.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := hostSide.Read(make([]byte, 1)); err == nil {
			t.Error("host connection still open after Close")
		}
		time.Sleep(150 * time.Millisecond) // let the client's ping give up
		e.close()
	}()
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("timed out waiting for %s\n%s", what, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func FuzzNetstackDeliver(f *testing.F) {
	for _, p := range malformedPackets() {
		f.Add(p)
	}
	f.Add(echoRequestPacket(clientV4, servedV4, []byte("x")))
	f.Add(echoRequestPacket(clientV6, servedV6, []byte("x")))
	f.Add(echoRequestPacket(clientV4, gatewayV4.Addr(), []byte("x")))
	ns, err := NewNetstack(NetstackConfig{
		Addresses: []netip.Prefix{gatewayV4, gatewayV6},
		Dial: func(context.Context, string, netip.AddrPort) (net.Conn, error) {
			return nil, errors.New("fuzz: no dialing")
		},
		Ping: func(context.Context, netip.Addr, uint16, uint16, []byte) ([]byte, error) {
			return nil, errors.New("fuzz: no ping")
		},
	}, func([][]byte, int) {})
	if err != nil {
		f.Fatal(err)
	}
	defer ns.Close()
	f.Fuzz(func(t *testing.T, p []byte) {
		b := append(make([]byte, 16), p...)
		if err := ns.Deliver([][]byte{b}, 16); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkNetstackTCP measures one TCP flow's throughput from a client
// through the Netstack to a host socket that discards (upload) or sends
// (download).
func BenchmarkNetstackTCP(b *testing.B) {
	for _, dir := range []string{"upload", "download"} {
		b.Run(dir, func(b *testing.B) {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				if dir == "upload" {
					io.Copy(io.Discard, c)
				} else {
					buf := make([]byte, 64<<10)
					for {
						if _, err := c.Write(buf); err != nil {
							return
						}
					}
				}
			}()
			dst := netip.AddrPortFrom(servedV4, 5201)
			e := newTestEnv(b, func(e *testEnv, cfg *NetstackConfig) {
				cfg.Dial = e.dialMap(map[netip.AddrPort]string{dst: ln.Addr().String()})
			})
			c, err := e.dialTCP(context.Background(), dst)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for range b.N {
				if dir == "upload" {
					_, err = c.Write(buf)
				} else {
					_, err = io.ReadFull(c, buf)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Idle flows hold no copy buffers (64 KiB per UDP direction, 32 KiB per
// TCP direction): the heap grows by far less than that per flow.
func TestNetstackIdleFlowsHoldNoBuffers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("host sockets wait without a buffer only on Linux")
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		b := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			pc.WriteTo(b[:n], from)
		}
	}()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	udpDst, tcpDst := netip.AddrPortFrom(servedV4, 53), netip.AddrPortFrom(servedV4, 80)
	e := newTestEnv(t, func(e *testEnv, cfg *NetstackConfig) {
		cfg.Dial = e.dialMap(map[netip.AddrPort]string{udpDst: pc.LocalAddr().String(), tcpDst: ln.Addr().String()})
	})
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	const flows = 64
	var conns []io.Closer
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	before := heap()
	buf := make([]byte, 16)
	for range flows {
		fa, proto := fullAddr(udpDst)
		u, err := gonet.DialUDP(e.client, nil, &fa, proto)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, u)
		u.Write([]byte("q"))
		u.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := u.Read(buf); err != nil {
			t.Fatal(err)
		}
		c, err := e.dialTCP(context.Background(), tcpDst)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.Write([]byte("q"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // let the relays go back to waiting
	after := heap()
	st := e.ns.Stats()
	if st.UDPFlowsActive != flows || st.TCPFlowsActive != flows {
		t.Fatalf("stats %+v", st)
	}
	perFlow := (int64(after) - int64(before)) / (2 * flows)
	t.Logf("heap per flow (client and egress sides): %d bytes", perFlow)
	if perFlow > 32<<10 {
		t.Errorf("heap grows %d bytes per idle flow pair member; copy buffers held while idle?", perFlow)
	}
}

// udpPacket builds an IPv4 UDP datagram (checksum 0: none).
func udpPacket(src, dst netip.AddrPort, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0], p[8], p[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], ^checksum.Checksum(p[:20], 0))
	binary.BigEndian.PutUint16(p[20:], src.Port())
	binary.BigEndian.PutUint16(p[22:], dst.Port())
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

// Close while many goroutines Deliver new flows and echoes: no race, no
// panic, no goroutine left, and Deliver reports ErrNetstackClosed after.
func TestNetstackCloseDuringDeliver(t *testing.T) {
	before := runtime.NumGoroutine()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	sink := pc.LocalAddr().String()
	ns, err := NewNetstack(NetstackConfig{
		Addresses:   []netip.Prefix{gatewayV4},
		MaxUDPFlows: 200,
		Dial: func(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error) {
			if network != "udp" {
				return nil, errors.New("test: udp only")
			}
			var d net.Dialer
			return d.DialContext(ctx, network, sink)
		},
		Ping: func(ctx context.Context, _ netip.Addr, _, _ uint16, p []byte) ([]byte, error) {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Millisecond):
				return p, nil
			}
		},
	}, func([][]byte, int) {})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var closedSeen atomic.Bool
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				src := netip.AddrPortFrom(clientV4, uint16(1024+g*10000+i%5000))
				bufs := [][]byte{
					udpPacket(src, netip.AddrPortFrom(servedV4, 53), []byte("query")),
					echoRequestPacket(clientV4, servedV4, []byte("ping")),
					{0x45, 0, 0},
				}
				if err := ns.Deliver(bufs, 0); errors.Is(err, ErrNetstackClosed) {
					closedSeen.Store(true)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	ns.Close()
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	if !closedSeen.Load() {
		t.Error("Deliver never reported ErrNetstackClosed")
	}
	st := ns.Stats()
	t.Logf("udp opened %d refused %d, echo answered %d dropped %d, drops %v",
		st.UDPFlowsOpened, st.UDPFlowsRefused, st.ICMPEchoAnswered, st.ICMPEchoDropped, st.Drops)
	if st.UDPFlowsOpened == 0 || st.UDPFlowsActive != 0 {
		t.Errorf("stats %+v", st)
	}
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

// tcpSYN builds an IPv4 TCP SYN.
func tcpSYN(src, dst netip.AddrPort) []byte {
	p := make([]byte, 40)
	p[0], p[8], p[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(p[2:], 40)
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], ^checksum.Checksum(p[:20], 0))
	tcpHdr := header.TCP(p[20:])
	tcpHdr.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: 1000, DataOffset: 20, Flags: header.TCPFlagSyn, WindowSize: 65535})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, tcpip.AddrFrom4(s), tcpip.AddrFrom4(d), 20)
	tcpHdr.SetChecksum(^tcpHdr.CalculateChecksum(xsum))
	return p
}

// A client that sends a SYN and vanishes leaves a flow stuck in the
// handshake; Close still returns promptly and the host side is closed.
func TestNetstackCloseDuringHandshake(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	dst := netip.AddrPortFrom(servedV4, 443)
	var synAcks atomic.Int64
	ns, err := NewNetstack(NetstackConfig{
		Dial: func(ctx context.Context, network string, _ netip.AddrPort) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, ln.Addr().String())
		},
	}, func(bufs [][]byte, off int) { synAcks.Add(int64(len(bufs))) })
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Deliver([][]byte{tcpSYN(netip.AddrPortFrom(clientV4, 40000), dst)}, 0); err != nil {
		t.Fatal(err)
	}
	host := <-accepted
	defer host.Close()
	waitFor(t, "SYN-ACK", func() bool { return synAcks.Load() > 0 })
	start := time.Now()
	ns.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	host.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := host.Read(make([]byte, 1)); err == nil {
		t.Error("host side still open")
	}
}
