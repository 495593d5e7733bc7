package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/device"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/router"
)

// backboneKeepalive keeps backbone sessions warm, so the first packet to
// another region never waits for a handshake. Only the gateway with the
// lower backbone key of a pair sets it: a persistent keepalive starts a
// handshake the moment the peer is configured, and two gateways that
// learn of each other at the same moment (start-up, a rejoin) would
// otherwise both initiate; each then answers the other's initiation,
// which discards its own, both responses are refused and the pair has no
// session until wireguard-go's retry 5 s later (seen in the demo as
// requests to another region stalling for 5 s). The higher key answers;
// the lower key's keepalives and rekeys keep the session for both.
//
// The lower key's first initiation is lost when it learns of the pair
// before the higher key does (the higher key's device drops an initiation
// from an unknown peer); so the higher key initiates itself when it has no
// session backboneNudge after adding the peer. That nudge can still cross
// an initiation of the lower key (both learned of the pair half a second
// apart, as after a partition heals), which leaves both without a session
// until the lower key's retry 5 s later; so the higher key looks again every
// backboneRenudge, backboneRenudges times at most, and each time forgets its
// half-done handshake (lifting wireguard-go's REKEY_TIMEOUT) and initiates
// again. The lower key's retry comes at 5 s, far from any of these.
const (
	backboneKeepalive = 10 * time.Second
	backboneNudge     = 500 * time.Millisecond
	backboneRenudge   = time.Second
	backboneRenudges  = 3
)

// clusterPart is a gateway's membership in a cluster: the backbone device
// and the routes that follow membership and client ownership.
//
// Backbone next hops use IP-in-IP encapsulation to a backbone address per
// gateway, so each backbone peer's AllowedIPs is just that address and
// never changes: with AllowedIPs carrying region prefixes, only one gateway
// of a region could be the source of that region's traffic, and every
// ownership move would rewrite device configuration.
type clusterPart struct {
	g      *Gateway
	logger *slog.Logger
	self   string
	c      *cluster.Cluster
	port   *device.BackbonePort
	wg     *device.WireGuard
	portID router.PortID
	addr   netip.Addr // this gateway's backbone address
	pub    keys.Key   // this gateway's backbone public key

	syncMu  sync.Mutex        // serialises onMembers
	bbPeers map[keys.Key]bool // backbone peers configured (syncMu)
	mu      sync.Mutex
	members map[string]cluster.Member // the latest view, by name

	resets chan keys.Key // clients whose sessions to drop
	rec    *recovery
	stop   chan struct{}
	done   sync.WaitGroup

	guard     *prefixGuard   // announced prefixes refused; see prefixes.go
	protected *protectedNets // of the configuration routes last saw (g.routesMu)

	// started is set once c is assigned; membership and ownership
	// callbacks that arrive earlier (while joining) are caught up by the
	// full sync that follows.
	started atomic.Bool
	left    atomic.Bool // leave ran
}

// backboneAddr derives a gateway's backbone address from its backbone
// public key: an IPv4 address in 100.64.0.0/10 that only ever appears in
// encapsulation headers between gateways, never on a host's network.
func backboneAddr(pub keys.Key) netip.Addr {
	h := sha256.Sum256(append([]byte("anyguard backbone address\x00"), pub[:]...))
	return netip.AddrFrom4([4]byte{100, 64 | h[0]&0x3f, h[1], h[2]})
}

