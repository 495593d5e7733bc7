package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/device"
	"github.com/anyguard/anyguard/health"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/router"
)

// sessionLifetime is WireGuard's Reject-After-Time: a peer whose last
// handshake is older has no usable session.
const sessionLifetime = 180 * time.Second

// Checks returns the gateway's readiness checks, in the order /readyz
// lists them. Add a check here for each new condition of readiness (the
// cluster's "joined, or alone by configuration" goes here).
func (g *Gateway) Checks() []health.Check {
	checks := []health.Check{
		{Name: "clients", Run: g.checkClients},
		{Name: "router", Run: g.checkRouter},
		{Name: "egress", Run: g.checkEgress},
		{Name: "dataplane", Run: g.probe.check},
	}
	if g.cluster != nil {
		checks = append(checks, health.Check{Name: "cluster", Run: g.cluster.check},
			health.Check{Name: "clocks", Run: g.cluster.checkClocks, Advisory: true})
	}
	return checks
}

// DrainSteps returns what the gateway does after the drain window, before
// it exits. Leaving the cluster gracefully goes here.
func (g *Gateway) DrainSteps() []health.Step {
	if g.cluster == nil {
		return nil
	}
	return []health.Step{{Name: "leave cluster", Run: func(context.Context) error { return g.cluster.leave() }}}
}

// BeginDrain tells the other gateways that this one is draining, so they
// route other regions' traffic for its prefixes to a gateway that is not,
// while its own sessions keep flowing until the drain window ends.
func (g *Gateway) BeginDrain() {
	if g.cluster != nil {
		g.cluster.setState(cluster.StateDraining)
	}
}

// checkClients: the client device has not been closed. (Whether its UDP
// socket receives and sends is the data-path probe's job; asking the
// device for its port would cost a UAPI dump of every peer.)
func (g *Gateway) checkClients(context.Context) error {
	select {
	case <-g.clients.Device().Wait():
		return errors.New("client device is closed")
	default:
		return nil
	}
}

// checkRouter: the forwarding table sends the gateway's own address to the
// egress and the probe's to the client device.
func (g *Gateway) checkRouter(context.Context) error {
	if out, ok := g.router.Lookup(g.probe.dst); !ok || out != g.egressPort {
		return fmt.Errorf("router: no route from %s to the egress", g.probe.dst)
	}
	if out, ok := g.router.Lookup(g.probe.src); !ok || out != g.clientPort {
		return fmt.Errorf("router: no route from %s to the client device", g.probe.src)
	}
	return nil
}

// checkEgress: in tun mode the interface is up, in whatever namespace it
// has been moved to. (Whether it carries packets is the data-path probe's
// job.)
func (g *Gateway) checkEgress(context.Context) error {
	if g.tun == nil {
		return nil
	}
	if s := g.tun.Link(); s.Index == 0 {
		return fmt.Errorf("TUN %s was deleted", s.Name)
	} else if !s.Up {
		return fmt.Errorf("TUN %s is down", s.Name)
	}
	return nil
}

// IsProbePeer reports whether k is the internal probe peer's public key,
// which the client device carries besides the configured clients.
func (g *Gateway) IsProbePeer(k keys.Key) bool { return g.probe.isProbe(k) }

// ClientStatus is the client device's view of the configured clients: its
// Status without the probe peer.
func (g *Gateway) ClientStatus() ([]device.PeerStatus, error) {
	peers, err := g.clients.Status()
	return slices.DeleteFunc(peers, func(p device.PeerStatus) bool { return g.probe.isProbe(p.PublicKey) }), err
}

// countOwnershipChange counts a change of a client's owner by its reason
// (anyguard_ownership_changes_total); endpoint refreshes by the same owner
// do not count.
func (g *Gateway) countOwnershipChange(old, rec cluster.Record) {
	if old.Owner != rec.Owner {
		g.ownershipChanges[int(rec.Reason)%len(g.ownershipChanges)].Add(1)
	}
}

