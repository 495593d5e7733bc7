//go:build linux

package e2e

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Addresses of the topology. The underlay is TEST-NET-1 and, like the
// private network, exists only inside the test's namespaces.
const (
	gwUnderlay  = "192.0.2.1"
	cliUnderlay = "192.0.2.2"
	clientPort  = 51820

	gwLAN      = "10.1.0.1"
	srvAddr    = "10.1.0.10"
	iperfPort  = 5201
	clientAddr = "10.99.0.2"
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
	tp := &topology{
		cli: newNetns(t, "cli"),
		gw:  newNetns(t, "gw"),
		srv: newNetns(t, "srv"),
	}
	t.Logf("namespaces: cli=%s gw=%s srv=%s", tp.cli.name, tp.gw.name, tp.srv.name)

	// Underlay: cli ul0 192.0.2.2/24 ── gw ul0 192.0.2.1/24.
	tp.cli.ip(t, "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", tp.gw.name)
	tp.cli.ip(t, "address", "add", cliUnderlay+"/24", "dev", "ul0")
	tp.gw.ip(t, "address", "add", gwUnderlay+"/24", "dev", "ul0")
	tp.cli.ip(t, "link", "set", "ul0", "up")
	tp.gw.ip(t, "link", "set", "ul0", "up")

	// Private network: gw lan0 10.1.0.1/24 ── srv lan0 10.1.0.10/24.
	tp.gw.ip(t, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0", "netns", tp.srv.name)
	tp.gw.ip(t, "address", "add", gwLAN+"/24", "dev", "lan0")
	tp.srv.ip(t, "address", "add", srvAddr+"/24", "dev", "lan0")
	tp.gw.ip(t, "link", "set", "lan0", "up")
	tp.srv.ip(t, "link", "set", "lan0", "up")
	if opts.srvDefaultRoute {
		tp.srv.ip(t, "route", "add", "default", "via", gwLAN)
	}
	tp.gw.sysctl(t, "net.ipv4.ip_forward", "1")

	tp.iperf = startProc(t, "iperf3-server", nil, "ip", "netns", "exec", tp.srv.name,
		"iperf3", "-s", "-B", srvAddr, "-p", strconv.Itoa(iperfPort), "--forceflush")
	waitFor(t, tp.iperf, 10*time.Second, "iperf3 -s to listen", func() bool {
		out, err := tp.srv.exec(cmdTimeout, "ss", "-Hltn", "sport = :"+strconv.Itoa(iperfPort))
		return err == nil && strings.TrimSpace(out) != ""
	})
	t.Logf("topology ready in %v", time.Since(start).Round(time.Millisecond))
	return tp
}

// gatewayEndpoint is where clients reach the gateway.
func gatewayEndpoint() string {
	return net.JoinHostPort(gwUnderlay, strconv.Itoa(clientPort))
}

// waitUDPListening waits until something in ns listens on UDP port.
func waitUDPListening(t testing.TB, ns *netns, p *proc, port int, timeout time.Duration) {
	t.Helper()
	waitFor(t, p, timeout, "UDP port "+strconv.Itoa(port)+" in "+ns.name, func() bool {
		out, err := ns.exec(cmdTimeout, "ss", "-Hlun", "sport = :"+strconv.Itoa(port))
		return err == nil && strings.TrimSpace(out) != ""
	})
}
