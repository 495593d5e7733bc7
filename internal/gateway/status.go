package gateway

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/anyguard/anyguard/device"
	"github.com/anyguard/anyguard/health"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/router"
)

// sessionLifetime is WireGuard's Reject-After-Time: a peer whose last
// handshake is older has no usable session.
const sessionLifetime = 180 * time.Second

// ClientStatus is the client device's view of the configured clients: its
// Status without the probe peer.
func (g *Gateway) ClientStatus() ([]device.PeerStatus, error) {
	peers, err := g.clients.Status()
	return slices.DeleteFunc(peers, func(p device.PeerStatus) bool { return g.probe.IsProbe(p.PublicKey) }), err
}

// ObserveConvergence records how long an ownership change took to reach
// every gateway (anyguard_convergence_seconds, /status).
func (g *Gateway) ObserveConvergence(d time.Duration) { g.owners.ObserveConvergence(d) }

// clientView is a configured client with the device's view of it.
type clientView struct {
	cfg   config.Peer
	state device.PeerStatus
}

// liveClients joins the device's live client peers with their configured
// names. It costs time in proportion to the live peers, not to the
// configured clients. Peers the configuration does not name (set with
// wg(8)) are left out.
func (g *Gateway) liveClients() []clientView {
	peers, _ := g.ClientStatus()
	out := make([]clientView, 0, len(peers))
	for _, p := range peers {
		if c, ok := g.index.Peer(p.PublicKey); ok {
			out = append(out, clientView{cfg: c, state: p})
		}
	}
	return out
}

func hasSession(p device.PeerStatus, now time.Time) bool {
	return !p.LastHandshake.IsZero() && now.Sub(p.LastHandshake) < sessionLifetime
}

// Metrics implements health.MetricsSource.
func (g *Gateway) Metrics() health.Metrics {
	cfg, digest := g.config()
	now := time.Now()
	js := g.admission.Stats()
	m := health.Metrics{
		Node:              cfg.Node.Name,
		Region:            cfg.Node.Region,
		Peers:             map[string]int{"active": 0, "stale": 0, "never": 0},
		ClientsConfigured: js.Configured,
		PeersAdded:        js.Added,
		PeersRemoved:      js.Removed,
		Initiations:       js.Initiations,
		OwnershipChanges:  g.owners.counts(),
		Members:           map[string]int{"alive": 1, "dead": 0, "left": 0},
		ConfigDigest:      digest,
		ConfigReloads:     map[string]uint64{"success": g.reloadOK.Load(), "failure": g.reloadFailed.Load()},
		Convergence:       g.owners.convergence.Snapshot(),
	}
	if g.members != nil {
		g.members.Metrics(&m)
		m.Claims = g.recovery.Stats()
		if g.relay != nil {
			m.Relayed = g.relay.Stats()
		}
	}
	for _, c := range g.liveClients() {
		switch {
		case hasSession(c.state, now):
			m.Peers["active"]++
			if g.Cluster() == nil {
				m.OwnedClients++ // alone, a gateway owns every client it holds a session with
			}
		case c.state.LastHandshake.IsZero():
			m.Peers["never"]++
		default:
			m.Peers["stale"]++
		}
		m.Clients = append(m.Clients, health.ClientCounters{
			Name: c.cfg.Name, RxBytes: c.state.RxBytes, TxBytes: c.state.TxBytes,
			LastHandshake: c.state.LastHandshake, HasSession: hasSession(c.state, now),
			AllowedIPCount: len(c.cfg.AllowedIPs),
		})
	}
	bs := g.clients.BindStats()
	m.HandshakeMessages = map[string]uint64{"initiation": bs.Initiations, "response": bs.Responses, "cookie_reply": bs.CookieReplies}
	m.JunkDatagrams = bs.Junk

	rs := g.router.Stats()
	paths := map[string]*[4]uint64{"client": {}, "backbone": {}, "egress": {}}
	for _, p := range rs.Ports {
		c := paths[p.Kind.String()]
		if c == nil {
			continue
		}
		c[0] += p.RxPackets
		c[1] += p.RxBytes
		c[2] += p.TxPackets
		c[3] += p.TxBytes
	}
	for _, name := range []string{"client", "backbone", "egress"} {
		c := paths[name]
		m.Paths = append(m.Paths,
			health.PathCounters{Path: name, Direction: "rx", Packets: c[0], Bytes: c[1]},
			health.PathCounters{Path: name, Direction: "tx", Packets: c[2], Bytes: c[3]})
	}
	for _, r := range router.DropReasons() {
		m.Drops = append(m.Drops, health.DropCounter{Stage: "router", Reason: r.String(), Packets: rs.Drops[r]})
	}
	if g.netstack != nil {
		ns := g.netstack.Stats()
		for r, n := range ns.Drops {
			m.Drops = append(m.Drops, health.DropCounter{Stage: "netstack", Reason: r.String(), Packets: n})
		}
		slices.SortFunc(m.Drops, func(a, b health.DropCounter) int {
			return strings.Compare(a.Stage+"/"+a.Reason, b.Stage+"/"+b.Reason)
		})
	}
	lastOK, rtt, _ := g.probe.Snapshot()
	ok, failed := g.probe.Counts()
	m.Probe = health.ProbeCounters{
		Successes: ok, Failures: failed,
		LastRTT: rtt, LastSuccess: lastOK,
	}
	return m
}

