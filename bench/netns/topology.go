//go:build linux

package netns

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Addresses of the topology. The underlay is TEST-NET-1 and, like the
// private network, exists only inside the topology's namespaces.
const (
	GWUnderlay  = "192.0.2.1"
	CliUnderlay = "192.0.2.2"
	ClientPort  = 51820

	GWLAN      = "10.1.0.1"
	SrvAddr    = "10.1.0.10"
	IperfPort  = 5201
	ClientAddr = "10.99.0.2"
	GWAddr     = "10.99.0.1"
)

// Topology is cli ── gw ── srv, each in its own namespace:
//
//	cli (a WireGuard client)
//	  │ veth ul0, underlay 192.0.2.0/24
//	gw  (the gateway under test, ip_forward=1)
//	  │ veth lan0, 10.1.0.0/24
//	srv (the private network: 10.1.0.10, iperf3 -s)
type Topology struct {
	Cli, GW, Srv *NS
	Iperf        *Proc
	Dir          string // scratch directory for logs and keys
	ownDir       bool
}

// TopologyOptions shape a Topology.
type TopologyOptions struct {
	// Prefix starts the namespaces' names (see Name).
	Prefix string
	// SrvDefaultRoute gives srv a default route via gw, which it needs
	// when the gateway forwards clients' packets unchanged (tun egress,
	// stock wireguard-go). Netstack egress re-originates from gw's own
	// address and works without it.
	SrvDefaultRoute bool
	// Dir is where logs go; "" makes a temporary directory that Close
	// removes.
	Dir string
}

// NewTopology builds the namespaces, veths and addresses, and starts
// iperf3 -s on srv. On error nothing is left behind; otherwise Close
// removes it all.
func NewTopology(opts TopologyOptions) (_ *Topology, err error) {
	tp := &Topology{Dir: opts.Dir}
	defer func() {
		if err != nil {
			tp.Close()
		}
	}()
	if tp.Dir == "" {
		if tp.Dir, err = os.MkdirTemp("", "anyguard-netns-"); err != nil {
			return nil, err
		}
		tp.ownDir = true
	}
	for _, r := range []struct {
		ns   **NS
		role string
	}{{&tp.Cli, "cli"}, {&tp.GW, "gw"}, {&tp.Srv, "srv"}} {
		if *r.ns, err = New(opts.Prefix, r.role); err != nil {
			return nil, err
		}
	}
	steps := [][]string{
		// Underlay: cli ul0 192.0.2.2/24 ── gw ul0 192.0.2.1/24.
		{tp.Cli.Name, "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", tp.GW.Name},
		{tp.Cli.Name, "address", "add", CliUnderlay + "/24", "dev", "ul0"},
		{tp.GW.Name, "address", "add", GWUnderlay + "/24", "dev", "ul0"},
		{tp.Cli.Name, "link", "set", "ul0", "up"},
		{tp.GW.Name, "link", "set", "ul0", "up"},
		// Private network: gw lan0 10.1.0.1/24 ── srv lan0 10.1.0.10/24.
		{tp.GW.Name, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0", "netns", tp.Srv.Name},
		{tp.GW.Name, "address", "add", GWLAN + "/24", "dev", "lan0"},
		{tp.Srv.Name, "address", "add", SrvAddr + "/24", "dev", "lan0"},
		{tp.GW.Name, "link", "set", "lan0", "up"},
		{tp.Srv.Name, "link", "set", "lan0", "up"},
	}
	if opts.SrvDefaultRoute {
		steps = append(steps, []string{tp.Srv.Name, "route", "add", "default", "via", GWLAN})
	}
	for _, s := range steps {
		if _, err := (&NS{Name: s[0]}).IP(s[1:]...); err != nil {
			return nil, err
		}
	}
	if err := tp.GW.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return nil, err
	}
	tp.Iperf, err = Start("iperf3-server", filepath.Join(tp.Dir, "iperf3-server.log"), nil,
		tp.Srv.Command("iperf3", "-s", "-B", SrvAddr, "-p", strconv.Itoa(IperfPort), "--forceflush")...)
	if err != nil {
		return nil, err
	}
	if err := WaitTCPListening(tp.Srv, tp.Iperf, IperfPort, 10*time.Second); err != nil {
		return nil, err
	}
	return tp, nil
}

// Close stops the processes and removes the namespaces (and the scratch
// directory when NewTopology made it).
func (tp *Topology) Close() error {
	var errs error
	if tp.Iperf != nil {
		tp.Iperf.Stop(5 * time.Second)
	}
	for _, ns := range []*NS{tp.Cli, tp.GW, tp.Srv} {
		if ns != nil {
			errs = errors.Join(errs, ns.Remove())
		}
	}
	if tp.ownDir && tp.Dir != "" {
		os.RemoveAll(tp.Dir)
	}
	return errs
}

// GatewayEndpoint is where clients reach the gateway.
func GatewayEndpoint() string {
	return net.JoinHostPort(GWUnderlay, strconv.Itoa(ClientPort))
}

// WaitUDPListening waits until something in ns listens on UDP port.
func WaitUDPListening(ns *NS, p *Proc, port int, timeout time.Duration) error {
	return waitListening(ns, p, "-Hlun", port, timeout)
}

// WaitTCPListening waits until something in ns listens on TCP port.
func WaitTCPListening(ns *NS, p *Proc, port int, timeout time.Duration) error {
	return waitListening(ns, p, "-Hltn", port, timeout)
}

func waitListening(ns *NS, p *Proc, flags string, port int, timeout time.Duration) error {
	what := fmt.Sprintf("port %d (ss %s) in %s", port, flags, ns.Name)
	return WaitFor(p, timeout, what, func() bool {
		out, err := ns.Exec(CmdTimeout, "ss", flags, "sport = :"+strconv.Itoa(port))
		return err == nil && strings.TrimSpace(out) != ""
	})
}
