// Package gateway wires one anyguard gateway together from its parts: the
// router, the client-facing WireGuard device on its in-memory port, the
// egress (kernel TUN or netstack) and the UAPI socket. It turns the typed
// configuration into each part's own settings.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/device"
	"github.com/anyguard/anyguard/device/netstack"
	"github.com/anyguard/anyguard/health"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/router"
)

// Options are the parts of a gateway that are not configuration: hooks for
// the demo and tests.
type Options struct {
	Logger *slog.Logger
	// ClientBind replaces the UDP socket of the client device (tests).
	ClientBind conn.Bind
	// NetstackDial and NetstackPing replace host sockets in netstack mode, so
	// the demo can map private addresses onto loopback.
	NetstackDial func(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error)
	NetstackPing func(ctx context.Context, dst netip.Addr, id, seq uint16, payload []byte) ([]byte, error)
	// ProbeInterval is the data-path probe's period (tests); zero means
	// DefaultProbeInterval.
	ProbeInterval time.Duration
	// WrapEgress interposes on the egress port (tests break and mend it).
	WrapEgress func(router.Port) router.Port
	// ClusterClock replaces the wall clock behind the cluster's hybrid
	// logical clock (tests skew it); nil: time.Now.
	ClusterClock func() time.Time
	// ClusterConfig, when set, edits the cluster's configuration before
	// it starts (tests: a partitionable transport, shorter timings).
	ClusterConfig func(*cluster.Config)
	// IdleTimeout is how long a client's peer stays on the client device
	// after its last handshake (tests); zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// egress is the local private network: a TUN or a netstack.
type egress interface {
	Deliver(bufs [][]byte, offset int) error
	Close() error
}

// Gateway is one running anyguard gateway.
type Gateway struct {
	reloadMu sync.Mutex // serialises Reload; guards cfg and digest
	cfg      *config.Config
	digest   string // cfg.ClientSetDigest(), which costs a sort of every client
	logger   *slog.Logger

	router   *router.Router
	port     *device.Port
	clients  *device.WireGuard
	uapi     *device.UAPI
	egress   egress
	tun      *device.TUN
	netstack *netstack.Stack

	clientPort, egressPort router.PortID

	probe       *probe // the data-path probe peer; see probe.go
	jit         *jit   // adds clients to the device when they connect; see jit.go
	started     time.Time
	convergence health.Histogram
	// ownershipChanges counts owner changes by cluster.Reason (health.go).
	ownershipChanges [16]atomic.Uint64
	// reloadOK and reloadFailed count reloads (anyguard_config_reloads_total).
	reloadOK, reloadFailed atomic.Uint64

	// routesMu serialises whole-table route rebuilds with the per-client
	// updates of ownership changes, so a rebuild computed from an older
	// view never lands after a newer update.
	routesMu   sync.Mutex
	cluster    *clusterPart                             // nil when the gateway runs alone
	clusterHot atomic.Pointer[clusterPart]              // the same, for packet goroutines
	byKey      atomic.Pointer[map[keys.Key]config.Peer] // the client set, by public key; changed under jit.mu
}

// ErrStart wraps every error that stops a gateway from starting; the
// message names the configuration field at fault.
var ErrStart = errors.New("start gateway")

// New starts a gateway. On error everything it started is stopped again.
func New(cfg *config.Config, opts Options) (_ *Gateway, err error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{cfg: cfg, digest: cfg.ClientSetDigest(), logger: logger, router: router.New(), started: time.Now()}
	g.indexClients(cfg)
	if g.probe, err = newProbe(cfg, opts.ProbeInterval); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	uapiName := cfg.Egress.TunName
	g.port = device.NewPort(uapiName, cfg.Clients.MTU, func(bufs [][]byte, offset int) {
		if cp := g.clusterHot.Load(); cp != nil {
			cp.checkPending(bufs, offset)
		}
		g.router.Forward(g.clientPort, bufs, offset)
	})
	g.clientPort = g.router.AddPort("clients", router.KindClient, g.port)
	// The egress's router port exists before the egress does, so its
	// readers never see the ID unset; packets for it before it is attached
	// are dropped as port errors.
	egressRef := &portRef{}
	g.egressPort = g.router.AddPort("egress", router.KindEgress, egressRef)
	forwardEgress := func(bufs [][]byte, offset int) { g.router.Forward(g.egressPort, bufs, offset) }

	switch cfg.Egress.Mode {
	case config.ModeTUN:
		g.tun, err = device.OpenTUN(device.TUNConfig{
			Name:      cfg.Egress.TunName,
			Queues:    cfg.Egress.Queues,
			MTU:       cfg.Clients.MTU,
			Addresses: cfg.Clients.Address,
			Routes:    routesOutside(cfg.Clients.Address, clientPrefixes(cfg)),
			Logger:    logger,
		}, forwardEgress)
		if err != nil {
			return nil, fmt.Errorf("%w: egress.tun_name: %w", ErrStart, explainTUN(err))
		}
		g.egress = g.tun
	case config.ModeNetstack:
		g.netstack, err = netstack.New(netstack.Config{
			Addresses: cfg.Clients.Address,
			MTU:       cfg.Clients.MTU,
			Dial:      opts.NetstackDial,
			Ping:      opts.NetstackPing,
			Logger:    logger,
		}, forwardEgress)
		if err != nil {
			return nil, fmt.Errorf("%w: egress.mode netstack: %w", ErrStart, err)
		}
		g.egress = g.netstack
	default:
		return nil, fmt.Errorf("%w: egress.mode: unknown mode %q", ErrStart, cfg.Egress.Mode)
	}
	var egressPort router.Port = g.egress
	if opts.WrapEgress != nil {
		egressPort = opts.WrapEgress(egressPort)
	}
	egressRef.set(egressPort)
	if err := g.setRoutes(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}

	g.clients, err = device.NewWireGuard(device.WireGuardConfig{
		Name:       uapiName,
		PrivateKey: cfg.Clients.PrivateKey,
		ListenPort: cfg.Clients.ListenPort,
		Peers:      []device.Peer{g.probe.peer()}, // clients are added as they connect
		Bind:       opts.ClientBind,
		Logger:     logger,
	}, g.port)
	if err != nil {
		if errors.Is(err, device.ErrPortInUse) {
			return nil, fmt.Errorf("%w: clients.listen_port: UDP port %d is already in use", ErrStart, cfg.Clients.ListenPort)
		}
		return nil, fmt.Errorf("%w: clients: %w", ErrStart, err)
	}
	g.jit = newJIT(g, cfg.Clients.PrivateKey, opts.IdleTimeout)
	g.jit.start()
	if err := g.probe.start(cfg.Clients.PrivateKey.Public(), g.clients.ListenPort(), cfg.Clients.MTU); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	if cfg.Clients.UAPI {
		g.uapi, err = device.ServeUAPI(uapiName, g.clients, logger)
		if err != nil {
			return nil, fmt.Errorf("%w: clients.uapi: %w (set clients.uapi: false to run without the wg(8) socket)", ErrStart, err)
		}
	}
	if cfg.Clustered() {
		if _, err = startCluster(g, cfg, opts); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrStart, err)
		}
	}
	logger.Info("gateway started",
		"node", cfg.Node.Name, "region", cfg.Node.Region,
		"listen_port", g.clients.ListenPort(), "egress", cfg.Egress.Mode,
		"clients", len(cfg.Clients.Peers), "prefixes", fmt.Sprint(cfg.Egress.Prefixes),
		"uapi", cfg.Clients.UAPI)
	return g, nil
}

