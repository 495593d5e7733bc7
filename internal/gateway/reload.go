package gateway

import (
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway/admission"
)

// ErrRestartNeeded is returned by Reload for a change that only a restart
// can apply; the running configuration stays in force.
var ErrRestartNeeded = errors.New("changed, which needs a restart; kept the running configuration")

// Reload applies a new configuration to the running gateway: clients are
// added, changed and removed without disturbing the sessions of the others,
// and served prefixes change. Fields that shape the devices themselves
// (keys, ports, addresses, MTU, egress mode, TUN name and queues) need a
// restart: Reload refuses such a configuration and changes nothing.
// Log settings are the caller's to apply.
func (g *Gateway) Reload(cfg *config.Config) error {
	if err := g.reload(cfg); err != nil {
		g.reloadFailed.Add(1)
		return err
	}
	g.reloadOK.Add(1)
	return nil
}

// ReloadFailed counts a reload that failed before it reached Reload (the
// configuration did not load).
func (g *Gateway) ReloadFailed() { g.reloadFailed.Add(1) }

func (g *Gateway) reload(cfg *config.Config) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	old := g.cfg.Load()
	if field := restartField(old, cfg); field != "" {
		return fmt.Errorf("reload: %s %w", field, ErrRestartNeeded)
	}
	// Only clients that are device peers now need the device: removed
	// ones go, changed ones are updated in place (sessions kept). The
	// others are looked up in the new index when they connect.
	if err := g.setClients(cfg); err != nil {
		if rerr := g.setClients(old); rerr != nil {
			err = errors.Join(err, fmt.Errorf("restoring the previous clients: %w", rerr))
		}
		return fmt.Errorf("reload: clients.peers: %w", err)
	}
	g.cfg.Store(cfg)
	if err := g.routes.Reapply(); err != nil {
		g.cfg.Store(old)
		err = errors.Join(err, g.setClients(old), g.routes.Reapply())
		return fmt.Errorf("reload: %w", err)
	}
	g.digest = cfg.ClientSetDigest()
	if g.members != nil {
		g.members.Announce(cfg, g.digest)
	}
	g.logger.Info("configuration reloaded", "node", cfg.Node.Name,
		"clients", len(cfg.Clients.Peers), "digest", g.digest[:12],
		"prefixes", fmt.Sprint(cfg.Egress.Prefixes))
	return nil
}

// restartField names the first field that differs in a way only a restart
// can apply, or returns "".
func restartField(a, b *config.Config) string {
	switch {
	case a.Node.Name != b.Node.Name:
		return "node.name"
	case a.Node.Region != b.Node.Region:
		return "node.region"
	case a.Clients.PrivateKey != b.Clients.PrivateKey:
		return "clients.private_key"
	case a.Clients.ListenPort != b.Clients.ListenPort:
		return "clients.listen_port"
	case !slices.Equal(a.Clients.Address, b.Clients.Address):
		return "clients.address"
	case a.Clients.MTU != b.Clients.MTU:
		return "clients.mtu"
	case a.Clients.UAPI != b.Clients.UAPI:
		return "clients.uapi"
	case a.Egress.Mode != b.Egress.Mode:
		return "egress.mode"
	case a.Egress.TunName != b.Egress.TunName:
		return "egress.tun_name"
	case a.Egress.Queues != b.Egress.Queues:
		return "egress.queues"
	case a.Backbone != b.Backbone:
		return "backbone"
	case !reflect.DeepEqual(a.Cluster, b.Cluster):
		return "cluster"
	case a.Health != b.Health:
		return "health"
	}
	return ""
}

// Config returns the configuration in force.
func (g *Gateway) Config() *config.Config { return g.cfg.Load() }

// config returns the configuration in force and its client-set digest.
func (g *Gateway) config() (*config.Config, string) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	return g.cfg.Load(), g.digest
}

// setClients installs the client index of cfg and brings the device's
// live client peers in line with it.
func (g *Gateway) setClients(cfg *config.Config) error {
	return g.admission.Reindex(func() { g.index.set(cfg) })
}

// PeerStats returns the counts of configured clients and live peers and
// the just-in-time counters.
func (g *Gateway) PeerStats() JITStats { return g.admission.Stats() }

// JITStats are the just-in-time peer counters.
type JITStats = admission.Stats

// DefaultIdleTimeout is how long a client's peer stays on the client
// device after its last handshake, initiation or addition.
const DefaultIdleTimeout = admission.DefaultIdleTimeout