// ownershipChangeCounts returns the counts by reason name: the reasons the
// cluster writes always, others once seen.
func (g *Gateway) ownershipChangeCounts() map[string]uint64 {
	m := make(map[string]uint64)
	for i := range g.ownershipChanges {
		r := cluster.Reason(i)
		n := g.ownershipChanges[i].Load()
		switch r {
		case cluster.ReasonHandshake, cluster.ReasonData, cluster.ReasonTakeover, cluster.ReasonRelease:
			m[r.String()] = n
		default:
			if n != 0 {
				m[r.String()] = n
			}
		}
	}
	return m
}

// ObserveConvergence records how long an ownership change took to reach
// every gateway (anyguard_convergence_seconds, /status).
func (g *Gateway) ObserveConvergence(d time.Duration) { g.convergence.Observe(d) }

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
		if c, ok := g.peer(p.PublicKey); ok {
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
	js := g.jit.stats()
	m := health.Metrics{
		Node:              cfg.Node.Name,
		Region:            cfg.Node.Region,
		Peers:             map[string]int{"active": 0, "stale": 0, "never": 0},
		ClientsConfigured: js.Configured,
		PeersAdded:        js.Added,
		PeersRemoved:      js.Removed,
		Initiations:       js.Initiations,
		OwnershipChanges:  g.ownershipChangeCounts(),
		Members:           map[string]int{"alive": 1, "dead": 0, "left": 0},
		ConfigDigest:      digest,
		ConfigReloads:     map[string]uint64{"success": g.reloadOK.Load(), "failure": g.reloadFailed.Load()},
		Convergence:       g.convergence.Snapshot(),
	}
	if c := g.Cluster(); c != nil {
		m.Members = map[string]int{"alive": 0, "dead": 0, "left": 0}
		for _, mb := range c.Members() {
			m.Members[mb.Status]++
			if !mb.Self && mb.Alive && mb.Meta.ClientDigest != "" && !strings.HasPrefix(m.ConfigDigest, mb.Meta.ClientDigest) {
				m.ConfigDigestMismatch++
			}
		}
		m.OwnedClients = c.Table().Stats().Owned
		m.Claims = g.cluster.claimStats()
		m.PrefixRefusals = g.cluster.guard.countsByReason()
		refused, _ := g.cluster.guard.snapshot()
		m.RefusedPrefixes = len(refused)
		st := c.Stats()
		m.Gossip = map[string]uint64{
			"received": st.MsgsReceived, "bad": st.MsgsBad, "applied": st.RecordsApplied, "relayed": st.Relayed,
			"sent": st.Broadcasts, "send_error": st.FanoutErrors, "repair_sent": st.RepairsSent,
			"push_pull": st.PushPulls, "catch_up": st.CatchUps, "decrypt_error": st.DecryptErrors,
			"reconnect_try": st.ReconnectTries, "reconnected": st.Reconnected, "heal": st.Heals,
		}
		ts := c.Table().Stats()
		m.Gossip["refused_clock"] = ts.RejectedSkew
		m.Gossip["refused_version"] = ts.RejectedVersion
		m.Gossip["refused_unknown_client"] = ts.RejectedUnknown
		m.Gossip["left_released"] = ts.LeftReleased
		m.Gossip["forgotten"] = ts.Forgotten
		m.ClockRefused = make(map[string]uint64)
		for _, r := range c.ClockRefusals() {
			m.ClockRefused[r.Node] = r.Refused
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
	lastOK, rtt, _ := g.probe.snapshot()
	m.Probe = health.ProbeCounters{
		Successes: g.probe.successes.Load(), Failures: g.probe.failures.Load(),
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
		Convergence: health.ConvergenceFrom(g.convergence.Snapshot()),
	}
	st.RefusedPrefixes = []health.RefusedPrefixStatus{}
	if c := g.Cluster(); c != nil {
		refused, since := g.cluster.guard.snapshot()
		st.Members, st.Regions = clusterStatus(c.Members(), refused)
		for i, r := range refused {
			st.RefusedPrefixes = append(st.RefusedPrefixes, health.RefusedPrefixStatus{
				Member: r.member, Region: r.region, Prefix: r.prefix.String(),
				Reason: r.reason.String(), Detail: r.detail, Since: since[i],
			})
		}
	}
	lastOK, rtt, err := g.probe.snapshot()
	st.Probe = health.ProbeStatus{
		Target: g.probe.target, OK: err == nil, LastSuccess: lastOK, RTTSeconds: rtt.Seconds(),
		Successes: g.probe.successes.Load(), Failures: g.probe.failures.Load(),
	}
	if err != nil {
		st.Probe.Error = err.Error()
	}
	js := g.jit.stats()
	st.ClientsConfigured, st.PeersLive = js.Configured, js.Live
	views := g.liveClients()
	if c := g.Cluster(); c != nil {
		// Clients owned anywhere, live here or not.
		listed := make(map[keys.Key]bool, len(views))
		for _, v := range views {
			listed[v.cfg.PublicKey] = true
		}
		for _, rec := range c.Table().Snapshot() {
			if p, ok := g.peer(rec.Client); ok && !listed[rec.Client] && !rec.Released() {
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

// clusterStatus turns the membership into /status members and regions (a
// region's prefixes are those its live members serve, less the refused).
func clusterStatus(ms []cluster.Member, refused []refusal) ([]health.MemberStatus, []health.RegionStatus) {
	skip := make(map[announcement]bool, len(refused))
	for _, r := range refused {
		skip[r.announcement] = true
	}
	var members []health.MemberStatus
	regions := map[string]*health.RegionStatus{}
	for _, m := range ms {
		members = append(members, health.MemberStatus{
			Name: m.Name, Region: m.Meta.Region, Address: m.Addr.String(), State: m.Status, Self: m.Self,
			Ready: m.Meta.State == cluster.StateReady, ConfigDigest: m.Meta.ClientDigest,
		})
		r := regions[m.Meta.Region]
		if r == nil {
			r = &health.RegionStatus{Name: m.Meta.Region}
			regions[m.Meta.Region] = r
		}
		if !m.Alive {
			continue
		}
		r.Members++
		for _, p := range m.Meta.Prefixes {
			if skip[announcement{member: m.Name, region: m.Meta.Region, prefix: p}] {
				continue
			}
			if s := p.String(); !slices.Contains(r.Prefixes, s) {
				r.Prefixes = append(r.Prefixes, s)
			}
		}
	}
	slices.SortFunc(members, func(a, b health.MemberStatus) int { return strings.Compare(a.Name, b.Name) })
	out := make([]health.RegionStatus, 0, len(regions))
	for _, r := range regions {
		slices.Sort(r.Prefixes)
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b health.RegionStatus) int { return strings.Compare(a.Name, b.Name) })
	return members, out
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// HealthOptions are the non-configuration parts of ServeHealth.
type HealthOptions struct {
	Version  string
	Revision string // the source's commit, for anyguard_build_info
	// CheckInterval is how often readiness checks run; zero means 1 s.
	CheckInterval time.Duration
}

// ServeHealth starts the readiness checks and the health listeners that
// cfg.Health configures. Close the server, then the state.
func (g *Gateway) ServeHealth(opts HealthOptions) (*health.State, *health.Server, error) {
	cfg := g.Config()
	admin := cfg.Health.AdminListen
	if admin == config.Off { // everything on health.listen
		admin = ""
	}
	st := health.NewState(g.Checks(), health.StateOptions{Interval: opts.CheckInterval, Logger: g.logger})
	srv, err := health.Listen(health.Config{
		Listen: cfg.Health.Listen, AdminListen: admin, TCPListen: cfg.Health.TCPListen,
		State: st, Metrics: g, Status: g, Version: opts.Version, Revision: opts.Revision,
		PerClientMetrics: cfg.Health.PerClientMetrics, PerClientLimit: cfg.Health.PerClientLimit,
		Logger: g.logger,
	})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, srv, nil
}
