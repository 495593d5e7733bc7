// Package demo runs a whole anyguard deployment in one unprivileged
// process: several regions, each with its own private network (a web
// service and a UDP echo on loopback) and two gateways in netstack mode,
// joined in one encrypted cluster with a backbone between them; a UDP load
// balancer in front of every gateway (one "anycast" address, sticky flows);
// and real wireguard-go clients on their own userspace network stacks.
// The scenario connects every client to every region, moves clients
// between gateways while traffic flows, stops a gateway, and reports
// owners, recovery and convergence times.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/internal/lbsim"
)

// Options shape a demo run.
type Options struct {
	Clients     int           // WireGuard clients (default 4)
	Requests    int           // HTTP requests per client and region (default 5)
	Regions     int           // 1 to 3 (default 3)
	PerRegion   int           // gateways per region, 1 or 2 (default 2)
	KeepRunning bool          // after the scenario, keep serving until ctx ends
	Timeout     time.Duration // for the whole scenario (default 60 s)
	Logger      *slog.Logger  // gateways' logs; nil = discard
}

var regionNames = []string{"us-east-1", "eu-west-1", "ap-south-1"}

var clientNet = netip.MustParsePrefix("10.99.0.1/16")

// errRefused is what the simulated network answers for an address with no service.
var errRefused = errors.New("connection refused by the simulated private network")

type deployment struct {
	regions  []*privateNetwork
	gws      []*gateway.Gateway
	names    []string // gateway names, in load balancer backend order
	regionOf []int    // region index of each gateway
	lb       *lbsim.LB
	clients  []*client
	key      keys.Key // the clients' shared gateway key
}

