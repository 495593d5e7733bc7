package failover

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/health"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/router"
)

// harness is one deployment: gateways in regions, the load balancer
// model, the clients and the private side, for one scenario and mode.
type harness struct {
	opts  Options
	fast  bool // fast recovery on
	epoch time.Time
	lb    *lb
	// service and pinger are the private side's addresses.
	service, pinger netip.Addr

	key, secret keys.Key // the clients' gateway key; the gossip key
	peers       []config.Peer
	clientKeys  []keys.Key
	join        []string

	mu  sync.Mutex // guards gws
	gws []*gw

	clients []*client

	misdelivered atomic.Uint64 // a packet reached a client or the private side it was not for
	foreign      atomic.Uint64 // a client got a packet that is not the harness's
	dropsQueue   atomic.Uint64 // the harness's own queues were full

	bg          sync.WaitGroup // crashed gateways closing
	stopTraffic chan struct{}
	trafficWG   sync.WaitGroup
}

// gw is one gateway of the deployment (a restart makes a new gw).
type gw struct {
	name   string
	region int
	g      *gateway.Gateway
	state  *health.State
	srv    *health.Server
	port   *privatePort
	gossip *mutedTransport
	target int // load balancer target id
	egress atomic.Int32
	// down: crashed or stopped; draining: drain begun.
	down, draining atomic.Bool
	wasReady       atomic.Bool // readiness sampler only
}

func (g *gw) egressID() (router.PortID, bool) {
	id := g.egress.Load()
	return router.PortID(id), id >= 0
}

func (h *harness) now() int64 { return int64(time.Since(h.epoch)) }

// clientAddr is client i's tunnel address in 10.99.0.0/16 (up to 65,000
// clients).
func clientAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 99, byte((i + 2) >> 8), byte(i + 2)})
}

var clientNet = netip.MustParsePrefix("10.99.0.1/16")

func regionName(r int) string { return fmt.Sprintf("region-%d", r) }

// regionPrefix is region r's private network, 10.(200+r).0.0/16; the
// service and pinger live in the last region's.
func regionPrefix(r int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(200 + r), 0, 0}), 16)
}

// deploy starts the gateways, the load balancer and the clients, and
// waits until every client has traffic answered both ways.
func deploy(ctx context.Context, opts Options, fast bool, keySet *keySet) (_ *harness, err error) {
	h := &harness{opts: opts, fast: fast, epoch: time.Now(), stopTraffic: make(chan struct{}),
		key: keySet.gateway, secret: keySet.gossip, clientKeys: keySet.clients,
		service: serviceAddr(opts.Regions), pinger: pingerAddr(opts.Regions)}
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	for i := range opts.Clients {
		h.peers = append(h.peers, config.Peer{
			Name:       fmt.Sprintf("c%d", i),
			PublicKey:  h.clientKeys[i].Public(),
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(clientAddr(i), 32)},
		})
	}
	h.lb = newLB(opts.Params, h.epoch, opts.Clients, func(i int, p []byte) { h.clients[i].bind.fromLB(p) })
	for r := range opts.Regions {
		for k := range opts.PerRegion {
			g, err := h.startGateway(fmt.Sprintf("%s-%c", regionName(r), 'a'+k), r)
			if err != nil {
				return h, err
			}
			h.addGateway(g, false)
		}
	}
	if err := waitFor(ctx, 30*time.Second, func() bool { return h.clusterFormed() }); err != nil {
		return h, fmt.Errorf("gateways did not all see each other: %w", err)
	}
	// As with a real load balancer, clients arrive once the targets
	// passed their health checks.
	bound := opts.Params.Interval*time.Duration(opts.Params.HealthyThreshold+1) + opts.Params.Timeout + 30*time.Second
	if err := waitFor(ctx, bound, func() bool {
		for _, t := range *h.lb.targets.Load() {
			if !t.healthy.Load() {
				return false
			}
		}
		return true
	}); err != nil {
		return h, fmt.Errorf("gateways not all healthy: %w", err)
	}
	for i := range opts.Clients {
		c, err := h.newClient(i)
		if err != nil {
			return h, err
		}
		h.clients = append(h.clients, c)
	}
	for _, c := range h.clients {
		c.echoes.start(0)
		c.pings.start(0)
	}
	h.trafficWG.Add(1)
	go h.traffic()
	// Every client answered both ways since now.
	since := h.now()
	err = waitFor(ctx, opts.ConnectTimeout, func() bool {
		for _, c := range h.clients {
			if c.echoes.lastAnswer() < since || c.pings.lastAnswer() < since {
				return false
			}
		}
		return true
	})
	if err != nil {
		n, example := 0, ""
		for _, c := range h.clients {
			if c.echoes.lastAnswer() < since || c.pings.lastAnswer() < since {
				n++
				if example == "" {
					example = h.describe(c)
				}
			}
		}
		return h, fmt.Errorf("%d of %d clients had no traffic answered both ways within %s (%s): %w", n, len(h.clients), opts.ConnectTimeout, example, err)
	}
	return h, nil
}

