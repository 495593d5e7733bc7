package netstack

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"
)

// skipUnlessPrivileged skips a test that needs privileges it lacks, or
// fails it when ANYGUARD_E2E=require.
func skipUnlessPrivileged(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("ANYGUARD_E2E") == "require" {
		t.Fatalf("ANYGUARD_E2E=require: %s", why)
	}
	t.Skip(why)
}

// TestNetstackBuiltinPing pings loopback with the built-in pinger: a ping
// socket where net.ipv4.ping_group_range allows it, else a raw socket
// (root or CAP_NET_RAW).
func TestNetstackBuiltinPing(t *testing.T) {
	p := newSysPinger(slog.New(slog.DiscardHandler))
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, dst := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")} {
		payload := []byte("anyguard built-in ping " + dst.String())
		r, err := p.Ping(ctx, dst, 1, 1, payload)
		if errors.Is(err, ErrPingUnavailable) {
			if dst.Is6() {
				t.Logf("%v: %v", dst, err)
				continue
			}
			skipUnlessPrivileged(t, "built-in ping needs a ping socket (net.ipv4.ping_group_range) or root/CAP_NET_RAW: "+err.Error())
		}
		if err != nil {
			t.Fatalf("%v: %v", dst, err)
		}
		if string(r) != string(payload) {
			t.Errorf("%v: reply payload %q", dst, r)
		}
	}
	p.Close()
	if _, err := p.Ping(ctx, netip.MustParseAddr("127.0.0.1"), 1, 1, nil); err == nil {
		t.Error("Ping after Close succeeded")
	}
}

// TestNetstackBuiltinPingEndToEnd sends a client's echo request to
// 127.0.0.1 through a Stack with the built-in pinger and checks the
// synthesized reply.
func TestNetstackBuiltinPingEndToEnd(t *testing.T) {
	replies := make(chan []byte, 1)
	ns, err := New(Config{Logger: slog.New(slog.DiscardHandler)}, func(bufs [][]byte, offset int) {
		for _, b := range bufs {
			select {
			case replies <- append([]byte(nil), b[offset:]...):
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	lo := netip.MustParseAddr("127.0.0.1")
	if err := ns.Deliver([][]byte{echoRequestPacket(clientV4, lo, []byte("e2e"))}, 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case r := <-replies:
			want := appendEchoReply(nil, lo, clientV4, 1, 2, []byte("e2e"))
			if string(r) != string(want) {
				t.Fatalf("reply % x, want % x", r, want)
			}
			return
		case <-deadline:
			t.Fatalf("no echo reply; stats %+v", ns.Stats())
		case <-time.After(10 * time.Millisecond):
			if ns.Stats().Drops[DropPingUnavailable] > 0 {
				skipUnlessPrivileged(t, "built-in ping needs a ping socket (net.ipv4.ping_group_range) or root/CAP_NET_RAW")
			}
		}
	}
}
