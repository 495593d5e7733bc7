package gateway

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/health"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway/membership"
	"github.com/anyguard/anyguard/internal/gateway/probe"
	"github.com/anyguard/anyguard/internal/gateway/recovery"
	"github.com/anyguard/anyguard/internal/gateway/relay"
	"github.com/anyguard/anyguard/internal/keys"
)

// The small values the gateway hands its parts in place of itself.

// clientIndex is the configured client set by public key, for the lookups
// made per initiation, per claim and per ownership change. It implements
// the Index of admission, recovery and membership. A reload swaps it
// under the admission lock (admission.Reindex).
type clientIndex struct {
	m atomic.Pointer[map[keys.Key]config.Peer]
}

// set publishes the client set of cfg.
func (x *clientIndex) set(cfg *config.Config) {
	m := make(map[keys.Key]config.Peer, len(cfg.Clients.Peers))
	for _, p := range cfg.Clients.Peers {
		m[p.PublicKey] = p
	}
	x.m.Store(&m)
}

// Peer returns the configured client with public key k.
func (x *clientIndex) Peer(k keys.Key) (config.Peer, bool) {
	p, ok := (*x.m.Load())[k]
	return p, ok
}

// Len is the number of configured clients.
func (x *clientIndex) Len() int { return len(*x.m.Load()) }

// sessionsRef is fast recovery as admission and the client hop see it:
// absent until the gateway has joined its cluster (and always when it
// runs alone). It implements admission.Sessions.
type sessionsRef struct {
	p atomic.Pointer[recovery.Recovery]
}

func (s *sessionsRef) load() *recovery.Recovery { return s.p.Load() }

// ExpectConfirmation implements admission.Sessions.
func (s *sessionsRef) ExpectConfirmation(sender uint32, client keys.Key, endpoint netip.AddrPort) {
	if r := s.p.Load(); r != nil {
		r.ExpectConfirmation(sender, client, endpoint)
	}
}

// NeedsClaim implements admission.Sessions: alone, no claim is ever
// needed.
func (s *sessionsRef) NeedsClaim(client keys.Key) bool {
	if r := s.p.Load(); r != nil {
		return r.NeedsClaim(client)
	}
	return false
}

// OnResponse implements admission.Sessions: admission holds the client
// bind's response hook and forwards the device's responses here.
func (s *sessionsRef) OnResponse(receiver uint32) {
	if r := s.p.Load(); r != nil {
		r.OnResponse(receiver)
	}
}

// Lost implements admission.Sessions.
func (s *sessionsRef) Lost(client keys.Key) {
	if r := s.p.Load(); r != nil {
		r.Lost(client)
	}
}

// ownerStats counts ownership changes by reason
// (anyguard_ownership_changes_total) and how long they took to converge
// (anyguard_convergence_seconds). It implements membership.Observer.
type ownerStats struct {
	changes     [16]atomic.Uint64
	convergence health.Histogram
}

// OwnershipChanged counts a change of a client's owner by its reason;
// endpoint refreshes by the same owner do not count.
func (o *ownerStats) OwnershipChanged(old, rec cluster.Record) {
	if old.Owner != rec.Owner {
		o.changes[int(rec.Reason)%len(o.changes)].Add(1)
	}
}

// ObserveConvergence records how long an ownership change took to reach
// this gateway.
func (o *ownerStats) ObserveConvergence(d time.Duration) { o.convergence.Observe(d) }

