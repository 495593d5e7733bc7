package netstack

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/anyguard/anyguard/internal/testwait"
)

func TestNetstackConfigValidate(t *testing.T) {
	for _, cfg := range []Config{
		{MTU: 100},
		{UDPIdleTimeout: -1},
		{MaxUDPFlows: -1},
		{Addresses: []netip.Prefix{{}}},
	} {
		if _, err := New(cfg, func([][]byte, int) {}); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("nil emit accepted")
	}
}

func TestNetstackCloseTwiceAndDeliverAfter(t *testing.T) {
	ns, err := New(Config{}, func([][]byte, int) {})
	if err != nil {
		t.Fatal(err)
	}
	ns.Close()
	ns.Close()
	if err := ns.Deliver([][]byte{echoRequestPacket(clientV4, servedV4, nil)}, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Deliver after Close: %v", err)
	}
	if d := ns.Stats().Drops[DropClosed]; d != 1 {
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
		e := newTestEnv(t, func(e *testEnv, cfg *Config) {
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
		pingDone := make(chan struct{})
		go func() {
			defer close(pingDone)
			e.ping(servedV4, 1, nil, 100*time.Millisecond)
		}()
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
		<-pingDone // the client's ping gives up after its 100 ms
		e.close()
	}()
	testwait.UntilStacks(t, 10*time.Second, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
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
	e := newTestEnv(t, func(e *testEnv, cfg *Config) {
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
// panic, no goroutine left, and Deliver reports ErrClosed after.
func TestNetstackCloseDuringDeliver(t *testing.T) {
	before := runtime.NumGoroutine()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	sink := pc.LocalAddr().String()
	ns, err := New(Config{
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
				if err := ns.Deliver(bufs, 0); errors.Is(err, ErrClosed) {
					closedSeen.Store(true)
				}
			}
		}()
	}
	testwait.Until(t, 5*time.Second, "the senders to open UDP flows", func() bool { return ns.Stats().UDPFlowsOpened > 0 })
	ns.Close()
	testwait.Until(t, 5*time.Second, "a Deliver after Close to report ErrClosed", closedSeen.Load)
	close(stop)
	wg.Wait()
	st := ns.Stats()
	t.Logf("udp opened %d refused %d, echo answered %d dropped %d, drops %v",
		st.UDPFlowsOpened, st.UDPFlowsRefused, st.ICMPEchoAnswered, st.ICMPEchoDropped, st.Drops)
	if st.UDPFlowsOpened == 0 || st.UDPFlowsActive != 0 {
		t.Errorf("stats %+v", st)
	}
	testwait.UntilStacks(t, 10*time.Second, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
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
	ns, err := New(Config{
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
	testwait.UntilStacks(t, 10*time.Second, "SYN-ACK", func() bool { return synAcks.Load() > 0 })
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