func explainTUN(err error) error {
	switch {
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w (tun mode needs CAP_NET_ADMIN and /dev/net/tun; use egress.mode: netstack to run unprivileged)", err)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w (no /dev/net/tun: pass --device /dev/net/tun to the container, or use egress.mode: netstack)", err)
	}
	return err
}

// setRoutes installs the forwarding table and source filters from the
// configuration: each client's allowed IPs to the client port, the served
// prefixes and the gateway's own addresses to the egress.
func (g *Gateway) setRoutes() error {
	g.routesMu.Lock()
	defer g.routesMu.Unlock()
	cfg := g.cfg
	var routes []router.Route
	var clientSources []router.SourceRule
	egressSources := []router.SourceRule{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Allow: true},
		{Prefix: netip.MustParsePrefix("::/0"), Allow: true},
	}
	for _, p := range clientPrefixes(cfg) {
		routes = append(routes, router.Route{Prefix: p, Port: g.clientPort})
		clientSources = append(clientSources, router.SourceRule{Prefix: p, Allow: true})
		egressSources = append(egressSources, router.SourceRule{Prefix: p, Allow: false})
	}
	for _, p := range cfg.Egress.Prefixes {
		routes = append(routes, router.Route{Prefix: p, Port: g.egressPort})
	}
	for _, a := range cfg.Clients.Address {
		routes = append(routes, router.Route{Prefix: netip.PrefixFrom(a.Addr(), a.Addr().BitLen()), Port: g.egressPort})
	}
	if g.cluster != nil {
		// Later routes replace earlier ones for the same prefix: clients
		// owned elsewhere leave over the backbone.
		routes = append(routes, g.cluster.routes(cfg)...)
	}
	if err := g.router.SetRoutes(routes); err != nil {
		return err
	}
	if err := g.router.SetSources(g.clientPort, clientSources); err != nil {
		return err
	}
	return g.router.SetSources(g.egressPort, egressSources)
}

