//go:build linux

package e2e

import (
	"testing"
	"time"

	bnetns "github.com/anyguard/anyguard/bench/netns"
)

// startStockGateway runs Debian's wireguard-go in gw as a plain WireGuard
// server with the same client-facing settings anyguard gets (port 51820,
// 10.99.0.1/16 on its TUN, MTU 1420, one client at 10.99.0.2/32); the
// kernel in gw forwards between its TUN and the private network. It is the
// baseline the anyguard tests are compared against (anyguard bench
// throughput measures it, with wireguard-go built from the module proxy).
// It returns the interface (and UAPI) name.
func startStockGateway(t testing.TB, gw *netns, keys keyPair, clientPub string) string {
	t.Helper()
	iface := uniqueIfaceName(t, "ags")
	p, err := bnetns.StartUserspace(gw.NS, []string{"wireguard-go"}, t.TempDir(), bnetns.Interface{
		Iface: iface, Address: bnetns.GWAddr + "/16", MTU: 1420, ListenPort: clientPort,
		PrivateKey: keys.Private, Peer: clientPub, AllowedIPs: []string{clientAddr + "/32"},
	})
	if err != nil {
		t.Fatalf("stock wireguard-go: %v", err)
	}
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	return iface
}

// TestHarnessStockBaseline runs the client checks through stock
// wireguard-go: it proves the harness (namespaces, veths, wg-quick client,
// ping, iperf3, cleanup) on this machine independently of anyguard.
func TestHarnessStockBaseline(t *testing.T) {
	tp := newTopology(t, topologyOptions{srvDefaultRoute: true})
	gwKeys, cliKeys := genKeyPair(t), genKeyPair(t)
	iface := startStockGateway(t, tp.gw, gwKeys, cliKeys.Public)
	startWGQuickClient(t, tp.cli, cliKeys, gwKeys.Public, gatewayEndpoint())
	checkClientPath(t, tp, iface, cliKeys.Public)
}
