//go:build linux

package e2e

import (
	"testing"
	"time"

	bnetns "github.com/anyguard/anyguard/bench/netns"
)

// Addresses of the topology (see bench/netns). The underlay is TEST-NET-1
// and, like the private network, exists only inside the test's namespaces.
const (
	gwUnderlay  = bnetns.GWUnderlay
	cliUnderlay = bnetns.CliUnderlay
	clientPort  = bnetns.ClientPort
	srvAddr     = bnetns.SrvAddr
	clientAddr  = bnetns.ClientAddr
)

// topology is cli ── gw ── srv, each in its own namespace.
type topology struct {
	cli, gw, srv *netns
	iperf        *proc
}

type topologyOptions struct {
	// srvDefaultRoute gives srv a default route via gw, which it needs
	// when the gateway forwards clients' packets unchanged (tun egress,
	// stock wireguard-go). Netstack egress re-originates from gw's own
	// address and must work without it.
	srvDefaultRoute bool
}

// newTopology builds the namespaces, veths and addresses, and starts
// iperf3 -s on srv. Everything is removed when t ends.
func newTopology(t testing.TB, opts topologyOptions) *topology {
	t.Helper()
	requirePrivileged(t)
	start := time.Now()
	dir := t.TempDir()
	tp, err := bnetns.NewTopology(bnetns.TopologyOptions{Prefix: nsPrefix, SrvDefaultRoute: opts.srvDefaultRoute, Dir: dir})
	if err != nil {
		t.Fatalf("topology: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- log of iperf3 -s ---\n%s", tp.Iperf.Log())
		}
		if err := tp.Close(); err != nil {
			t.Errorf("removing topology: %v", err)
		}
	})
	t.Logf("namespaces: cli=%s gw=%s srv=%s; ready in %v", tp.Cli.Name, tp.GW.Name, tp.Srv.Name,
		time.Since(start).Round(time.Millisecond))
	return &topology{cli: &netns{tp.Cli}, gw: &netns{tp.GW}, srv: &netns{tp.Srv}, iperf: &proc{tp.Iperf}}
}

// gatewayEndpoint is where clients reach the gateway.
func gatewayEndpoint() string { return bnetns.GatewayEndpoint() }

// waitUDPListening waits until something in ns listens on UDP port.
func waitUDPListening(t testing.TB, ns *netns, p *proc, port int, timeout time.Duration) {
	t.Helper()
	if err := bnetns.WaitUDPListening(ns.NS, p.Proc, port, timeout); err != nil {
		t.Fatal(err)
	}
}
