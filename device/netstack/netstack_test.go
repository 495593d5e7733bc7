package netstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/anyguard/anyguard/internal/testwait"
)

// The tests put a second gVisor stack, the "client", in front of the
// Stack: the client's outbound packets are Delivered, and what the
// Stack emits is injected into the client. Served destinations are
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
	ns     *Stack
	client *stack.Stack
	ep     *link
	// offload makes the client stack behave like a kernel with segmentation
	// and receive offload (benchmarks): it sends super-segments, which pump
	// cuts with the Stack's own cutter, and inject merges what it receives
	// with GRO, trusting the checksums. The client's cost then weighs less
	// beside the Stack's. Tests leave it off, so that an independent stack
	// verifies every checksum the Stack emits.
	offload bool
	gro     *gro.GRO
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	dialed  atomic.Int64
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

// newTestEnv builds a client stack and a Stack; setup may fill cfg
// (it gets the env to reach dialMap).
func newTestEnv(t testing.TB, setup func(e *testEnv, cfg *Config)) *testEnv {
	t.Helper()
	e := &testEnv{t: t}
	cfg := Config{Addresses: []netip.Prefix{gatewayV4, gatewayV6}}
	cfg.Dial = e.dialMap(nil)
	if setup != nil {
		setup(e, &cfg)
	}

	e.client = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	e.ep = &link{Endpoint: channel.New(1024, 1420, "")}
	if e.offload {
		e.ep.SupportedGSOKind = stack.HostGSOSupported
		e.ep.LinkEPCapabilities = stack.CapabilityRXChecksumOffload
		e.gro = new(gro.GRO)
		e.gro.Init(true)
	}
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

	ns, err := New(cfg, e.inject)
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

// inject is the Stack's emit: packets go into the client stack.
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
		if e.gro != nil {
			pkt.NetworkProtocolNumber = proto
			e.gro.Dispatcher = e.ep.dispatcher.Load().NetworkDispatcher
			e.gro.Enqueue(pkt)
		} else {
			e.ep.InjectInbound(proto, pkt)
		}
		pkt.DecRef()
		// Scribble over the buffer: the Stack owns it again.
		for i := range p {
			p[i] = 0xa5
		}
	}
	if e.gro != nil {
		flushGRO(e.gro)
	}
}

// pump Delivers the client's packets, with headroom, in batches of what
// is ready (up to 128, as wireguard-go's receive path hands them over).
func (e *testEnv) pump(ctx context.Context) {
	defer e.wg.Done()
	if e.offload {
		e.pumpOffload(ctx)
		return
	}
	var batch [][]byte
	for {
		pkt := e.ep.ReadContext(ctx)
		if pkt == nil {
			return
		}
		batch = batch[:0]
		for pkt != nil {
			v := pkt.ToView()
			pkt.DecRef()
			b := make([]byte, 16+v.Size())
			copy(b[16:], v.AsSlice())
			v.Release()
			batch = append(batch, b)
			if len(batch) == 128 {
				break
			}
			pkt = e.ep.Read()
		}
		e.ns.Deliver(batch, 16)
	}
}

// pumpOffload is pump for a client with segmentation offload: its
// super-segments are cut into MTU-sized packets, reusing buffers.
func (e *testEnv) pumpOffload(ctx context.Context) {
	b := emitBatch{mtu: 1420}
	for {
		pkt := e.ep.ReadContext(ctx)
		if pkt == nil {
			return
		}
		b.out = b.out[:0]
		for pkt != nil {
			b.appendPacket(pkt)
			pkt.DecRef()
			if len(b.out) >= 128 {
				break
			}
			pkt = e.ep.Read()
		}
		e.ns.Deliver(b.out, netstackEmitOffset)
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
	e := newTestEnv(t, func(e *testEnv, cfg *Config) {
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
	e := newTestEnv(t, func(e *testEnv, cfg *Config) {
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
	e := newTestEnv(t, func(e *testEnv, cfg *Config) {
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
	testwait.UntilStacks(t, 10*time.Second, "flow to end", func() bool { return e.ns.Stats().TCPFlowsActive == 0 })
}

func TestNetstackTCPRefused(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	dst := netip.AddrPortFrom(servedV4, 9)
	e := newTestEnv(t, func(e *testEnv, cfg *Config) {
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
	e := newTestEnv(t, func(e *testEnv, cfg *Config) {
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
	testwait.UntilStacks(t, 10*time.Second, "idle UDP flow to close", func() bool { return e.ns.Stats().UDPFlowsActive == 0 })
}

// BenchmarkNetstackTCP measures TCP throughput from a client stack
// through the Stack to loopback host sockets that discard (upload) or send
// (download), over 1 and 4 concurrent flows. Besides MB/s it reports
// cpu-ns/B, the process's CPU time (user+system) per byte moved: on a
// shared, loaded machine that survives far better than wall-clock
// throughput. The client stack's own cost is included, so the Stack's
// share of any change is larger than the ratio shows; the offload
// variants give the client segmentation and receive offload, as a kernel
// has, which shrinks its share.
func BenchmarkNetstackTCP(b *testing.B) {
	for _, dir := range []string{"upload", "download"} {
		for _, streams := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/streams=%d", dir, streams), func(b *testing.B) {
				benchmarkNetstackTCP(b, dir == "upload", streams, false)
			})
			b.Run(fmt.Sprintf("%s/streams=%d/offload", dir, streams), func(b *testing.B) {
				benchmarkNetstackTCP(b, dir == "upload", streams, true)
			})
		}
	}
}

func benchmarkNetstackTCP(b *testing.B, upload bool, streams int, offload bool) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
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
				if upload {
					io.Copy(io.Discard, c)
					return
				}
				buf := make([]byte, 64<<10)
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	dst := netip.AddrPortFrom(servedV4, 5201)
	e := newTestEnv(b, func(e *testEnv, cfg *Config) {
		cfg.Dial = e.dialMap(map[netip.AddrPort]string{dst: ln.Addr().String()})
		e.offload = offload
	})
	conns := make([]*gonet.TCPConn, streams)
	for i := range conns {
		c, err := e.dialTCP(context.Background(), dst)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	const chunk = 64 << 10
	b.SetBytes(chunk)
	b.ResetTimer()
	cpu0 := processCPU()
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i, c := range conns {
		n := b.N / streams
		if i < b.N%streams {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, chunk)
			for range n {
				var err error
				if upload {
					_, err = c.Write(buf)
				} else {
					_, err = io.ReadFull(c, buf)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	cpu := processCPU() - cpu0
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*chunk), "cpu-ns/B")
	}
}
