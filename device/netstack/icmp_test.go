package netstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/packet"
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
	e := newTestEnv(t, func(e *testEnv, cfg *Config) {
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
	e := newTestEnv(t, func(e *testEnv, cfg *Config) {
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

func TestNetstackPingUnavailable(t *testing.T) {
	var logs testwait.Buffer
	e := newTestEnv(t, func(e *testEnv, cfg *Config) {
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
	if st.Drops[DropPingUnavailable] != 3 || st.ICMPEchoDropped != 3 || st.ICMPEchoSent != 0 {
		t.Errorf("stats %+v", st)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d log lines about unavailable echo, want 1:\n%s", n, logs.String())
	}
}

func TestNetstackPingTimeout(t *testing.T) {
	e := newTestEnv(t, func(e *testEnv, cfg *Config) {
		cfg.PingTimeout = 50 * time.Millisecond
		cfg.Ping = func(ctx context.Context, _ netip.Addr, _, _ uint16, _ []byte) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
	})
	if _, err := e.ping(servedV4, 1, nil, 300*time.Millisecond); err == nil {
		t.Fatal("got a reply")
	}
	testwait.UntilStacks(t, 10*time.Second, "echo to be dropped", func() bool { return e.ns.Stats().Drops[DropPingFailed] == 1 })
}

// malformedPackets are packets the Stack must drop without panicking.
func malformedPackets() [][]byte {
	v4 := appendEchoReply(nil, servedV4, clientV4, 1, 2, []byte("abc"))
	v6 := appendEchoReply(nil, servedV6, clientV6, 1, 2, []byte("abc"))
	badLen := append([]byte(nil), v4...)
	badLen[2], badLen[3] = 0xff, 0xff
	badIHL := append([]byte(nil), v4...)
	badIHL[0] = 0x44
	badV6Len := append([]byte(nil), v6...)
	badV6Len[4], badV6Len[5] = 0xff, 0xff
	// A zero IPv6 payload length before a payload announces a jumbogram:
	// malformed, as the router counts it (before package packet, the
	// Stack cut it to its bare header and handed that to the stack).
	jumbo := append([]byte(nil), v6...)
	jumbo[4], jumbo[5] = 0, 0
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
		jumbo,
	}
}

// echoRequestPacket builds a client echo request.
func echoRequestPacket(src, dst netip.Addr, payload []byte) []byte {
	return packet.AppendEcho(nil, src, dst, packet.Echo{ID: 1, Seq: 2, Data: payload})
}

// appendEchoReply appends the echo reply the Stack synthesizes.
func appendEchoReply(b []byte, src, dst netip.Addr, id, seq uint16, payload []byte) []byte {
	return packet.AppendEcho(b, src, dst, packet.Echo{Reply: true, ID: id, Seq: seq, Data: payload})
}

func TestNetstackMalformed(t *testing.T) {
	e := newTestEnv(t, func(e *testEnv, cfg *Config) {
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
	if got := e.ns.Stats().Drops[DropMalformed]; got != want {
		t.Errorf("malformed drops %d, want %d", got, want)
	}
	// The stack still works.
	if _, err := e.ping(gatewayV4.Addr(), 1, []byte("ok"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestNetstackEchoChecksums: the requests the tests send and the replies
// the Stack synthesizes (both built by packet.AppendEcho) carry
// checksums that gVisor, an independent implementation, accepts.
func TestNetstackEchoChecksums(t *testing.T) {
	q4 := header.IPv4(echoRequestPacket(clientV4, servedV4, []byte("odd")))
	if !q4.IsChecksumValid() || header.ICMPv4(q4.Payload()).Type() != header.ICMPv4Echo ||
		checksum.Checksum(q4.Payload(), 0) != 0xffff {
		t.Error("bad IPv4 echo request")
	}
	q6 := header.IPv6(echoRequestPacket(clientV6, servedV6, []byte("odd")))
	qc := header.ICMPv6(q6.Payload())
	if qc.Type() != header.ICMPv6EchoRequest {
		t.Errorf("ICMPv6 type %v", qc.Type())
	}
	want6 := qc.Checksum()
	qc.SetChecksum(0)
	if got := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: qc, Src: q6.SourceAddress(), Dst: q6.DestinationAddress()}); got != want6 {
		t.Errorf("ICMPv6 request checksum %#x, gVisor computes %#x", want6, got)
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
	ns, err := New(Config{}, func([][]byte, int) {})
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
	ns, err := New(Config{
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
