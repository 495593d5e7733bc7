package device

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/anyguard/anyguard/internal/testwait"
)

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
	testwait.UntilStacks(t, 10*time.Second, "echo to be dropped", func() bool { return e.ns.Stats().Drops[NetstackDropPingFailed] == 1 })
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