// startCluster joins the cluster named by cfg. g's router, client device
// and egress exist already.
func startCluster(g *Gateway, cfg *config.Config, opts Options) (_ *clusterPart, err error) {
	pub := cfg.Backbone.PrivateKey.Public()
	cp := &clusterPart{
		g:       g,
		logger:  g.logger,
		self:    cfg.Node.Name,
		addr:    backboneAddr(pub),
		pub:     pub,
		members: make(map[string]cluster.Member),
		rec:     newRecovery(),
		resets:  make(chan keys.Key, 4096),
		stop:    make(chan struct{}),
		guard:   newPrefixGuard(g.logger, cfg.Node.Name),
	}
	g.cluster = cp // before any cluster goroutine that reads it starts
	defer func() {
		if err != nil {
			cp.close(false)
			g.cluster = nil
		}
	}()
	cp.port = device.NewBackbonePort("backbone", cfg.Clients.MTU+20, cp.addr, func(bufs [][]byte, offset int) {
		g.router.Forward(cp.portID, bufs, offset)
	})
	cp.portID = g.router.AddPort("backbone", router.KindBackbone, cp.port)
	// WireGuard authenticates every backbone peer as a gateway of this
	// cluster; which inner sources each may forward changes with ownership,
	// so the router accepts any, and split horizon keeps loops out.
	if err := g.router.SetSources(cp.portID, []router.SourceRule{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Allow: true},
		{Prefix: netip.MustParsePrefix("::/0"), Allow: true},
	}); err != nil {
		return nil, err
	}
	cp.wg, err = device.NewWireGuard(device.WireGuardConfig{
		Name:       cfg.Egress.TunName + "-bb",
		PrivateKey: cfg.Backbone.PrivateKey,
		ListenPort: cfg.Backbone.ListenPort,
		Logger:     g.logger,
	}, cp.port)
	if err != nil {
		if errors.Is(err, device.ErrPortInUse) {
			return nil, fmt.Errorf("backbone.listen_port: UDP port %d is already in use", cfg.Backbone.ListenPort)
		}
		return nil, fmt.Errorf("backbone: %w", err)
	}
	endpoint := cfg.Backbone.EndpointAddrPort()
	if !endpoint.IsValid() {
		host := cfg.Cluster.AdvertiseAddrPort().Addr()
		if !host.IsValid() {
			host = cfg.Cluster.BindAddrPort().Addr()
		}
		endpoint = netip.AddrPortFrom(host, cp.wg.ListenPort())
	}
	var secret []byte // none: cluster.New warns that gossip is open (cluster.insecure)
	if !cfg.Cluster.SecretKey.IsZero() {
		secret = cfg.Cluster.SecretKey[:]
	}
	ccfg := cluster.Config{
		Name:      cfg.Node.Name,
		Bind:      cfg.Cluster.BindAddrPort(),
		Advertise: cfg.Cluster.AdvertiseAddrPort(),
		Join:      cfg.Cluster.Join,
		SecretKey: secret,
		Profile:   cfg.Cluster.Profile,
		// Partitions heal by themselves: members lost are looked for
		// this long.
		ReconnectTimeout: cfg.Cluster.ReconnectTimeout,
		Meta: cluster.Meta{
			Region:           cfg.Node.Region,
			State:            cluster.StateReady,
			BackboneKey:      pub,
			BackboneEndpoint: endpoint,
			BackboneAddr:     cp.addr,
			Prefixes:         cfg.Egress.Prefixes,
			ClientDigest:     g.digest[:16],
		},
		Clients:   clientKeys(cfg),
		Logger:    g.logger,
		Now:       opts.ClusterClock,
		OnMembers: cp.onMembers,
		OnOwner:   cp.onOwner,
	}
	if opts.ClusterConfig != nil {
		opts.ClusterConfig(&ccfg)
	}
	cp.c, err = cluster.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	cp.started.Store(true)
	for _, rec := range cp.c.Table().Snapshot() {
		cp.trackEndpoint(cluster.Record{}, rec)
	}
	cp.onMembers(nil)
	cp.done.Add(2)
	go cp.claimLoop()
	go cp.resetLoop()
	g.clients.Bind().SetTransportHook(cp.onTransport)
	g.clusterHot.Store(cp)
	return cp, nil
}

// clientKeys lists the public keys of the configured clients.
func clientKeys(cfg *config.Config) []keys.Key {
	out := make([]keys.Key, 0, len(cfg.Clients.Peers))
	for _, p := range cfg.Clients.Peers {
		out = append(out, p.PublicKey)
	}
	return out
}

// claimLoop runs takeovers and asks clients that handshook here to
// confirm their sessions (recovery.go); the claims themselves follow the
// clients' first packets (checkPending).
func (cp *clusterPart) claimLoop() {
	defer cp.done.Done()
	expire := time.NewTicker(pendingTTL)
	defer expire.Stop()
	for {
		select {
		case <-cp.stop:
			return
		case req := <-cp.rec.requests:
			cp.takeover(req)
		case p := <-cp.rec.confirms:
			cp.askConfirmation(p)
		case now := <-expire.C:
			cp.rec.expire(now)
		}
	}
}

