//go:build linux

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	bnetns "github.com/anyguard/anyguard/bench/netns"
)

// checkClientPath runs, from the client namespace through the gateway
// whose UAPI interface is gwIface, the checks every gateway must pass:
// ping, iperf3 over TCP and UDP, and a handshake with clientPub in wg show.
func checkClientPath(t *testing.T, tp *topology, gwIface, clientPub string) {
	t.Run("ping", func(t *testing.T) { checkPing(t, tp) })
	t.Run("iperf3-tcp", func(t *testing.T) {
		r := runIperf(t, tp)
		rx := r.End.SumReceived
		t.Logf("TCP: sent %.1f Mbit/s, received %.1f Mbit/s, %d retransmits",
			r.End.SumSent.BitsPerSecond/1e6, rx.BitsPerSecond/1e6, r.End.SumSent.Retransmits)
		if rx.Bytes <= 0 || rx.BitsPerSecond <= 0 {
			t.Errorf("TCP: nothing received: %+v", rx)
		}
	})
	t.Run("iperf3-udp", func(t *testing.T) {
		r := runIperf(t, tp, "-u", "-b", "100M")
		rx := r.End.SumReceived
		got := rx.Packets - rx.LostPackets
		t.Logf("UDP at 100 Mbit/s offered: sent %.1f Mbit/s, %d of %d datagrams received (%.1f%% lost), jitter %.3f ms",
			r.End.SumSent.BitsPerSecond/1e6, got, rx.Packets, rx.LostPercent, rx.JitterMs)
		if rx.Packets <= 0 || got <= 0 || rx.BitsPerSecond <= 0 {
			t.Errorf("UDP: nothing received: %+v", rx)
		}
	})
	t.Run("handshake", func(t *testing.T) { checkHandshake(t, tp.gw, gwIface, clientPub) })
}

// checkPing pings the private server from the client.
func checkPing(t testing.TB, tp *topology) {
	t.Helper()
	out, err := tp.cli.Exec(cmdTimeout, "ping", "-n", "-c", "3", "-W", "2", srvAddr)
	if err != nil {
		t.Fatalf("ping %s from client: %v\n%s", srvAddr, err, out)
	}
	t.Logf("ping: %s", lastLines(out, 2))
}

// checkHandshake asserts that the gateway's UAPI lists the client with a
// completed handshake.
func checkHandshake(t testing.TB, gw *netns, gwIface, clientPub string) {
	t.Helper()
	peers, out, err := bnetns.WGShowDump(gw.NS, gwIface)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.PublicKey != clientPub {
			continue
		}
		if p.LastHandshake.IsZero() {
			t.Fatalf("client %s has no handshake in wg show %s dump:\n%s", clientPub, gwIface, out)
		}
		t.Logf("client handshake %v ago, endpoint %s, rx %d B, tx %d B",
			time.Since(p.LastHandshake).Round(time.Second), p.Endpoint, p.RxBytes, p.TxBytes)
		return
	}
	t.Fatalf("client %s missing from wg show %s dump:\n%s", clientPub, gwIface, out)
}

// runIperf runs a 3 s iperf3 client in cli against srv's server.
func runIperf(t testing.TB, tp *topology, extra ...string) bnetns.IperfResult {
	t.Helper()
	r, err := bnetns.Iperf(context.Background(), tp.cli.NS, srvAddr, 3*time.Second, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// lastLines returns the last n non-empty lines of s joined by " | ".
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
