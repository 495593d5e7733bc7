// Package membership is a gateway's membership in a cluster: the cluster
// itself (gossip, ownership table), the backbone device to the other
// gateways, and the routes that follow membership and client ownership.
//
// A Part receives narrow views of what it works on: the router (Router),
// the gateway's route table (Routes), the client index (Index), the
// admission's peer removal (Peers), ownership metrics (Observer) and,
// once it joins, whoever follows client ownership (Owners: fast
// recovery). It knows nothing of the gateway that wires it.
package membership

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/device"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway/admission"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/router"
)

// Part is a gateway's membership in a cluster: the backbone device and
// the routes that follow membership and client ownership.
//
// Backbone next hops use IP-in-IP encapsulation to a backbone address per
// gateway, so each backbone peer's AllowedIPs is just that address and
// never changes: with AllowedIPs carrying region prefixes, only one gateway
// of a region could be the source of that region's traffic, and every
// ownership move would rewrite device configuration.
type Part struct {
	logger     *slog.Logger
	cfg        *config.Config // at start; what a reload may change is passed in
	digest     string         // client-set digest at start
	router     Router
	table      Routes
	clientPort router.PortID
	index      Index
	peers      Peers
	observer   Observer
	owners     Owners // set by Join
	joinWanted bool   // join addresses are configured
	self       string
	c          *cluster.Cluster
	port       *device.BackbonePort
	wg         *device.WireGuard
	portID     router.PortID
	addr       netip.Addr // this gateway's backbone address
	pub        keys.Key   // this gateway's backbone public key

	syncMu  sync.Mutex        // serialises onMembers
	bbPeers map[keys.Key]bool // backbone peers configured (syncMu)
	mu      sync.Mutex
	members map[string]cluster.Member // the latest view, by name

	resets *resetQueue // clients whose sessions to drop, in order
	stop   chan struct{}

	guard     *prefixGuard   // announced prefixes refused; see prefixes.go
	protected *protectedNets // of the configuration Routes last saw (under the table's lock)

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

// Router is the gateway's router as the backbone uses it (*router.Router).
type Router interface {
	AddPort(name string, kind router.Kind, p router.Port) router.PortID
	SetSources(id router.PortID, rules []router.SourceRule) error
	Forward(in router.PortID, bufs [][]byte, offset int)
}

// Routes is the gateway's route table. Reapply rebuilds the whole table
// from the configuration and Part.Routes; Patch applies the routes that
// compute returns, computed under the same lock, so that a rebuild from
// an older view never lands after a newer patch. Neither may be called
// with the Part's mu held (Reapply calls Part.Routes).
type Routes interface {
	Reapply() error
	Patch(compute func() []router.Route) error
}

// Index is the configured client set, by public key.
type Index interface {
	Peer(k keys.Key) (config.Peer, bool)
}

// Peers removes clients from the client device (admission).
type Peers interface {
	Remove(ks []keys.Key, reason admission.Reason)
}

// Observer counts ownership changes and their convergence (metrics).
type Observer interface {
	OwnershipChanged(old, rec cluster.Record)
	ObserveConvergence(d time.Duration)
}

// Owners follows client ownership (fast recovery and the drain relay):
// OwnerChanged is called for every change the cluster delivers, and with a
// zero old for every record known when the Part joins. HoldSession is
// asked, when this gateway lost a client, how long to keep the client's
// session before dropping it (0: at once). Neither may block.
type Owners interface {
	OwnerChanged(old, rec cluster.Record)
	HoldSession(old, rec cluster.Record) time.Duration
}

// Config is what a Part works on.
type Config struct {
	Gateway    *config.Config // the configuration at start
	Digest     string         // its client-set digest
	Router     Router
	Routes     Routes
	ClientPort router.PortID // the client device's port on Router
	Index      Index
	Peers      Peers
	Observer   Observer
	Logger     *slog.Logger
}

// New brings up the backbone device and its router port; Join then joins
// the cluster. On error nothing is left running.
func New(c Config) (_ *Part, err error) {
	cfg := c.Gateway
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pub := cfg.Backbone.PrivateKey.Public()
	cp := &Part{
		logger:     logger,
		cfg:        cfg,
		digest:     c.Digest,
		router:     c.Router,
		table:      c.Routes,
		clientPort: c.ClientPort,
		index:      c.Index,
		peers:      c.Peers,
		observer:   c.Observer,
		joinWanted: len(cfg.Cluster.Join) > 0,
		self:       cfg.Node.Name,
		addr:       backboneAddr(pub),
		pub:        pub,
		members:    make(map[string]cluster.Member),
		stop:       make(chan struct{}),
		guard:      newPrefixGuard(logger, cfg.Node.Name),
	}
	cp.resets = newResetQueue(cp.reset)
	defer func() {
		if err != nil {
			cp.Close(false)
		}
	}()
	cp.port = device.NewBackbonePort("backbone", cfg.Clients.MTU+20, cp.addr, cp.fromBackbone)
	cp.portID = cp.router.AddPort("backbone", router.KindBackbone, cp.port)
	// WireGuard authenticates every backbone peer as a gateway of this
	// cluster; which inner sources each may forward changes with ownership,
	// so the router accepts any, and split horizon keeps loops out.
	if err := cp.router.SetSources(cp.portID, []router.SourceRule{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Allow: true},
		{Prefix: netip.MustParsePrefix("::/0"), Allow: true},
	}); err != nil {
		return nil, err
	}
	cp.wg, err = device.NewWireGuard(device.WireGuardConfig{
		Name:       cfg.Egress.TunName + "-bb",
		PrivateKey: cfg.Backbone.PrivateKey,
		ListenPort: cfg.Backbone.ListenPort,
		Logger:     logger,
	}, cp.port)
	if err != nil {
		if errors.Is(err, device.ErrPortInUse) {
			return nil, fmt.Errorf("backbone.listen_port: UDP port %d is already in use", cfg.Backbone.ListenPort)
		}
		return nil, fmt.Errorf("backbone: %w", err)
	}
	return cp, nil
}

