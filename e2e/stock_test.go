//go:build linux

package e2e

import (
	"strconv"
	"testing"
	"time"
)

// startStockGateway runs Debian's wireguard-go in gw as a plain WireGuard
// server with the same client-facing settings anyguard gets (port 51820,
// 10.99.0.1/16 on its TUN, MTU 1420, one client at 10.99.0.2/32); the
// kernel in gw forwards between its TUN and the private network. It is the
// baseline the anyguard tests and benchmarks are compared against. It
// returns the interface (and UAPI) name.
func startStockGateway(t testing.TB, gw *netns, keys keyPair, clientPub string) string {
	t.Helper()
	iface := uniqueIfaceName(t, "ags")
	keyFile := writeSecret(t, t.TempDir(), "gateway.key", keys.priv+"\n")
	p := startProc(t, "stock-wireguard-go", []string{"LOG_LEVEL=verbose"},
		"ip", "netns", "exec", gw.name, "wireguard-go", "--foreground", iface)
	waitFor(t, p, 20*time.Second, "UAPI socket "+uapiSocket(iface), func() bool {
		return fileExists(uapiSocket(iface))
	})
	gw.mustExec(t, "wg", "set", iface, "listen-port", strconv.Itoa(clientPort), "private-key", keyFile,
		"peer", clientPub, "allowed-ips", clientAddr+"/32")
	gw.ip(t, "address", "add", "10.99.0.1/16", "dev", iface)
	gw.ip(t, "link", "set", iface, "mtu", "1420", "up")
	waitUDPListening(t, gw, p, clientPort, 5*time.Second)
	return iface
}

// TestHarnessStockBaseline runs the client checks through stock
// wireguard-go: it proves the harness (namespaces, veths, wg-quick client,
// ping, iperf3, cleanup) on this machine independently of anyguard, and
// gives the baseline figures.
func TestHarnessStockBaseline(t *testing.T) {
	tp := newTopology(t, topologyOptions{srvDefaultRoute: true})
	gwKeys, cliKeys := genKeyPair(t), genKeyPair(t)
	iface := startStockGateway(t, tp.gw, gwKeys, cliKeys.pub)
	startWGQuickClient(t, tp.cli, cliKeys, gwKeys.pub, gatewayEndpoint())
	checkClientPath(t, tp, iface, cliKeys.pub)
}
