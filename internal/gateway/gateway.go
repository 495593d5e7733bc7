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
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway/admission"
	"github.com/anyguard/anyguard/internal/gateway/membership"
	"github.com/anyguard/anyguard/internal/gateway/probe"
	"github.com/anyguard/anyguard/internal/gateway/recovery"
	"github.com/anyguard/anyguard/internal/gateway/relay"
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
	// NoFastRecovery turns the takeover of moved flows off (bench failover
	// compares against it): a gateway then answers a moved client only
	// when the client's own timers make it handshake again, as stock
	// WireGuard servers sharing a key would. Claims after the client's own
	// handshake still happen, so traffic is routed to it once it does.
	NoFastRecovery bool
	// NoDrainRelay turns the drain relay off (tests and bench failover
	// compare against it): a gateway that receives a moved client's
	// datagrams of another gateway's session drops them until its takeover
	// completes. NoFastRecovery turns it off too.
	NoDrainRelay bool
}

// egress is the local private network: a TUN or a netstack.
type egress interface {
	Deliver(bufs [][]byte, offset int) error
	Close() error
}

// Gateway is one running anyguard gateway: the parts below, wired by New.
// The parts see each other only through the narrow interfaces their
// packages declare; see doc.go for the picture and the lock order.
type Gateway struct {
	reloadMu sync.Mutex                    // serialises Reload; guards digest
	cfg      atomic.Pointer[config.Config] // in force; stored under reloadMu
	digest   string                        // cfg.ClientSetDigest(), which costs a sort of every client
	logger   *slog.Logger

	router   *router.Router
	port     *device.Port // the client device's side of the router
	clients  *device.WireGuard
	uapi     *device.UAPI
	egress   egress
	tun      *device.TUN
	netstack *netstack.Stack

	clientPort, egressPort router.PortID

	index     clientIndex          // the configured clients, by public key
	routes    *routeTable          // the forwarding table's owner
	probe     *probe.Probe         // the data-path probe peer
	admission *admission.Admission // adds clients to the device when they connect
	members   *membership.Part     // nil when the gateway runs alone
	recovery  *recovery.Recovery   // claims and fast recovery; nil alone
	relay     *relay.Relay         // the drain relay; nil alone or off
	sessions  sessionsRef          // recovery, for the packet goroutines and admission

	started time.Time
	owners  ownerStats // ownership changes and convergence (metrics)
	// reloadOK and reloadFailed count reloads (anyguard_config_reloads_total).
	reloadOK, reloadFailed atomic.Uint64
}

// ErrStart wraps every error that stops a gateway from starting; the
// message names the configuration field at fault.
var ErrStart = errors.New("start gateway")

