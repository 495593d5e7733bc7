package gateway

import (
	"errors"
	"net/netip"
	"sync"

	"github.com/anyguard/anyguard/device"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway/probe"
	"github.com/anyguard/anyguard/router"
)

// routeTable owns the router's forwarding table and source filters and
// the TUN's kernel routes. It implements membership.Routes.
type routeTable struct {
	// mu serialises whole-table rebuilds with the per-client patches of
	// ownership changes, so a rebuild computed from an older view never
	// lands after a newer patch. It guards extra.
	mu sync.Mutex

	router                 *router.Router
	clientPort, egressPort router.PortID
	cfg                    func() *config.Config // the configuration in force
	tun                    *device.TUN           // nil in netstack mode
	// extra returns the routes membership and ownership add (nil when
	// the gateway runs alone); called under mu.
	extra func(*config.Config) []router.Route
}

// setExtra installs (or, with nil, removes) the source of the cluster's
// routes.
func (t *routeTable) setExtra(extra func(*config.Config) []router.Route) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.extra = extra
}

// set installs the forwarding table and source filters from the
// configuration: each client's allowed IPs to the client port, the served
// prefixes and the gateway's own addresses to the egress.
func (t *routeTable) set() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	cfg := t.cfg()
	var routes []router.Route
	var clientSources []router.SourceRule
	egressSources := []router.SourceRule{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Allow: true},
		{Prefix: netip.MustParsePrefix("::/0"), Allow: true},
	}
	for _, p := range probe.ClientPrefixes(cfg) {
		routes = append(routes, router.Route{Prefix: p, Port: t.clientPort})
		clientSources = append(clientSources, router.SourceRule{Prefix: p, Allow: true})
		egressSources = append(egressSources, router.SourceRule{Prefix: p, Allow: false})
	}
	for _, p := range cfg.Egress.Prefixes {
		routes = append(routes, router.Route{Prefix: p, Port: t.egressPort})
	}
	for _, a := range cfg.Clients.Address {
		routes = append(routes, router.Route{Prefix: netip.PrefixFrom(a.Addr(), a.Addr().BitLen()), Port: t.egressPort})
	}
	if t.extra != nil {
		// Later routes replace earlier ones for the same prefix: clients
		// owned elsewhere leave over the backbone.
		routes = append(routes, t.extra(cfg)...)
	}
	if err := t.router.SetRoutes(routes); err != nil {
		return err
	}
	if err := t.router.SetSources(t.clientPort, clientSources); err != nil {
		return err
	}
	return t.router.SetSources(t.egressPort, egressSources)
}

// Reapply brings the router and the TUN's kernel routes in line with the
// configuration in force and the cluster's view.
func (t *routeTable) Reapply() error {
	if err := t.set(); err != nil {
		return err
	}
	if t.tun != nil {
		cfg := t.cfg()
		return t.tun.SetRoutes(routesOutside(cfg.Clients.Address, probe.ClientPrefixes(cfg)))
	}
	return nil
}

// Patch sets the routes compute returns, computed under the table's lock.
func (t *routeTable) Patch(compute func() []router.Route) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for _, r := range compute() {
		if err := t.router.SetRoute(r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
