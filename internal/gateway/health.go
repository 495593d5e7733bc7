package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/health"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/router"
)

// Checks returns the gateway's readiness checks, in the order /readyz
// lists them. Add a check here for each new condition of readiness (the
// cluster's "joined, or alone by configuration" goes here).
func (g *Gateway) Checks() []health.Check {
	checks := []health.Check{
		{Name: "clients", Run: g.checkClients},
		{Name: "router", Run: g.checkRouter},
		{Name: "egress", Run: g.checkEgress},
		{Name: "dataplane", Run: g.probe.Check},
	}
	if g.members != nil {
		checks = append(checks, health.Check{Name: "cluster", Run: g.members.Check},
			health.Check{Name: "clocks", Run: g.members.CheckClocks, Advisory: true})
	}
	return checks
}

// DrainSteps returns what the gateway does after the drain window, before
// it exits. Leaving the cluster gracefully goes here.
func (g *Gateway) DrainSteps() []health.Step {
	if g.members == nil {
		return nil
	}
	return []health.Step{{Name: "leave cluster", Run: func(context.Context) error { return g.members.Leave() }}}
}

// BeginDrain tells the other gateways that this one is draining, so they
// route other regions' traffic for its prefixes to a gateway that is not,
// while its own sessions keep flowing until the drain window ends.
func (g *Gateway) BeginDrain() {
	if g.relay != nil {
		g.relay.Draining() // before the load balancer moves any flow
	}
	if g.members != nil {
		g.members.SetState(cluster.StateDraining)
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
	if dst := g.probe.Target(); !g.routesTo(dst, g.egressPort) {
		return fmt.Errorf("router: no route from %s to the egress", dst)
	}
	if src := g.probe.Source(); !g.routesTo(src, g.clientPort) {
		return fmt.Errorf("router: no route from %s to the client device", src)
	}
	return nil
}

func (g *Gateway) routesTo(a netip.Addr, port router.PortID) bool {
	out, ok := g.router.Lookup(a)
	return ok && out == port
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
func (g *Gateway) IsProbePeer(k keys.Key) bool { return g.probe.IsProbe(k) }

// ProbeCounts returns the data-path probe's rounds that succeeded and
// failed since start.
func (g *Gateway) ProbeCounts() (ok, failed uint64) { return g.probe.Counts() }

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
