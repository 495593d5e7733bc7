//go:build linux

package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// anyguardGateway is an `anyguard run` process in the gw namespace.
type anyguardGateway struct {
	proc  *proc
	iface string // egress.tun_name, also the UAPI socket's name
}

// startAnyguard writes the gateway's config (the contract the tests hold
// anyguard to) and runs it in gw until it is ready: its UAPI socket
// exists and it listens on the client port.
func startAnyguard(t testing.TB, gw *netns, mode string, keys keyPair, clientPub string) *anyguardGateway {
	t.Helper()
	bin := anyguardBinary(t)
	dir := t.TempDir()
	iface := uniqueIfaceName(t, "ag")
	keyFile := writeSecret(t, dir, "clients.key", keys.Private+"\n")
	config := fmt.Sprintf(`node: {name: gw1, region: test}
clients:
  private_key_file: %s
  listen_port: %d
  address: 10.99.0.1/16
  mtu: 1420
  peers:
    - name: alice
      public_key: %s
      allowed_ips: [%s/32]
egress:
  mode: %s
  tun_name: %s
  queues: 2
  prefixes: [10.1.0.0/16]
`, keyFile, clientPort, clientPub, clientAddr, mode, iface)
	configFile := writeSecret(t, dir, "gw.yaml", config)
	start := time.Now()
	p := startProc(t, "anyguard-"+mode, nil, "ip", "netns", "exec", gw.Name, bin, "run", "--config", configFile)
	waitFor(t, p, 20*time.Second, "anyguard UAPI socket "+uapiSocket(iface), func() bool {
		return fileExists(uapiSocket(iface))
	})
	waitUDPListening(t, gw, p, clientPort, 5*time.Second)
	t.Logf("anyguard (%s egress, %s) ready in %v", mode, iface, time.Since(start).Round(time.Millisecond))
	return &anyguardGateway{proc: p, iface: iface}
}

// testAnyguardMode runs the stock client's checks through anyguard.
func testAnyguardMode(t *testing.T, mode string) {
	// Netstack egress re-originates flows from gw's own address, so srv
	// gets no route back to the client network: that proves it.
	tp := newTopology(t, topologyOptions{srvDefaultRoute: mode == "tun"})
	gwKeys, cliKeys := genKeyPair(t), genKeyPair(t)
	g := startAnyguard(t, tp.gw, mode, gwKeys, cliKeys.Public)
	startWGQuickClient(t, tp.cli, cliKeys, gwKeys.Public, gatewayEndpoint())
	checkClientPath(t, tp, g.iface, cliKeys.Public)
	if !g.proc.Alive() {
		t.Errorf("anyguard exited during the checks: %v", g.proc.Err())
	}
	// The egress contract: tun mode makes the TUN tun_name carrying the
	// client-facing address; netstack mode makes no interface at all.
	out, err := runCmd(cmdTimeout, "ip", "-n", tp.gw.Name, "-o", "-4", "address", "show", "dev", g.iface)
	switch {
	case mode == "tun" && (err != nil || !strings.Contains(out, " 10.99.0.1/16 ")):
		t.Errorf("tun egress: want interface %s with 10.99.0.1/16 in gw, got %v: %s", g.iface, err, out)
	case mode == "netstack" && err == nil:
		t.Errorf("netstack egress: interface %s exists in gw: %s", g.iface, out)
	}
}

func TestTunMode(t *testing.T)      { testAnyguardMode(t, "tun") }
func TestNetstackMode(t *testing.T) { testAnyguardMode(t, "netstack") }