// Run executes the scenario and writes a report to out. It returns an
// error naming what failed if any check failed.
func Run(ctx context.Context, opts Options, out io.Writer) error {
	if opts.Clients <= 0 {
		opts.Clients = 4
	}
	if opts.Requests <= 0 {
		opts.Requests = 5
	}
	if opts.Regions <= 0 || opts.Regions > len(regionNames) {
		opts.Regions = len(regionNames)
	}
	if opts.PerRegion <= 0 || opts.PerRegion > 2 {
		opts.PerRegion = 2
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	d, err := deploy(sctx, opts, out)
	if d != nil {
		defer d.close()
	}
	if err != nil {
		return err
	}
	var failed []string
	fail := func(format string, args ...any) { failed = append(failed, fmt.Sprintf(format, args...)) }

	// 1. Every client reaches every region through the gateway its flow
	// landed on.
	fmt.Fprintln(out, "phase 1: every client reaches every region's service through the gateway the load balancer picked")
	t0 := time.Now()
	d.parallel(func(c *client) { c.reachAll(sctx, d, opts.Requests, "connect") })
	d.checkOwners(sctx, t0, fail, "connect")

	// 2. The load balancer moves every client to a gateway of another
	// region while the clients keep sending.
	fmt.Fprintln(out, "phase 2: the load balancer moves every client to a gateway in another region while traffic flows")
	t0 = time.Now()
	d.parallel(func(c *client) { c.move(sctx, d, -1) })
	d.checkOwners(sctx, t0, fail, "move")
	d.parallel(func(c *client) { c.reachAll(sctx, d, 1, "after move") })

	// 3. A gateway holding clients stops; the load balancer's health check
	// fails and it moves the flows; the clients come back elsewhere.
	// (Only with a second gateway per region: otherwise stopping one cuts
	// its region off, which is not a failover.)
	if opts.PerRegion > 1 {
		victim := d.busiestGateway()
		fmt.Fprintf(out, "phase 3: gateway %s stops; the load balancer moves its flows to healthy gateways\n", d.names[victim])
		t0 = time.Now()
		d.stopGateway(sctx, victim)
		d.checkOwners(sctx, t0, fail, "stop")
		d.parallel(func(c *client) { c.reachAll(sctx, d, 1, "after stop") })
	}

	for _, c := range d.clients {
		if c.err != nil {
			fail("%s: %v", c.name, c.err)
		}
	}
	fmt.Fprintln(out)
	d.printClients(out)
	fmt.Fprintln(out)
	d.printGateways(out)
	fmt.Fprintln(out)
	d.printSummary(out)
	fmt.Fprintf(out, "\nscenario took %s\n", time.Since(start).Round(time.Millisecond))
	if len(failed) > 0 {
		return fmt.Errorf("demo failed: %s", strings.Join(failed, "; "))
	}
	fmt.Fprintln(out, "result: OK, every client reached every region's service before and after every move")
	if opts.KeepRunning {
		fmt.Fprintf(out, "\n--keep-running: the deployment stays up until Ctrl-C; load balancer at %s\n", d.lb.Addr())
		<-ctx.Done()
	}
	return nil
}

// deploy starts the regions, gateways, load balancer and clients.
func deploy(ctx context.Context, opts Options, out io.Writer) (_ *deployment, err error) {
	d := &deployment{}
	for i := range opts.Regions {
		pn, err := newPrivateNetwork(regionNames[i], byte(i+1))
		if err != nil {
			return d, err
		}
		d.regions = append(d.regions, pn)
	}
	if d.key, err = keys.Generate(); err != nil {
		return d, err
	}
	secret, err := keys.Generate()
	if err != nil {
		return d, err
	}
	clientKeys := make([]keys.Key, opts.Clients)
	var peers []config.Peer
	for i := range clientKeys {
		if clientKeys[i], err = keys.Generate(); err != nil {
			return d, err
		}
		peers = append(peers, config.Peer{
			Name:       fmt.Sprintf("client-%d", i+1),
			PublicKey:  clientKeys[i].Public(),
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(clientAddr(i), 32)},
		})
	}
	fmt.Fprintf(out, "anyguard demo: %d regions × %d gateways in one encrypted cluster, a UDP load balancer in front, %d WireGuard clients\n",
		opts.Regions, opts.PerRegion, opts.Clients)
	var join []string
	for r, pn := range d.regions {
		for k := range opts.PerRegion {
			name := fmt.Sprintf("%s-%c", pn.name, 'a'+k)
			g, err := startGateway(name, pn, d.key, secret, peers, join, opts.Logger)
			if err != nil {
				return d, err
			}
			if join == nil {
				join = []string{g.Cluster().LocalAddr().String()}
			}
			d.gws = append(d.gws, g)
			d.names = append(d.names, name)
			d.regionOf = append(d.regionOf, r)
		}
	}
	for r, pn := range d.regions {
		fmt.Fprintf(out, "  region %-10s private network %s (web %s, UDP echo %s), gateways %s\n",
			pn.name, pn.prefix, pn.web, pn.echoAddr, strings.Join(d.names[r*opts.PerRegion:(r+1)*opts.PerRegion], ", "))
	}
	t0 := time.Now()
	if err := waitUntil(ctx, func() bool {
		for _, g := range d.gws {
			if alive(g) != len(d.gws) {
				return false
			}
		}
		return true
	}); err != nil {
		return d, fmt.Errorf("gateways did not all see each other: %w", err)
	}
	fmt.Fprintf(out, "  cluster formed: %d gateways see each other after %s\n", len(d.gws), time.Since(t0).Round(time.Millisecond))

	var backends []netip.AddrPort
	for _, g := range d.gws {
		backends = append(backends, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), g.ListenPort()))
	}
	if d.lb, err = lbsim.New("127.0.0.1:0", backends); err != nil {
		return d, err
	}
	fmt.Fprintf(out, "  load balancer (the anycast address) at %s\n\n", d.lb.Addr())
	for i, k := range clientKeys {
		c, err := newClient(peers[i].Name, k, clientAddr(i), d)
		if err != nil {
			return d, err
		}
		d.clients = append(d.clients, c)
	}
	return d, nil
}

func startGateway(name string, pn *privateNetwork, key, secret keys.Key, peers []config.Peer, join []string, logger *slog.Logger) (*gateway.Gateway, error) {
	bb, err := keys.Generate()
	if err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.Node = config.Node{Name: name, Region: pn.name}
	cfg.Clients.PrivateKey = key
	cfg.Clients.ListenPort = 0
	cfg.Clients.UAPI = false
	cfg.Clients.Address = []netip.Prefix{clientNet}
	cfg.Clients.Peers = peers
	cfg.Egress.Mode = config.ModeNetstack
	cfg.Egress.Prefixes = []netip.Prefix{pn.prefix}
	cfg.Backbone.PrivateKey = bb
	cfg.Backbone.ListenPort = 0
	cfg.Cluster.Bind = "127.0.0.1:0"
	cfg.Cluster.Join = join
	cfg.Cluster.SecretKey = secret
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("demo configuration of %s: %w", name, err)
	}
	if logger != nil {
		logger = logger.With("gw", name) // one process logs for all six
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: logger, NetstackDial: pn.Dial, NetstackPing: pn.Ping})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return g, nil
}

