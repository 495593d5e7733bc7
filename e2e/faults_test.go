//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/e2etest"
)

// The fault suite's topology. Every address exists only inside the
// test's namespaces.
//
//	cli 203.0.113.100 (stock client: wg-quick + wireguard-go, endpoint VIP)
//	evil 203.0.113.200, .10-.73 (replays, floods)
//	  │ bridge inet0 (the internet)
//	 lb  203.0.113.1 / 192.0.2.254: nftables DNAT of VIP 198.51.100.1:51820
//	  │                               + conntrack (nftLB)
//	wan: bridge br0, 192.0.2.0/24 (gossip and backbone ride it too)
//	  ├── gwA1 .1  gwA2 .2  (region-a)     ├── gwB1 .3  gwB2 .4  (region-b)
//	  │   lan0 10.1.0.1 / .2               │   lan0 10.2.0.1 / .2
//	  │ bridge in srvA: 10.1.0.10          │ bridge in srvB: 10.2.0.10
//	  └── skew .9 (a gossip member with its clock ahead, clock-skew only)
//
// Each region's server routes everything else via its first gateway (X1),
// as a VPC route table names one instance: the gateways the tests kill
// and restart are the second ones (X2), whose region keeps its route.
const (
	faultVIP     = "198.51.100.1"
	faultLBWAN   = "192.0.2.254"
	faultLBInet  = "203.0.113.1"
	faultCli     = "203.0.113.100"
	faultEvil    = "203.0.113.200"
	faultSkew    = "192.0.2.9"
	faultSources = 64 // evil's extra addresses for floods: 203.0.113.10 upwards
)

// faultLab is the running topology, shared by the scenarios of TestFaults.
type faultLab struct {
	cli, evil, lb, wan *netns
	gws                []*clusterRegion // gwA1, gwA2, gwB1, gwB2
	srv                [2]*netns
	lbal               *nftLB
	client             *wgQuickClient
	clientKeys, alice  keyPair
	gossip             keyPair
	initiation         <-chan []byte // the client's first handshake initiation, captured at lb
	flows              []*echoFlow   // cli→srvA, cli→srvB, srvA→cli, srvB→cli
	report             *faultReport
	top                *testing.T // TestFaults itself: owns what outlives a scenario
}

func (l *faultLab) gw(name string) *clusterRegion {
	for _, r := range l.gws {
		if r.name == name {
			return r
		}
	}
	panic("no gateway " + name)
}

