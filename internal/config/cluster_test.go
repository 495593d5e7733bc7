package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestClusterDefaultsAndValues(t *testing.T) {
	c := mustParse(t, head, "")
	if c.Clustered() || c.Backbone.ListenPort != 51821 || c.Cluster.Bind != "0.0.0.0:7946" || c.Cluster.Profile != "lan" {
		t.Errorf("defaults: %+v %+v", c.Backbone, c.Cluster)
	}
	c = mustParse(t, head+"backbone:\n  private_key: PUB2\n  endpoint: 192.0.2.1\ncluster:\n  bind: 10.0.0.1\n  join: [10.0.0.2:7946, gw.example.com:7946]\n  secret_key: PUB3\n  profile: wan\n", "")
	if !c.Clustered() || c.Backbone.EndpointAddrPort() != netip.MustParseAddrPort("192.0.2.1:51821") ||
		c.Cluster.BindAddrPort() != netip.MustParseAddrPort("10.0.0.1:7946") || c.Cluster.Profile != "wan" || len(c.Cluster.Join) != 2 {
		t.Errorf("got %+v %+v", c.Backbone, c.Cluster)
	}
	if c.Cluster.ReconnectTimeout != 24*time.Hour {
		t.Errorf("reconnect_timeout %s, want 24h by default", c.Cluster.ReconnectTimeout)
	}
	c = mustParse(t, head+"backbone:\n  private_key: PUB2\ncluster:\n  bind: 127.0.0.1:0\n  insecure: true\n  reconnect_timeout: 2h30m\n", "")
	if c.Cluster.ReconnectTimeout != 150*time.Minute {
		t.Errorf("reconnect_timeout %s", c.Cluster.ReconnectTimeout)
	}
	if !c.Cluster.Insecure || c.Cluster.SecretKey.IsZero() == false {
		t.Errorf("insecure: %+v", c.Cluster)
	}
}

func TestClusterErrors(t *testing.T) {
	bb := "backbone:\n  private_key: PUB2\n"
	for _, tc := range []struct {
		yaml, path, text string
		kind             error
	}{
		{"cluster:\n  join: [10.0.0.2:7946]\n", "cluster.join", "needs backbone.private_key", ErrMissing},
		{bb, "cluster.secret_key", "is required to encrypt gossip", ErrMissing},
		{bb + "cluster:\n  secret_key: PUB3\n  insecure: true\n  advertise: 10.0.0.1:7946\n", "cluster.insecure", "remove one", ErrConflict},
		{bb + "cluster:\n  secret_key: PUB3\n  profile: metro\n", "cluster.profile", "want lan or wan", ErrInvalidValue},
		{bb + "cluster:\n  secret_key: PUB3\n  bind: nowhere\n", "cluster.bind", "is not an IP:port", ErrInvalidValue},
		{bb + "cluster:\n  secret_key: PUB3\n  advertise: 0.0.0.0:7946\n", "cluster.advertise", "others can reach", ErrInvalidValue},
		{bb + "cluster:\n  secret_key: PUB3\n  join: [\"no port here\"]\n", "cluster.join[0]", "is not a host:port", ErrInvalidValue},
		{bb + "cluster:\n  secret_key: PUB3\n", "backbone.endpoint", "cannot be derived", ErrMissing},
		{"backbone:\n  private_key: PRIV\n", "backbone.private_key", "each gateway needs its own", ErrInvalidValue},
		{bb + "  endpoint: 0.0.0.0:1\ncluster:\n  secret_key: PUB3\n", "backbone.endpoint", "others can reach", ErrInvalidValue},
		{bb + "  listen_port: 70000\n", "backbone.listen_port", "out of range", ErrInvalidValue},
		{bb + "cluster:\n  secret: PUB3\n", "cluster.secret", "unknown field", ErrUnknownField},
		{bb + "cluster:\n  secret_key: PUB3\n  advertise: 10.0.0.1:7946\n  reconnect_timeout: 30s\n", "cluster.reconnect_timeout", "out of range 1m..720h", ErrInvalidValue},
		{bb + "cluster:\n  secret_key: PUB3\n  advertise: 10.0.0.1:7946\n  reconnect_timeout: 721h\n", "cluster.reconnect_timeout", "out of range", ErrInvalidValue},
		{bb + "cluster:\n  secret_key: PUB3\n  advertise: 10.0.0.1:7946\n  reconnect_timeout: -1h\n", "cluster.reconnect_timeout", "out of range", ErrInvalidValue},
		{bb + "cluster:\n  secret_key: PUB3\n  advertise: 10.0.0.1:7946\n  reconnect_timeout: soon\n", "cluster.reconnect_timeout", "", ErrInvalidValue},
	} {
		_, err := Parse([]byte(fill(head+tc.yaml)), "")
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Path != tc.path || !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.text) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: got %v, want %s containing %q", tc.yaml, err, tc.path, tc.text)
		}
	}
}