// New starts a gateway. On error everything it started is stopped again.
//
// It reads as the wiring diagram: the router in the middle with three
// ports (clients, egress, backbone); the client device behind the client
// port, with admission holding its initiations and the probe as one of its
// peers; the egress behind the egress port; and, when clustered, the
// membership part's backbone behind the backbone port, with fast recovery
// on the client bind's hooks.
func New(cfg *config.Config, opts Options) (_ *Gateway, err error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{digest: cfg.ClientSetDigest(), logger: logger, router: router.New(), started: time.Now()}
	g.cfg.Store(cfg)
	g.index.set(cfg)
	if g.probe, err = probe.New(cfg, opts.ProbeInterval); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()

	// Client side: packets the client device decrypted enter the router
	// at fromClients; the router hands packets for clients to the port,
	// which the device encrypts.
	uapiName := cfg.Egress.TunName
	g.port = device.NewPort(uapiName, cfg.Clients.MTU, g.fromClients)
	g.clientPort = g.router.AddPort("clients", router.KindClient, g.port)

	// Egress side: the router port exists before the egress does, so the
	// egress's readers never see the ID unset; packets for it before it is
	// attached are dropped as port errors. Packets from the private
	// network enter the router at fromEgress.
	egressRef := &portRef{}
	g.egressPort = g.router.AddPort("egress", router.KindEgress, egressRef)
	if err := g.openEgress(cfg, opts); err != nil {
		return nil, err
	}
	var egressPort router.Port = g.egress
	if opts.WrapEgress != nil {
		egressPort = opts.WrapEgress(egressPort)
	}
	egressRef.set(egressPort)
	g.routes = &routeTable{router: g.router, clientPort: g.clientPort, egressPort: g.egressPort, cfg: g.Config, tun: g.tun}
	if err := g.routes.set(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}

	// The client device, with the probe as its only peer: admission adds
	// clients as they connect.
	g.clients, err = device.NewWireGuard(device.WireGuardConfig{
		Name:       uapiName,
		PrivateKey: cfg.Clients.PrivateKey,
		ListenPort: cfg.Clients.ListenPort,
		Peers:      []device.Peer{g.probe.Peer()},
		Bind:       opts.ClientBind,
		Logger:     logger,
	}, g.port)
	if err != nil {
		if errors.Is(err, device.ErrPortInUse) {
			return nil, fmt.Errorf("%w: clients.listen_port: UDP port %d is already in use", ErrStart, cfg.Clients.ListenPort)
		}
		return nil, fmt.Errorf("%w: clients: %w", ErrStart, err)
	}
	bind := g.clients.Bind()
	g.admission = admission.New(admission.Config{
		PrivateKey:  cfg.Clients.PrivateKey,
		IdleTimeout: opts.IdleTimeout,
		Reserved:    g.probe.PublicKey(),
		// The probe's handshakes skip the queue (admission/probe.go).
		ProbeEndpoint: g.probe.Endpoint,
		Index:         &g.index,
		Device:        g.clients,
		Bind:          bind,
		Reply:         bind.Bind,
		Sessions:      &g.sessions,
		Logger:        logger,
	})
	g.admission.Start()
	if err := g.probe.Start(cfg.Clients.PrivateKey.Public(), g.clients.ListenPort(), cfg.Clients.MTU); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	if cfg.Clients.UAPI {
		g.uapi, err = device.ServeUAPI(uapiName, g.clients, logger)
		if err != nil {
			return nil, fmt.Errorf("%w: clients.uapi: %w (set clients.uapi: false to run without the wg(8) socket)", ErrStart, err)
		}
	}
	if cfg.Clustered() {
		if err = g.joinCluster(cfg, opts); err != nil {
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

// openEgress opens the egress the configuration names, its packets
// entering the router at fromEgress.
func (g *Gateway) openEgress(cfg *config.Config, opts Options) (err error) {
	switch cfg.Egress.Mode {
	case config.ModeTUN:
		g.tun, err = device.OpenTUN(device.TUNConfig{
			Name:      cfg.Egress.TunName,
			Queues:    cfg.Egress.Queues,
			MTU:       cfg.Clients.MTU,
			Addresses: cfg.Clients.Address,
			Routes:    routesOutside(cfg.Clients.Address, probe.ClientPrefixes(cfg)),
			Logger:    g.logger,
		}, g.fromEgress)
		if err != nil {
			return fmt.Errorf("%w: egress.tun_name: %w", ErrStart, explainTUN(err))
		}
		g.egress = g.tun
	case config.ModeNetstack:
		g.netstack, err = netstack.New(netstack.Config{
			Addresses: cfg.Clients.Address,
			MTU:       cfg.Clients.MTU,
			Dial:      opts.NetstackDial,
			Ping:      opts.NetstackPing,
			Logger:    g.logger,
		}, g.fromEgress)
		if err != nil {
			return fmt.Errorf("%w: egress.mode netstack: %w", ErrStart, err)
		}
		g.egress = g.netstack
	default:
		return fmt.Errorf("%w: egress.mode: unknown mode %q", ErrStart, cfg.Egress.Mode)
	}
	return nil
}

// fromClients is the data path's client hop: packets the client device
// decrypted (on its receive goroutines) go to the router, after fast
// recovery has looked for the first packet of a session it waits for.
func (g *Gateway) fromClients(bufs [][]byte, offset int) {
	if r := g.sessions.load(); r != nil {
		r.CheckPending(bufs, offset)
	}
	g.router.Forward(g.clientPort, bufs, offset)
}

// fromEgress is the data path's egress hop: packets the TUN or netstack
// read from the private network (on their own goroutines) go to the
// router.
func (g *Gateway) fromEgress(bufs [][]byte, offset int) {
	g.router.Forward(g.egressPort, bufs, offset)
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

// ListenPort is the client device's UDP port.
func (g *Gateway) ListenPort() uint16 { return g.clients.ListenPort() }

// Router returns the gateway's router (for stats).
func (g *Gateway) Router() *router.Router { return g.router }

// Clients returns the client device.
func (g *Gateway) Clients() *device.WireGuard { return g.clients }

// Netstack returns the netstack egress, or nil in tun mode.
func (g *Gateway) Netstack() *netstack.Stack { return g.netstack }

// Close stops everything the gateway started, in reverse order, leaving
// the cluster gracefully first.
func (g *Gateway) Close() { g.close(true) }

func (g *Gateway) close(leave bool) {
	start := time.Now()
	if g.members != nil {
		g.members.Close(leave)
	}
	g.recovery.Close()
	g.relay.Close()
	if g.clients != nil {
		g.clients.Bind().SetRelayHook(nil)
		g.clients.Bind().SetDivertHook(nil)
		g.clients.Bind().SetTransportHook(nil)
		g.clients.Bind().SetReceivedResponseHook(nil)
		g.clients.Bind().SetSentTransportHook(nil)
	}
	g.sessions.p.Store(nil) // admission's response hook stops forwarding to recovery
	g.probe.Close()
	g.admission.Close()
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
		g.logger.Info("gateway stopped", "node", g.Config().Node.Name, "took", time.Since(start).Round(time.Millisecond))
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