// describe says where a client stands, for errors.
func (h *harness) describe(c *client) string {
	t := h.lb.targetOf(c.id)
	owner := "none"
	for _, g := range h.running() {
		if g.target == t {
			if rec, ok := g.g.Cluster().Owner(h.clientKeys[c.id].Public()); ok {
				owner = rec.Owner
			}
			t := g.name
			return fmt.Sprintf("client %d on %s, owner %s, echo answered %v, ping answered %v, stats %+v", c.id, t, owner,
				c.echoes.lastAnswer() > 0, c.pings.lastAnswer() > 0, g.g.PeerStats())
		}
	}
	return fmt.Sprintf("client %d on target %d; %s", c.id, t, h.describeTargets())
}

// describeTargets lists the targets' health and failing checks.
func (h *harness) describeTargets() string {
	var out []string
	for _, g := range h.running() {
		t := h.target(g.target)
		var failing []string
		for _, r := range g.state.Results() {
			if !r.OK {
				failing = append(failing, r.Name+": "+r.Error)
			}
		}
		out = append(out, fmt.Sprintf("%s healthy=%v checks=%d failed=%d failing=%q", g.name, t.healthy.Load(), t.checks.Load(), t.failed.Load(), failing))
	}
	return strings.Join(out, "; ")
}

// keySet is the keys one run shares across its deployments.
type keySet struct {
	gateway, gossip keys.Key
	clients         []keys.Key
}

func newKeySet(clients int) (*keySet, error) {
	ks := &keySet{clients: make([]keys.Key, clients)}
	var err error
	if ks.gateway, err = keys.Generate(); err != nil {
		return nil, err
	}
	if ks.gossip, err = keys.Generate(); err != nil {
		return nil, err
	}
	for i := range ks.clients {
		if ks.clients[i], err = keys.Generate(); err != nil {
			return nil, err
		}
	}
	return ks, nil
}

// startGateway starts one gateway with its health server; it joins the
// cluster through the gateways already up.
func (h *harness) startGateway(name string, region int) (*gw, error) {
	bb, err := keys.Generate()
	if err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.Node = config.Node{Name: name, Region: regionName(region)}
	cfg.Clients.PrivateKey = h.key
	cfg.Clients.ListenPort = 0
	cfg.Clients.UAPI = false
	cfg.Clients.Address = []netip.Prefix{clientNet}
	cfg.Clients.Peers = h.peers
	cfg.Egress.Mode = config.ModeNetstack
	cfg.Egress.Prefixes = []netip.Prefix{regionPrefix(region)}
	cfg.Backbone.PrivateKey = bb
	cfg.Backbone.ListenPort = 0
	cfg.Cluster.Bind = "127.0.0.1:0"
	h.mu.Lock()
	cfg.Cluster.Join = append([]string(nil), h.join...)
	h.mu.Unlock()
	cfg.Cluster.SecretKey = h.secret
	cfg.Health.Listen = "127.0.0.1:0"
	cfg.Health.TCPListen = "127.0.0.1:0"
	// Gateways side by side in one process: not the admin listener's fixed
	// default port; the harness reads only the health listener.
	cfg.Health.AdminListen = config.Off
	cfg.Health.DrainTimeout = h.opts.DrainWindow
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuration of %s: %w", name, err)
	}
	g := &gw{name: name, region: region}
	g.egress.Store(-1)
	logger := h.opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var transportErr error
	g.g, err = gateway.New(cfg, gateway.Options{
		Logger:         logger.With("gw", name),
		NetstackDial:   refuse,
		NoFastRecovery: !h.fast,
		WrapEgress: func(inner router.Port) router.Port {
			g.port = newPrivatePort(h, g, inner)
			return g.port
		},
		ClusterConfig: func(c *cluster.Config) {
			// Muted when it crashes: a crash sends no leave.
			tr, err := newMutedTransport()
			if err != nil {
				transportErr = err
				return
			}
			g.gossip = tr
			c.Transport = tr
		},
	})
	if err == nil && transportErr != nil {
		g.g.Close()
		err = transportErr
	}
	if err != nil {
		if g.port != nil {
			g.port.close()
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if id, ok := g.g.Router().Lookup(regionPrefix(region).Addr().Next()); ok {
		g.egress.Store(int32(id))
	}
	g.state, g.srv, err = g.g.ServeHealth(gateway.HealthOptions{})
	if err != nil {
		g.g.Close()
		g.port.close()
		return nil, fmt.Errorf("health of %s: %w", name, err)
	}
	return g, nil
}

func refuse(context.Context, string, netip.AddrPort) (net.Conn, error) {
	return nil, fmt.Errorf("the harness's private network has no TCP services")
}

// addGateway registers g with the load balancer and the cluster's join
// list.
func (h *harness) addGateway(g *gw, healthyNow bool) {
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), g.g.ListenPort())
	g.target = h.lb.addTarget(addr, g.srv.Addr().String(), g.srv.TCPAddr().String(), healthyNow)
	h.mu.Lock()
	h.gws = append(h.gws, g)
	h.join = append(h.join, g.g.Cluster().LocalAddr().String())
	h.mu.Unlock()
}