// newFaultLab builds the topology, starts the four gateways and the
// client, and waits until the client's echoes flow both ways with gwA2 as
// its owner.
func newFaultLab(t *testing.T) *faultLab {
	t.Helper()
	requirePrivileged(t)
	e2etest.RequireTools(t, "nft", "conntrack")
	start := time.Now()
	l := &faultLab{report: &faultReport{}, top: t}
	l.wan, l.lb = newNetns(t, "wan"), newNetns(t, "lb")
	l.cli, l.evil = newNetns(t, "cli"), newNetns(t, "evil")
	addBridge(t, l.wan, "br0")
	addBridge(t, l.lb, "inet0")
	l.lb.ip(t, "address", "add", faultLBInet+"/24", "dev", "inet0")
	attachToBridge(t, l.wan, "br0", l.lb, "lb", "wan0", faultLBWAN+"/24")
	attachToBridge(t, l.lb, "inet0", l.cli, "cli", "eth0", faultCli+"/24")
	attachToBridge(t, l.lb, "inet0", l.evil, "evil", "eth0", faultEvil+"/24")
	for _, ns := range []*netns{l.cli, l.evil} {
		ns.ip(t, "route", "add", "default", "via", faultLBInet)
	}
	for i := range faultSources {
		l.evil.ip(t, "address", "add", fmt.Sprintf("203.0.113.%d/24", 10+i), "dev", "eth0")
	}
	for i, region := range []string{"a", "b"} {
		l.srv[i] = newNetns(t, "srv"+region)
		addBridge(t, l.srv[i], "br0")
		l.srv[i].ip(t, "address", "add", fmt.Sprintf("10.%d.0.10/24", i+1), "dev", "br0")
		for j := 1; j <= 2; j++ {
			r := &clusterRegion{
				name: fmt.Sprintf("gw%s%d", strings.ToUpper(region), j), region: "region-" + region,
				wan: fmt.Sprintf("192.0.2.%d", 2*i+j), lan: fmt.Sprintf("10.%d.0.%d", i+1, j),
				prefix: fmt.Sprintf("10.%d.0.0/16", i+1), srvAddr: fmt.Sprintf("10.%d.0.10", i+1), srv: l.srv[i],
			}
			r.gw = newNetns(t, strings.ToLower(r.name))
			attachToBridge(t, l.wan, "br0", r.gw, strings.ToLower(r.name), "eth0", r.wan+"/24")
			attachToBridge(t, l.srv[i], "br0", r.gw, strings.ToLower(r.name), "lan0", r.lan+"/24")
			r.gw.ip(t, "route", "add", "203.0.113.0/24", "via", faultLBWAN)
			if err := r.gw.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
				t.Fatal(err)
			}
			l.gws = append(l.gws, r)
		}
		l.srv[i].ip(t, "route", "add", "default", "via", fmt.Sprintf("10.%d.0.1", i+1))
	}
	var targets []string
	for _, r := range l.gws {
		targets = append(targets, r.wan)
	}
	l.lbal = newNftLB(t, l.lb, faultVIP, clientPort, targets, "wan0")
	t.Logf("namespaces ready in %v", time.Since(start).Round(time.Millisecond))

	l.clientKeys, l.alice, l.gossip = genKeyPair(t), genKeyPair(t), genKeyPair(t)
	for _, r := range l.gws {
		var peers []*clusterRegion
		for _, p := range l.gws {
			if p != r {
				peers = append(peers, p)
			}
		}
		startClusterGateway(t, r, l.clientKeys, l.alice.Public, l.gossip.Private, peers...)
	}
	for _, r := range l.gws {
		waitClusterGateway(t, r)
	}
	t.Logf("4 gateways started, joined and ready after %v", time.Since(start).Round(time.Millisecond))

	// The client's flow goes to gwA2 first; the capture sees its first
	// initiation on the way in.
	l.lbal.pin(t, faultCli, l.gw("gwA2").wan)
	vip := netip.AddrPortFrom(netip.MustParseAddr(faultVIP), clientPort)
	l.initiation = captureInitiation(t, l.lb, netip.MustParseAddr(faultCli), vip)
	l.client = startWGQuickClientRoutes(t, l.cli, l.alice, l.clientKeys.Public, l.lbal.endpoint(), clusterClients)
	for _, ns := range []*netns{l.srv[0], l.srv[1], l.cli} {
		startEcho(t, ns)
	}
	clientTun := netip.AddrPortFrom(netip.MustParseAddr(clientAddr), echoPort)
	l.flows = []*echoFlow{
		startEchoFlow(t, "cli→srvA", l.cli, netip.MustParseAddrPort("10.1.0.10:"+strconv.Itoa(echoPort))),
		startEchoFlow(t, "cli→srvB", l.cli, netip.MustParseAddrPort("10.2.0.10:"+strconv.Itoa(echoPort))),
		startEchoFlow(t, "srvA→cli", l.srv[0], clientTun),
		startEchoFlow(t, "srvB→cli", l.srv[1], clientTun),
	}
	l.waitFlows(t, time.Now(), 15*time.Second)
	l.waitOwner(t, "gwA2", 5*time.Second, nil)
	t.Logf("client up through the LB on gwA2, echoes both ways to both regions, after %v", time.Since(start).Round(time.Millisecond))
	return l
}

