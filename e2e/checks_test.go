//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
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
	out, err := tp.cli.exec(cmdTimeout, "ping", "-n", "-c", "3", "-W", "2", srvAddr)
	if err != nil {
		t.Fatalf("ping %s from client: %v\n%s", srvAddr, err, out)
	}
	t.Logf("ping: %s", lastLines(out, 2))
}

// checkHandshake asserts that the gateway's UAPI lists the client with a
// completed handshake.
func checkHandshake(t testing.TB, gw *netns, gwIface, clientPub string) {
	t.Helper()
	peers, out, err := wgShowDump(gw, gwIface)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.publicKey != clientPub {
			continue
		}
		if p.lastHandshake.IsZero() {
			t.Fatalf("client %s has no handshake in wg show %s dump:\n%s", clientPub, gwIface, out)
		}
		t.Logf("client handshake %v ago, endpoint %s, rx %d B, tx %d B",
			time.Since(p.lastHandshake).Round(time.Second), p.endpoint, p.rxBytes, p.txBytes)
		return
	}
	t.Fatalf("client %s missing from wg show %s dump:\n%s", clientPub, gwIface, out)
}

// iperfResult is the part of iperf3 --json output the checks read.
type iperfResult struct {
	Error string `json:"error"`
	End   struct {
		SumSent     iperfSum `json:"sum_sent"`
		SumReceived iperfSum `json:"sum_received"`
	} `json:"end"`
}

type iperfSum struct {
	Seconds       float64 `json:"seconds"`
	Bytes         int64   `json:"bytes"`
	BitsPerSecond float64 `json:"bits_per_second"`
	Retransmits   int64   `json:"retransmits"`
	JitterMs      float64 `json:"jitter_ms"`
	LostPackets   int64   `json:"lost_packets"`
	Packets       int64   `json:"packets"`
	LostPercent   float64 `json:"lost_percent"`
}

// runIperf runs a 3 s iperf3 client in cli against srv's server.
func runIperf(t testing.TB, tp *topology, extra ...string) iperfResult {
	t.Helper()
	args := append([]string{"iperf3", "-c", srvAddr, "-p", strconv.Itoa(iperfPort),
		"-t", "3", "--connect-timeout", "5000", "--json"}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", tp.cli.name}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var r iperfResult
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		t.Fatalf("iperf3 %v: %v, output not JSON (%v):\n%s%s", extra, err, jerr, out, stderr.Bytes())
	}
	if err != nil || r.Error != "" {
		t.Fatalf("iperf3 %v: %v: %s", extra, err, r.Error)
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