// clusterFormed: every running gateway sees all running gateways alive.
func (h *harness) clusterFormed() bool {
	up := h.running()
	for _, g := range up {
		n := 0
		for _, m := range g.g.Cluster().Members() {
			if m.Alive {
				n++
			}
		}
		if n != len(up) {
			return false
		}
	}
	return true
}

// running returns the gateways not down.
func (h *harness) running() []*gw {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*gw
	for _, g := range h.gws {
		if !g.down.Load() {
			out = append(out, g)
		}
	}
	return out
}

// pingers are the gateways the private side's pinger sends through: the
// last region's running gateways that are not draining.
func (h *harness) pingers() []*gw {
	var out []*gw
	for _, g := range h.running() {
		if g.region == h.opts.Regions-1 && !g.draining.Load() {
			out = append(out, g)
		}
	}
	return out
}

// newClient starts client i's wireguard-go device, pointed at the
// anycast address.
func (h *harness) newClient(i int) (*client, error) {
	c := &client{id: i, addr: clientAddr(i), h: h}
	c.tun = &memTUN{c: c, out: make(chan []byte, 16), events: make(chan tun.Event, 1), closed: make(chan struct{})}
	c.bind = &memBind{c: c, in: make(chan []byte, 16)}
	c.tun.events <- tun.EventUp
	c.dev = device.NewDevice(c.tun, c.bind, device.NewLogger(device.LogLevelSilent, ""))
	uapi := fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=%s\nallowed_ip=%s\n",
		h.clientKeys[i].Hex(), h.key.Public().Hex(), anycast, regionPrefix(h.opts.Regions-1))
	if err := c.dev.IpcSet(uapi); err != nil {
		c.dev.Close()
		return nil, fmt.Errorf("client %d: %w", i, err)
	}
	if err := c.dev.Up(); err != nil {
		c.dev.Close()
		return nil, fmt.Errorf("client %d: %w", i, err)
	}
	return c, nil
}

// traffic is the shared generator: every Interval, each client sends one
// echo to the service and the pinger sends one request to each client,
// spread evenly over the interval in ten slots.
func (h *harness) traffic() {
	defer h.trafficWG.Done()
	const slots = 10
	tick := time.NewTicker(h.opts.Interval / slots)
	defer tick.Stop()
	for k := 0; ; k++ {
		select {
		case <-h.stopTraffic:
			return
		case <-tick.C:
		}
		via := h.pingers()
		now := h.now()
		for i := k % slots; i < len(h.clients); i += slots {
			c := h.clients[i]
			c.sendEcho(now)
			if len(via) == 0 {
				continue
			}
			c.pings.sent(now)
			m := msg{src: h.pinger, dst: c.addr, kind: kindPing, client: uint32(i), seq: uint32(k), sent: now}
			via[i%len(via)].port.inject(m)
		}
	}
}

// crash stops g as a crash would: the load balancer's path to it is cut
// at once, its gossip is silenced (no leave), then it stops.
func (h *harness) crash(g *gw) {
	h.lb.kill(g.target)
	g.gossip.muted.Store(true)
	g.down.Store(true)
	g.srv.Close()
	g.state.Close()
	// Closing tries to leave the cluster through the muted transport:
	// in the background, as nothing of it gets out.
	h.bg.Go(func() {
		g.g.Close()
		g.port.close()
	})
}

// stop ends a drained gateway (after its drain steps ran).
func (h *harness) stop(g *gw) {
	g.down.Store(true)
	g.srv.Close()
	g.state.Close()
	g.g.Close()
	g.port.close()
	h.lb.remove(g.target)
}

func (h *harness) close() {
	select {
	case <-h.stopTraffic:
	default:
		close(h.stopTraffic)
	}
	h.trafficWG.Wait()
	for _, c := range h.clients {
		c.dev.Close()
	}
	if h.lb != nil {
		h.lb.close()
	}
	h.bg.Wait()
	for _, g := range h.running() {
		g.down.Store(true)
		g.srv.Close()
		g.state.Close()
		g.g.Close()
		g.port.close()
	}
}

// waitFor polls ok every 20 ms until it holds, d passes or ctx ends.
func waitFor(ctx context.Context, d time.Duration, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for !ok() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