// TestBadInputKeepsServing floods the client port with garbage, including
// datagrams that look like WireGuard messages, and checks that the gateway
// survives and still carries the client's traffic.
func TestBadInputKeepsServing(t *testing.T) {
	tp := newTopology(t, topologyOptions{srvDefaultRoute: true})
	gwKeys, cliKeys := genKeyPair(t), genKeyPair(t)
	g := startAnyguard(t, tp.gw, "tun", gwKeys, cliKeys.Public)
	startWGQuickClient(t, tp.cli, cliKeys, gwKeys.Public, gatewayEndpoint())
	checkPing(t, tp)

	seed := uint64(time.Now().UnixNano())
	t.Logf("flood seed %d", seed)
	target := netip.AddrPortFrom(netip.MustParseAddr(gwUnderlay), clientPort)
	var sent, failed int
	start := time.Now()
	err := tp.cli.Do(func() error {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(cliUnderlay)})
		if err != nil {
			return err
		}
		defer conn.Close()
		sent, failed = floodGarbage(conn, target, rand.New(rand.NewPCG(seed, 0)), 20000)
		return nil
	})
	if err != nil {
		t.Fatalf("flood from %s: %v", tp.cli.Name, err)
	}
	t.Logf("flood: %d datagrams sent, %d send errors, in %v", sent, failed, time.Since(start).Round(time.Millisecond))
	if !g.proc.Alive() {
		t.Fatalf("anyguard died under the flood: %v", g.proc.Err())
	}
	checkPing(t, tp)
	checkHandshake(t, tp.gw, g.iface, cliKeys.Public)
	if !g.proc.Alive() {
		t.Fatalf("anyguard exited after the flood: %v", g.proc.Err())
	}
}

// WireGuard message sizes (type byte, 3 reserved bytes, then the body).
const (
	wgInitiationSize = 148
	wgResponseSize   = 92
	wgCookieSize     = 64
	wgTransportMin   = 32
)

// floodGarbage sends n datagrams to target: a quarter look like WireGuard
// messages (type 1..4, reserved bytes zero) with wrong sizes, a quarter
// like WireGuard messages of exactly the right size with random contents,
// and half random bytes of random length 0..2000. It paces itself in
// bursts so that the gateway reads most of them rather than the kernel
// dropping them at a full socket buffer.
func floodGarbage(conn *net.UDPConn, target netip.AddrPort, rng *rand.Rand, n int) (sent, failed int) {
	buf := make([]byte, 2001)
	for i := range n {
		var size int
		switch i % 4 {
		case 0: // WireGuard type, wrong size
			typ := 1 + rng.IntN(4)
			size = wrongSize(typ, rng)
			fillRandom(rng, buf[:size])
			if size > 0 {
				buf[0] = byte(typ)
			}
			for j := 1; j < 4 && j < size; j++ {
				buf[j] = 0
			}
		case 1: // WireGuard type, right size, random contents
			typ := 1 + rng.IntN(4)
			size = [...]int{wgInitiationSize, wgResponseSize, wgCookieSize,
				wgTransportMin + 16*rng.IntN(90)}[typ-1]
			fillRandom(rng, buf[:size])
			buf[0], buf[1], buf[2], buf[3] = byte(typ), 0, 0, 0
		default:
			size = rng.IntN(2001)
			fillRandom(rng, buf[:size])
		}
		if _, err := conn.WriteToUDPAddrPort(buf[:size], target); err != nil {
			failed++
		} else {
			sent++
		}
		if i%200 == 199 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	return sent, failed
}

// wrongSize returns a length in 1..2000 that is not a valid size for a
// WireGuard message of type typ.
func wrongSize(typ int, rng *rand.Rand) int {
	for {
		size := 1 + rng.IntN(2000)
		switch typ {
		case 1:
			if size != wgInitiationSize {
				return size
			}
		case 2:
			if size != wgResponseSize {
				return size
			}
		case 3:
			if size != wgCookieSize {
				return size
			}
		default:
			if size < wgTransportMin {
				return size
			}
			// Transport messages may have any size from 32 up:
			// only short ones are wrong.
			return 1 + rng.IntN(wgTransportMin-1)
		}
	}
}

func fillRandom(rng *rand.Rand, b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}