// onMembers reconfigures the backbone peers and every route that depends
// on membership.
func (cp *clusterPart) onMembers([]cluster.Member) {
	if !cp.started.Load() {
		return
	}
	// Callers race (the cluster's notifier and start-up); each applies
	// the view current when it holds the lock, so the last one wins.
	cp.syncMu.Lock()
	defer cp.syncMu.Unlock()
	ms := cp.c.Members()
	view := make(map[string]cluster.Member, len(ms))
	var peers []device.Peer
	seen := map[netip.Addr]string{cp.addr: cp.self}
	for _, m := range ms {
		view[m.Name] = m
		if m.Self || m.Status == "dead" || m.Status == "left" || !m.Meta.BackboneAddr.IsValid() {
			continue
		}
		if other, dup := seen[m.Meta.BackboneAddr]; dup {
			cp.logger.Error("two gateways derive the same backbone address; ignoring the second", "node", m.Name, "other", other, "addr", m.Meta.BackboneAddr)
			delete(view, m.Name)
			continue
		}
		seen[m.Meta.BackboneAddr] = m.Name
		p := device.Peer{
			PublicKey:  m.Meta.BackboneKey,
			Endpoint:   m.Meta.BackboneEndpoint,
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(m.Meta.BackboneAddr, 32)},
		}
		if cp.pub.Compare(m.Meta.BackboneKey) < 0 {
			p.Keepalive = backboneKeepalive
		}
		peers = append(peers, p)
	}
	slices.SortFunc(peers, func(a, b device.Peer) int { return a.PublicKey.Compare(b.PublicKey) })
	cp.mu.Lock()
	cp.members = view
	cp.mu.Unlock()
	if err := cp.wg.SetPeers(peers); err != nil {
		cp.logger.Error("cannot configure backbone peers", "err", err)
	} else {
		known := make(map[keys.Key]bool, len(peers))
		for _, p := range peers {
			known[p.PublicKey] = true
			if p.Keepalive == 0 && !cp.bbPeers[p.PublicKey] {
				time.AfterFunc(backboneNudge, func() { cp.nudge(p.PublicKey, p.Endpoint, 0) })
			}
		}
		cp.bbPeers = known
	}
	if err := cp.g.applyRoutes(); err != nil {
		cp.logger.Error("cannot update routes after a membership change", "err", err)
	}
}

// nudge initiates a handshake with a backbone peer that has none yet, and
// looks again backboneRenudge later; renudges counts the looks before this
// one (see backboneKeepalive).
func (cp *clusterPart) nudge(k keys.Key, endpoint netip.AddrPort, renudges int) {
	select {
	case <-cp.stop:
		return
	default:
	}
	st, err := cp.wg.Status()
	if err != nil {
		return
	}
	for _, p := range st {
		if p.PublicKey != k {
			continue
		}
		if !p.LastHandshake.IsZero() || !endpoint.IsValid() {
			return
		}
		cp.logger.Debug("no backbone session yet: initiating", "peer", k.String(), "endpoint", endpoint, "attempt", renudges+1)
		if renudges > 0 {
			cp.wg.ForgetHandshake(k) // a crossed handshake; see backboneKeepalive
		}
		if err := cp.wg.Initiate(k, endpoint); err != nil {
			cp.logger.Debug("backbone handshake not started", "err", err)
		}
		if renudges < backboneRenudges {
			time.AfterFunc(backboneRenudge, func() { cp.nudge(k, endpoint, renudges+1) })
		}
		return
	}
}

// onOwner follows one client's ownership: its routes point at the new
// owner, and a gateway that lost the client drops its session at once so
// that it sends the client nothing that would pull it back.
func (cp *clusterPart) onOwner(old, rec cluster.Record) {
	if !cp.started.Load() {
		return
	}
	peer, ok := cp.g.peer(rec.Client)
	if !ok {
		return
	}
	cp.logger.Info("client owner changed", "client", peer.Name, "from", ownerName(old.Owner), "to", ownerName(rec.Owner),
		"version", rec.Version, "reason", rec.Reason, "endpoint", rec.Endpoint)
	cp.g.countOwnershipChange(old, rec)
	if old.Owner != rec.Owner && rec.Owner != cp.self {
		if d := time.Since(rec.Time.Wall()); d >= 0 && d < time.Minute {
			cp.g.ObserveConvergence(d)
		}
	}
	if old.Owner == cp.self && rec.Owner != cp.self {
		cp.rec.live.Delete(rec.Client)
	}
	cp.trackEndpoint(old, rec)
	// Route by the table's current record: deliveries may lag the table.
	cp.g.routesMu.Lock()
	cur, ok := cp.c.Owner(rec.Client)
	if !ok {
		cur = rec
	}
	hop := cp.clientHop(cur)
	for _, p := range peer.AllowedIPs {
		if err := cp.g.router.SetRoute(router.Route{Prefix: p, Port: hop.Port, Via: hop.Via}); err != nil {
			cp.logger.Error("cannot route client", "client", peer.Name, "err", err)
		}
	}
	cp.g.routesMu.Unlock()
	if old.Owner == cp.self && rec.Owner != cp.self {
		// Not inline: this may run on the device's own receive goroutine
		// of that very peer, which removing the peer waits for.
		select {
		case cp.resets <- rec.Client:
		default:
			go cp.reset(rec.Client)
		}
	}
}