// Status implements health.StatusSource.
func (g *Gateway) Status() health.Status {
	cfg, digest := g.config()
	now := time.Now()
	prefixes := prefixStrings(cfg.Egress.Prefixes)
	st := health.Status{
		Node: health.NodeStatus{
			Name: cfg.Node.Name, Region: cfg.Node.Region, Started: g.started,
			EgressMode: cfg.Egress.Mode, ListenPort: int(g.clients.ListenPort()),
			ConfigDigest: digest, Prefixes: prefixes,
		},
		Members: []health.MemberStatus{{
			Name: cfg.Node.Name, Region: cfg.Node.Region, State: "alive", Self: true,
			Ready: true, ConfigDigest: digest,
		}},
		Regions:     []health.RegionStatus{{Name: cfg.Node.Region, Members: 1, Prefixes: prefixes}},
		Convergence: health.ConvergenceFrom(g.owners.convergence.Snapshot()),
	}
	st.RefusedPrefixes = []health.RefusedPrefixStatus{}
	if g.members != nil {
		g.members.Status(&st)
	}
	lastOK, rtt, err := g.probe.Snapshot()
	ok, failed := g.probe.Counts()
	st.Probe = health.ProbeStatus{
		Target: g.probe.Describe(), OK: err == nil, LastSuccess: lastOK, RTTSeconds: rtt.Seconds(),
		Successes: ok, Failures: failed,
	}
	if err != nil {
		st.Probe.Error = err.Error()
	}
	js := g.admission.Stats()
	st.ClientsConfigured, st.PeersLive = js.Configured, js.Live
	views := g.liveClients()
	if c := g.Cluster(); c != nil {
		// Clients owned anywhere, live here or not.
		listed := make(map[keys.Key]bool, len(views))
		for _, v := range views {
			listed[v.cfg.PublicKey] = true
		}
		for _, rec := range c.Table().Snapshot() {
			if p, ok := g.index.Peer(rec.Client); ok && !listed[rec.Client] && !rec.Released() {
				views = append(views, clientView{cfg: p})
			}
		}
	}
	slices.SortFunc(views, func(a, b clientView) int { return strings.Compare(a.cfg.Name, b.cfg.Name) })
	st.Clients = make([]health.ClientStatus, 0, len(views))
	for _, c := range views {
		cs := health.ClientStatus{
			Name: c.cfg.Name, AllowedIPs: prefixStrings(c.cfg.AllowedIPs),
			LastHandshake: c.state.LastHandshake, RxBytes: c.state.RxBytes, TxBytes: c.state.TxBytes,
		}
		if c.state.Endpoint.IsValid() {
			cs.Endpoint = c.state.Endpoint.String()
		}
		switch cl := g.Cluster(); {
		case cl != nil:
			if rec, ok := cl.Owner(c.cfg.PublicKey); ok && !rec.Released() {
				cs.Owner = rec.Owner
				if cs.Endpoint == "" && rec.Endpoint.IsValid() {
					cs.Endpoint = rec.Endpoint.String()
				}
			}
		case hasSession(c.state, now):
			cs.Owner = cfg.Node.Name
		}
		st.Clients = append(st.Clients, cs)
	}
	return st
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}
