package config

import (
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/anyguard/anyguard/internal/keys"
)

// Cluster defaults.
const (
	DefaultBackbonePort = 51821
	DefaultGossipPort   = 7946
	DefaultProfile      = "lan"
	// DefaultReconnectTimeout is how long a gateway keeps looking for a
	// member it lost (a partition, a crash), as Serf's reconnect_timeout.
	DefaultReconnectTimeout = 24 * time.Hour
)

// Backbone is the gateway-to-gateway WireGuard mesh. Its peers are
// configured automatically from cluster membership. A gateway with no
// backbone key runs alone, as a single gateway.
type Backbone struct {
	// PrivateKey is this gateway's own backbone key (unique per gateway),
	// from private_key or private_key_file.
	PrivateKey keys.Key `yaml:"private_key" config:"file"`
	// ListenPort is the backbone's UDP port. Default 51821.
	ListenPort uint16 `yaml:"listen_port"`
	// Endpoint is the host:port the other gateways send backbone traffic
	// to. Default: the cluster advertise host with listen_port.
	Endpoint string `yaml:"endpoint"`
}

// Cluster is the gossip membership among all gateways of all regions.
type Cluster struct {
	// Bind is the gossip listen address (TCP and UDP). Default 0.0.0.0:7946.
	Bind string `yaml:"bind"`
	// Advertise is the address the others reach this gateway's gossip at.
	// Default: chosen from Bind (the first private address when Bind is
	// unspecified).
	Advertise string `yaml:"advertise"`
	// Join lists host:port gossip addresses of gateways to join at start
	// (any one that answers is enough). Empty: this gateway starts a
	// cluster that others join.
	Join []string `yaml:"join"`
	// SecretKey encrypts and authenticates gossip (AES-256-GCM); `anyguard
	// genkey` output works. Required unless Insecure.
	SecretKey keys.Key `yaml:"secret_key" config:"file"`
	// Insecure allows gossip without a secret key (tests only).
	Insecure bool `yaml:"insecure"`
	// Profile tunes gossip and failure detection: lan (one region, or
	// regions with low latency) or wan. Default lan.
	Profile string `yaml:"profile"`
	// ReconnectTimeout is how long a member that went missing (failed or
	// cut off, not one that left gracefully) is looked for, every few
	// seconds, so that a partition heals by itself when the network
	// returns. Default 24h; 1m to 720h.
	ReconnectTimeout time.Duration `yaml:"reconnect_timeout"`
}

// Clustered reports whether this gateway joins a cluster: it does when it
// has a backbone key.
func (c *Config) Clustered() bool { return !c.Backbone.PrivateKey.IsZero() }

// BindAddrPort, AdvertiseAddrPort and BackboneEndpoint return the parsed
// addresses; they are valid after Validate succeeded.
func (c *Cluster) BindAddrPort() netip.AddrPort {
	ap, _ := parseHostPort(c.Bind, DefaultGossipPort)
	return ap
}

// AdvertiseAddrPort returns the advertise address, or the zero value.
func (c *Cluster) AdvertiseAddrPort() netip.AddrPort {
	ap, _ := parseHostPort(c.Advertise, DefaultGossipPort)
	return ap
}

// BackboneEndpoint returns the advertised backbone endpoint, or the zero
// value when it is to be derived from the cluster's advertise address.
func (b *Backbone) EndpointAddrPort() netip.AddrPort {
	ap, _ := parseHostPort(b.Endpoint, int(b.ListenPort))
	return ap
}

// parseHostPort parses "ip:port" or "ip" (with the default port).
func parseHostPort(s string, defPort int) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, uint16(defPort)), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

func (b *Backbone) validate(v *validator, c *Config) error {
	if b.PrivateKey.IsZero() {
		return nil
	}
	if b.PrivateKey == c.Clients.PrivateKey {
		return v.errorf("backbone.private_key", ErrInvalidValue, "is the clients' shared key; each gateway needs its own backbone key (anyguard genkey)")
	}
	if b.Endpoint != "" {
		ap, err := parseHostPort(b.Endpoint, int(b.ListenPort))
		if err != nil || !ap.Addr().IsValid() || ap.Port() == 0 || ap.Addr().IsUnspecified() {
			return v.errorf("backbone.endpoint", ErrInvalidValue, "%q is not an IP:port others can reach", b.Endpoint)
		}
	}
	return nil
}

func (cl *Cluster) validate(v *validator, c *Config) error {
	if cl.Profile != "lan" && cl.Profile != "wan" {
		return v.errorf("cluster.profile", ErrInvalidValue, "%q: want lan or wan", cl.Profile)
	}
	if cl.ReconnectTimeout < time.Minute || cl.ReconnectTimeout > 720*time.Hour {
		return v.errorf("cluster.reconnect_timeout", ErrInvalidValue, "%s is out of range 1m..720h", cl.ReconnectTimeout)
	}
	if ap, err := parseHostPort(cl.Bind, DefaultGossipPort); err != nil || !ap.Addr().IsValid() {
		return v.errorf("cluster.bind", ErrInvalidValue, "%q is not an IP:port", cl.Bind)
	}
	if cl.Advertise != "" {
		ap, err := parseHostPort(cl.Advertise, DefaultGossipPort)
		if err != nil || !ap.Addr().IsValid() || ap.Addr().IsUnspecified() || ap.Port() == 0 {
			return v.errorf("cluster.advertise", ErrInvalidValue, "%q is not an IP:port others can reach", cl.Advertise)
		}
	}
	for i, j := range cl.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			if _, err := netip.ParseAddr(j); err != nil {
				return v.errorf(v.elem("cluster.join", i), ErrInvalidValue, "%q is not a host:port", j)
			}
		}
	}
	if !c.Clustered() {
		if len(cl.Join) > 0 {
			return v.errorf("cluster.join", ErrMissing, "joining a cluster needs backbone.private_key (anyguard genkey)")
		}
		return nil
	}
	if cl.SecretKey.IsZero() && !cl.Insecure {
		return v.errorf("cluster.secret_key", ErrMissing, "is required to encrypt gossip (anyguard genkey > gossip.key); set cluster.insecure: true only for tests")
	}
	if !cl.SecretKey.IsZero() && cl.Insecure {
		return v.errorf("cluster.insecure", ErrConflict, "true together with a secret_key; remove one")
	}
	if c.Backbone.Endpoint == "" && cl.Advertise == "" && cl.BindAddrPort().Addr().IsUnspecified() {
		return v.errorf("backbone.endpoint", ErrMissing, "cannot be derived: set backbone.endpoint or cluster.advertise (the address other gateways reach this one at)")
	}
	return nil
}