// fromBackbone is the data path's backbone hop: packets the backbone
// device decrypted from another gateway (their IP-in-IP header already
// removed by the BackbonePort) go to the router.
func (cp *Part) fromBackbone(bufs [][]byte, offset int) {
	cp.router.Forward(cp.portID, bufs, offset)
}

// Join joins the cluster named by the configuration and starts following
// it; owners hears of every ownership change from now on. now replaces the
// wall clock behind the hybrid logical clock (nil: time.Now) and edit, when
// set, edits the cluster's configuration before it starts (tests). On
// error the caller closes the Part.
func (cp *Part) Join(owners Owners, now func() time.Time, edit func(*cluster.Config)) (err error) {
	cfg := cp.cfg
	cp.owners = owners
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
			BackboneKey:      cp.pub,
			BackboneEndpoint: endpoint,
			BackboneAddr:     cp.addr,
			Prefixes:         cfg.Egress.Prefixes,
			ClientDigest:     cp.digest[:16],
		},
		Clients:   clientKeys(cfg),
		Logger:    cp.logger,
		Now:       now,
		OnMembers: cp.onMembers,
		OnOwner:   cp.onOwner,
	}
	if edit != nil {
		edit(&ccfg)
	}
	cp.c, err = cluster.New(ccfg)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	cp.started.Store(true)
	for _, rec := range cp.c.Table().Snapshot() {
		cp.owners.OwnerChanged(cluster.Record{}, rec)
	}
	cp.onMembers(nil)
	return nil
}

// clientKeys lists the public keys of the configured clients.
func clientKeys(cfg *config.Config) []keys.Key {
	out := make([]keys.Key, 0, len(cfg.Clients.Peers))
	for _, p := range cfg.Clients.Peers {
		out = append(out, p.PublicKey)
	}
	return out
}

// Close leaves the cluster (gracefully when leave is set, so the others
// re-route at once) and stops the backbone. Without leave it is a crash
// as far as the others can tell, and no later Close leaves. It is safe on
// a nil Part and more than once.
func (cp *Part) Close(leave bool) {
	if cp == nil {
		return
	}
	if !leave {
		cp.left.Store(true)
	}
	if cp.c != nil {
		if leave {
			if err := cp.Leave(); err != nil {
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
	cp.resets.close()
	if cp.wg != nil {
		cp.wg.Close()
	}
	if cp.port != nil {
		cp.port.Close()
	}
}

// Cluster returns the cluster, nil before Join.
func (cp *Part) Cluster() *cluster.Cluster { return cp.c }

// Owner implements recovery.Claimer.
func (cp *Part) Owner(client keys.Key) (cluster.Record, bool) { return cp.c.Owner(client) }

// Claim implements recovery.Claimer.
func (cp *Part) Claim(client keys.Key, endpoint netip.AddrPort, reason cluster.Reason) (cluster.Record, bool) {
	return cp.c.Claim(client, endpoint, reason)
}

// Backbone returns the backbone port (the drain relay sends and receives
// relayed client datagrams through it).
func (cp *Part) Backbone() *device.BackbonePort { return cp.port }

// RelayVia returns the backbone address of gateway name if it is another
// live member (the drain relay relays to it), and whether it is.
func (cp *Part) RelayVia(name string) (netip.Addr, bool) {
	if name == "" || name == cp.self {
		return netip.Addr{}, false
	}
	cp.mu.Lock()
	m, ok := cp.members[name]
	cp.mu.Unlock()
	if !ok || !m.Alive || m.Status != "alive" || !m.Meta.BackboneAddr.IsValid() || m.Meta.BackboneAddr == cp.addr {
		return netip.Addr{}, false
	}
	return m.Meta.BackboneAddr, true
}

// BackboneStatus is the backbone device's view of its peers.
func (cp *Part) BackboneStatus() ([]device.PeerStatus, error) { return cp.wg.Status() }