// resetLoop drops the sessions of clients that moved away, in order.
func (cp *clusterPart) resetLoop() {
	defer cp.done.Done()
	for {
		select {
		case <-cp.stop:
			return
		case k := <-cp.resets:
			cp.reset(k)
		}
	}
}

// reset drops the session of a client that moved away by removing its
// peer: the device then sends it nothing, and adds it again when the
// client initiates a handshake here.
func (cp *clusterPart) reset(k keys.Key) {
	cp.g.jit.remove([]keys.Key{k}, removedMoved)
}

func ownerName(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// clientHop is where packets for a client go: to the client device when
// this gateway owns it (or nobody does), else over the backbone to the
// owner, as long as the owner is known. A dead owner keeps its clients
// until the clients reconnect somewhere and that gateway claims them.
func (cp *clusterPart) clientHop(rec cluster.Record) router.Hop {
	local := router.Hop{Port: cp.g.clientPort}
	if rec.Owner == "" || rec.Owner == cp.self {
		return local
	}
	cp.mu.Lock()
	m, ok := cp.members[rec.Owner]
	cp.mu.Unlock()
	if !ok || !m.Meta.BackboneAddr.IsValid() {
		return local
	}
	return router.Hop{Port: cp.portID, Via: m.Meta.BackboneAddr}
}

// routes returns the routes membership and ownership add to the
// configured ones: other gateways' prefixes over the backbone, except the
// announcements vetAnnouncements refuses (prefixes.go), and clients owned
// elsewhere. It runs under g.routesMu.
func (cp *clusterPart) routes(cfg *config.Config) []router.Route {
	cp.mu.Lock()
	members := make([]cluster.Member, 0, len(cp.members))
	for _, m := range cp.members {
		members = append(members, m)
	}
	cp.mu.Unlock()
	own := make(map[netip.Prefix]bool, len(cfg.Egress.Prefixes))
	anns := make([]announcement, 0, len(cfg.Egress.Prefixes))
	for _, p := range cfg.Egress.Prefixes {
		own[p] = true
		anns = append(anns, announcement{member: cp.self, region: cfg.Node.Region, prefix: p})
	}
	for _, m := range members {
		if m.Self || !m.Alive || !m.Meta.BackboneAddr.IsValid() {
			continue
		}
		for _, p := range m.Meta.Prefixes {
			anns = append(anns, announcement{member: m.Name, region: m.Meta.Region, prefix: p})
		}
	}
	if cp.protected == nil || cp.protected.cfg != cfg {
		cp.protected = newProtectedNets(cfg)
	}
	refused := vetAnnouncements(anns, cp.protected)
	cp.guard.update(refused)
	skip := make(map[announcement]bool, len(refused))
	for _, r := range refused {
		skip[r.announcement] = true
	}
	cands := make(map[netip.Prefix][]cluster.Member)
	for _, m := range members {
		if m.Self || !m.Meta.BackboneAddr.IsValid() {
			continue
		}
		for _, p := range m.Meta.Prefixes {
			if !own[p] && !skip[announcement{member: m.Name, region: m.Meta.Region, prefix: p}] {
				cands[p] = append(cands[p], m)
			}
		}
	}
	var out []router.Route
	for p, ms := range cands {
		if best, ok := choose(p, ms); ok {
			out = append(out, router.Route{Prefix: p, Port: cp.portID, Via: best.Meta.BackboneAddr})
		}
	}
	for _, peer := range cfg.Clients.Peers {
		rec, ok := cp.c.Owner(peer.PublicKey)
		if !ok {
			continue
		}
		if hop := cp.clientHop(rec); hop.Port == cp.portID {
			for _, p := range peer.AllowedIPs {
				out = append(out, router.Route{Prefix: p, Port: hop.Port, Via: hop.Via})
			}
		}
	}
	return out
}

// choose picks the gateway that serves prefix p for everyone: the best by
// rendezvous hashing among the alive and ready ones, so that every gateway
// makes the same choice and a failure moves only the prefixes of the
// gateway that failed. Draining gateways serve only when no ready one is
// left.
func choose(p netip.Prefix, ms []cluster.Member) (cluster.Member, bool) {
	var best cluster.Member
	bestRank, found := -1, false
	var bestScore uint64
	for _, m := range ms {
		rank := 0
		switch {
		case m.Alive && m.Meta.State == cluster.StateReady:
			rank = 3
		case m.Alive:
			rank = 2
		default:
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(p.String()))
		h.Write([]byte{0})
		h.Write([]byte(m.Name))
		score := h.Sum64()
		if rank > bestRank || rank == bestRank && score > bestScore {
			best, bestRank, bestScore, found = m, rank, score, true
		}
	}
	return best, found
}

// announce tells the others this gateway's served prefixes and client-set
// digest after a reload.
func (cp *clusterPart) announce(cfg *config.Config, digest string) {
	if err := cp.c.SetClients(clientKeys(cfg)); err != nil {
		cp.logger.Error("cannot announce the reloaded client set to the cluster", "err", err)
	}
	m := cp.c.Meta()
	m.Prefixes = cfg.Egress.Prefixes
	m.ClientDigest = digest[:16]
	if err := cp.c.SetMeta(m); err != nil {
		cp.logger.Error("cannot announce the reloaded configuration to the cluster", "err", err)
	}
}

// check is the readiness check "cluster": joined when join addresses are
// configured, or alone by configuration.
func (cp *clusterPart) check(context.Context) error {
	if ok, why := cp.ready(); !ok {
		return errors.New(why)
	}
	return nil
}

// clockRecent is how long after the last record refused for a member's
// clock the advisory check "clocks" keeps naming that member.
const clockRecent = 2 * time.Minute

// checkClocks is the advisory check "clocks": it names the members whose
// ownership records this gateway refused lately because their clock runs
// too far ahead (their claims do not count here until it is fixed).
func (cp *clusterPart) checkClocks(context.Context) error {
	var bad []string
	for _, r := range cp.c.ClockRefusals() {
		if time.Since(r.Last) < clockRecent {
			bad = append(bad, fmt.Sprintf("%s (%s ahead, %d refused)", r.Node, r.Ahead.Round(time.Second), r.Refused))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("records refused for a clock too far ahead (beyond %s) from: %s", cluster.DefaultMaxClockAhead, strings.Join(bad, ", "))
	}
	return nil
}

// setState announces this gateway's state to the others.
func (cp *clusterPart) setState(st cluster.State) {
	m := cp.c.Meta()
	m.State = st
	if err := cp.c.SetMeta(m); err != nil {
		cp.logger.Error("cannot announce state to the cluster", "state", st, "err", err)
		return
	}
	cp.logger.Info("announced state to the cluster", "state", st)
}

// leave leaves the cluster gracefully, once; the others re-route this
// gateway's prefixes at once instead of waiting for failure detection.
func (cp *clusterPart) leave() error {
	if !cp.left.CompareAndSwap(false, true) {
		return nil
	}
	return cp.c.Leave(2 * time.Second)
}

// ready reports whether the cluster part can carry traffic: joined when
// join addresses are configured.
func (cp *clusterPart) ready() (bool, string) {
	cp.mu.Lock()
	n := 0
	for _, m := range cp.members {
		if m.Alive {
			n++
		}
	}
	cp.mu.Unlock()
	if len(cp.g.Config().Cluster.Join) > 0 && n < 2 {
		return false, "not joined: no other gateway reachable"
	}
	return true, fmt.Sprintf("%d gateways alive", n)
}

// close leaves the cluster (gracefully when leave is set, so the others
// re-route at once) and stops the backbone.
func (cp *clusterPart) close(leave bool) {
	if cp.c != nil {
		if leave {
			if err := cp.leave(); err != nil {
				cp.logger.Warn("leaving the cluster", "err", err)
			}
		}
		cp.c.Close()
	}
	select {
	case <-cp.stop:
	default:
		close(cp.stop)
	}
	cp.done.Wait()
	if cp.g.clients != nil {
		cp.g.clients.Bind().SetTransportHook(nil)
	}
	if cp.wg != nil {
		cp.wg.Close()
	}
	if cp.port != nil {
		cp.port.Close()
	}
}

// Cluster returns the gateway's cluster membership, or nil when it runs alone.
func (g *Gateway) Cluster() *cluster.Cluster {
	if g.cluster == nil {
		return nil
	}
	return g.cluster.c
}