func alive(g *gateway.Gateway) int {
	n := 0
	for _, m := range g.Cluster().Members() {
		if m.Alive {
			n++
		}
	}
	return n
}

func clientAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 99, byte((i + 2) >> 8), byte(i + 2)})
}

// waitUntil polls ok every 10 ms until it holds or ctx ends.
func waitUntil(ctx context.Context, ok func() bool) error {
	for !ok() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// parallel runs f for every client at once and waits.
func (d *deployment) parallel(f func(*client)) {
	var wg sync.WaitGroup
	for _, c := range d.clients {
		if c.err != nil {
			continue
		}
		wg.Go(func() { f(c) })
	}
	wg.Wait()
}

// running returns the gateways still up.
func (d *deployment) running() []int {
	var out []int
	for i, g := range d.gws {
		if g != nil {
			out = append(out, i)
		}
	}
	return out
}

// checkOwners waits until every running gateway agrees on each client's
// owner, and that the owner is the gateway the client's flow goes to; it
// records for each client how long after since agreement came.
func (d *deployment) checkOwners(ctx context.Context, since time.Time, fail func(string, ...any), phase string) {
	done := make(map[*client]bool)
	_ = waitUntil(ctx, func() bool {
		all := true
		for _, c := range d.clients {
			if c.err != nil || done[c] {
				continue
			}
			if owner, ok := d.agreedOwner(c); ok {
				done[c] = true
				c.owners = append(c.owners, owner)
				c.agreed = append(c.agreed, time.Since(since))
			} else {
				all = false
			}
		}
		return all
	})
	for _, c := range d.clients {
		if c.err == nil && !done[c] {
			fail("%s: gateways did not agree on its owner after %s", c.name, phase)
		}
	}
}

// agreedOwner returns the client's owner if every running gateway names
// the gateway its flow goes to.
func (d *deployment) agreedOwner(c *client) (string, bool) {
	b, ok := c.backend(d)
	if !ok {
		return "", false
	}
	want := d.names[b]
	for _, i := range d.running() {
		rec, ok := d.gws[i].Cluster().Owner(c.key.Public())
		if !ok || rec.Owner != want {
			return "", false
		}
	}
	return want, true
}

// busiestGateway is the running gateway whose flows carry the most clients.
func (d *deployment) busiestGateway() int {
	count := make(map[int]int)
	for _, c := range d.clients {
		if b, ok := c.backend(d); ok {
			count[b]++
		}
	}
	best := d.running()[0]
	for _, i := range d.running() {
		if count[i] > count[best] {
			best = i
		}
	}
	return best
}

// stopGateway fails the load balancer's health check of gateway i (its
// flows move at once) and stops it, measuring how soon its clients carry
// traffic again.
func (d *deployment) stopGateway(ctx context.Context, i int) {
	var affected []*client
	for _, c := range d.clients {
		if b, ok := c.backend(d); ok && b == i && c.err == nil {
			affected = append(affected, c)
		}
	}
	stopped := time.Now()
	d.lb.SetHealthy(i, false)
	d.gws[i].Close()
	d.gws[i] = nil
	var wg sync.WaitGroup
	for _, c := range affected {
		wg.Go(func() { c.recover(ctx, d, stopped, "stop") })
	}
	wg.Wait()
}

func (d *deployment) close() {
	for _, c := range d.clients {
		c.close()
	}
	if d.lb != nil {
		d.lb.Close()
	}
	// One after another: each leaves the cluster while the others still
	// take its leave message (closing all at once timed out every leave
	// and logged sends to closed sockets).
	for _, g := range d.gws {
		if g != nil {
			g.Close()
		}
	}
	for _, pn := range d.regions {
		pn.Close()
	}
}

func ms(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}