func clientPrefixes(cfg *config.Config) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range cfg.Clients.Peers {
		out = append(out, p.AllowedIPs...)
	}
	return append(out, probePrefix(cfg)) // routed to the client port like a client's
}

// routesOutside returns the prefixes not already covered by the connected
// routes of the interface addresses.
func routesOutside(addrs, prefixes []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
next:
	for _, p := range prefixes {
		for _, a := range addrs {
			if a.Masked().Bits() <= p.Bits() && a.Masked().Contains(p.Addr()) {
				continue next
			}
		}
		out = append(out, p)
	}
	return out
}

// ListenPort is the client device's UDP port.
func (g *Gateway) ListenPort() uint16 { return g.clients.ListenPort() }

// Router returns the gateway's router (for stats).
func (g *Gateway) Router() *router.Router { return g.router }

// Clients returns the client device.
func (g *Gateway) Clients() *device.WireGuard { return g.clients }

// Netstack returns the netstack egress, or nil in tun mode.
func (g *Gateway) Netstack() *netstack.Stack { return g.netstack }

// Close stops everything the gateway started, in reverse order.
func (g *Gateway) Close() {
	start := time.Now()
	if g.cluster != nil {
		g.cluster.close(true)
	}
	g.probe.close()
	g.jit.close()
	if g.uapi != nil {
		g.uapi.Close()
	}
	if g.clients != nil {
		g.clients.Close()
	}
	if g.port != nil {
		g.port.Close()
	}
	if g.egress != nil {
		g.egress.Close()
	}
	if g.clients != nil {
		g.logger.Info("gateway stopped", "node", g.cfg.Node.Name, "took", time.Since(start).Round(time.Millisecond))
	}
}

// portRef is a router port that forwards to a port attached later.
type portRef struct{ p atomic.Pointer[router.Port] }

var errPortNotAttached = errors.New("port not attached yet")

func (r *portRef) set(p router.Port) { r.p.Store(&p) }

// Deliver implements router.Port.
func (r *portRef) Deliver(bufs [][]byte, offset int) error {
	p := r.p.Load()
	if p == nil {
		return errPortNotAttached
	}
	return (*p).Deliver(bufs, offset)
}