// counts returns the counts by reason name: the reasons the cluster
// writes always, others once seen.
func (o *ownerStats) counts() map[string]uint64 {
	m := make(map[string]uint64)
	for i := range o.changes {
		r := cluster.Reason(i)
		n := o.changes[i].Load()
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

// joinCluster wires the cluster parts: the membership part (backbone
// device and port, cluster) and fast recovery on the client bind's
// transport hook; the device's responses reach it through admission
// (sessionsRef.OnResponse).
// On error it leaves nothing of them running.
func (g *Gateway) joinCluster(cfg *config.Config, opts Options) (err error) {
	m, err := membership.New(membership.Config{
		Gateway:    cfg,
		Digest:     g.digest,
		Router:     g.router,
		Routes:     g.routes,
		ClientPort: g.clientPort,
		Index:      &g.index,
		Peers:      g.admission,
		Observer:   &g.owners,
		Logger:     g.logger,
	})
	if err != nil {
		return err
	}
	recov := recovery.New(recovery.Config{
		Self:      cfg.Node.Name,
		Addresses: cfg.Clients.Address,
		Claimer:   m,
		Index:     &g.index,
		Admitter:  g.admission,
		Device:    g.clients,
		Port:      g.port,
		Logger:    g.logger,
	})
	bind := g.clients.Bind()
	owners := &ownersFanout{recovery: recov}
	if !opts.NoFastRecovery && !opts.NoDrainRelay {
		owners.relay = relay.New(relay.Config{
			Backbone: m.Backbone(),
			Bind:     bind,
			Sender:   bind.Bind,
			Owners:   relayOwners{recovery: recov, members: m},
			Self:     cfg.Node.Name,
			Logger:   g.logger,
		})
	}
	g.routes.setExtra(m.Routes) // before any cluster goroutine reroutes
	if err := m.Join(owners, opts.ClusterClock, opts.ClusterConfig); err != nil {
		m.Close(false)
		g.routes.setExtra(nil)
		return err
	}
	g.members, g.recovery, g.relay = m, recov, owners.relay
	recov.Start()
	if !opts.NoFastRecovery {
		// The takeover of moved flows; off, a moved client comes back by
		// its own re-handshake, as to stock servers sharing a key.
		bind.SetTransportHook(recov.OnTransport)
		bind.SetReceivedResponseHook(recov.OnReceivedResponse)
		bind.SetSentTransportHook(recov.OnSentTransport)
	}
	if rl := owners.relay; rl != nil {
		// The drain relay: a moved client's old session is carried
		// through the gateway that holds it until the takeover is done.
		rl.Start()
		m.Backbone().SetRelayHandler(rl.FromBackbone)
		bind.SetRelayHook(rl.FromClient)
		bind.SetDivertHook(rl.Divert)
	}
	g.sessions.p.Store(recov)
	return nil
}

// ownersFanout is who follows client ownership (membership.Owners): fast
// recovery, and the drain relay when it is on.
type ownersFanout struct {
	recovery *recovery.Recovery
	relay    *relay.Relay // nil when off
}

// OwnerChanged implements membership.Owners.
func (o *ownersFanout) OwnerChanged(old, rec cluster.Record) {
	o.recovery.OwnerChanged(old, rec)
	if o.relay != nil {
		o.relay.OwnerChanged(old, rec)
	}
}

// HoldSession implements membership.Owners.
func (o *ownersFanout) HoldSession(old, rec cluster.Record) time.Duration {
	if o.relay == nil {
		return 0
	}
	return o.relay.HoldSession(old, rec)
}

// relayOwners tells the drain relay where a client endpoint's session is
// (relay.Owners): the live gateway, not this one, that the cluster names as
// the owner of the client whose recorded endpoint it is, when this gateway
// holds no session with that client.
type relayOwners struct {
	recovery *recovery.Recovery
	members  *membership.Part
}

// RelayVia implements relay.Owners.
func (o relayOwners) RelayVia(ep netip.AddrPort) (netip.Addr, bool) {
	client, ok := o.recovery.Foreign(ep)
	if !ok {
		return netip.Addr{}, false
	}
	rec, ok := o.members.Owner(client)
	if !ok || rec.Endpoint != ep {
		return netip.Addr{}, true
	}
	via, _ := o.members.RelayVia(rec.Owner)
	return via, true
}

// Cluster returns the gateway's cluster membership, or nil when it runs alone.
func (g *Gateway) Cluster() *cluster.Cluster {
	if g.members == nil {
		return nil
	}
	return g.members.Cluster()
}

// DefaultProbeInterval is the data-path probe's period.
const DefaultProbeInterval = probe.DefaultInterval

// The probe's source addresses (see package probe).
var (
	ProbeSource4 = probe.Source4
	ProbeSource6 = probe.Source6
)