// waitFlows waits up to timeout until every flow has an echo of a
// datagram sent after t0, and fails t naming those that have none.
func (l *faultLab) waitFlows(t *testing.T, t0 time.Time, timeout time.Duration) {
	t.Helper()
	var missing []string
	deadline := time.Now().Add(timeout)
	for _, f := range l.flows {
		if _, ok := f.waitEcho(t0, time.Until(deadline)); !ok {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("no echo within %v on %s", timeout, strings.Join(missing, ", "))
	}
}

// waitOwner waits until every running gateway's /status names owner for
// alice; skip lists gateways not asked (dead ones).
func (l *faultLab) waitOwner(t *testing.T, owner string, timeout time.Duration, skip []string) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for {
		views := l.owners(skip)
		last = fmt.Sprint(views)
		agreed := true
		for _, v := range views {
			agreed = agreed && v == owner
		}
		if agreed {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("alice's owner is not %s everywhere after %v: %s", owner, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// owners is what every gateway not in skip names as alice's owner.
func (l *faultLab) owners(skip []string) map[string]string {
	views := make(map[string]string)
	for _, r := range l.gws {
		if slices.Contains(skip, r.name) {
			continue
		}
		st, err := readStatus(r)
		if err != nil {
			views[r.name] = "(" + err.Error() + ")"
			continue
		}
		views[r.name] = st.owner("alice")
	}
	return views
}

// ensureClient makes sure that the client's echoes flow and that every
// gateway names the same owner before a scenario that needs a healthy
// start (an earlier scenario may have failed and left the client cut
// off), and returns that owner. If not, it notes it and starts the client
// again (wg-quick down, up: a new handshake through the LB to fallback).
func (l *faultLab) ensureClient(t *testing.T, row *faultRow, fallback string) string {
	t.Helper()
	healthy := true
	now := time.Now()
	for _, f := range l.flows {
		if _, ok := f.waitEcho(now, 2*time.Second); !ok {
			healthy = false
		}
	}
	views := l.owners(nil)
	owner := views[l.gws[0].name]
	for _, v := range views {
		healthy = healthy && v == owner
	}
	if healthy && owner != "" {
		return owner
	}
	row.note(t, "client not healthy at the start (owners %v): restarted it", views)
	l.lbal.pin(t, faultCli, l.gw(fallback).wan)
	l.client.down(t)
	l.lbal.forget(t, faultCli)
	l.client.up(t)
	l.waitFlows(t, time.Now(), 15*time.Second)
	l.waitOwner(t, fallback, 5*time.Second, nil)
	return fallback
}

// measureMove records, for a flow moved at t0, how soon each echo flow
// recovered (failing t beyond limit) and what was lost in [t0-lead,
// t0+span).
func (l *faultLab) measureMove(t *testing.T, row *faultRow, t0 time.Time, lead, span, limit time.Duration) {
	t.Helper()
	for _, f := range l.flows {
		d, ok := f.waitEcho(t0, 10*time.Second)
		if !ok {
			t.Errorf("%s: no echo within 10 s of the move", f.name)
			row.Recovery[f.name] = -1
			continue
		}
		row.Recovery[f.name] = d
		if d > limit {
			t.Errorf("%s: first echo %v after the move, want ≤ %v", f.name, d.Round(time.Millisecond), limit)
		}
	}
	if rest := time.Until(t0.Add(span + time.Second)); rest > 0 {
		time.Sleep(rest) // late echoes of the window are in after this
	}
	l.countLoss(row, t0.Add(-lead), t0.Add(span))
}

// countLoss adds what each flow sent and lost in [from, to) to row.
func (l *faultLab) countLoss(row *faultRow, from, to time.Time) {
	for _, f := range l.flows {
		sent, lost := f.window(from, to)
		row.Sent[f.name] += sent
		row.Lost[f.name] += lost
	}
}

// TestFaults runs the fault scenarios of the fault suite (docs/faults.md)
// one after another on one topology: four `anyguard run` gateways in two
// regions behind an NLB-like load balancer (nftables DNAT + conntrack),
// a stock client, and a server per region. Each scenario counts what
// reached the client and the servers (UDP echoes both ways, every 20 ms),
// not only that the processes lived; the table of what each measured is
// logged and written to bin/faults.json and bin/faults.md.
func TestFaults(t *testing.T) {
	testStart := time.Now()
	l := newFaultLab(t)
	defer func() {
		l.report.write(t, time.Since(testStart))
	}()
	scenarios := []struct {
		name string
		run  func(*testing.T, *faultLab, *faultRow)
	}{
		{"lb-move", scenarioLBMove},
		{"kill-owner", scenarioKillOwner},
		{"restart-same-name", scenarioRestart},
		{"restart-in-place", scenarioRestartInPlace},
		{"sighup-broken-config", scenarioBrokenReload},
		{"junk-flood", scenarioFlood},
		{"clock-skew", scenarioClockSkew},
		{"replay", scenarioReplay},
		{"partition", scenarioPartition},
	}
	for _, s := range scenarios {
		row := newFaultRow(s.name)
		t.Run(s.name, func(t *testing.T) {
			start := time.Now()
			defer func() {
				row.Took = time.Since(start)
				row.Failed = t.Failed()
			}()
			s.run(t, l, row)
		})
		l.report.Rows = append(l.report.Rows, row)
	}
}
