package config

import (
	"regexp"
	"testing"
)

func digestConfig() *Config {
	c := Default()
	c.Clients.Peers = []Peer{
		{Name: "alice", PublicKey: testKeys["PUB1"], AllowedIPs: pfx("10.99.0.2/32", "10.99.1.0/24")},
		{Name: "bob", PublicKey: testKeys["PUB2"], PresharedKey: testKeys["PSK"], AllowedIPs: pfx("10.99.0.3/32")},
		{Name: "carol", PublicKey: testKeys["PUB3"], AllowedIPs: pfx("fd99::4/128")},
	}
	return c
}

func TestClientSetDigestOrderIndependent(t *testing.T) {
	a := digestConfig()
	want := a.ClientSetDigest()
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(want) {
		t.Fatalf("digest %q is not hex SHA-256", want)
	}
	b := digestConfig()
	p := b.Clients.Peers
	p[0], p[2] = p[2], p[0]
	p[2].AllowedIPs = pfx("10.99.1.0/24", "10.99.0.2/32")
	if got := b.ClientSetDigest(); got != want {
		t.Errorf("reordered: %s, want %s", got, want)
	}
	// Settings outside the peer set do not count.
	b.Clients.MTU = 1300
	b.Node.Name = "other"
	if got := b.ClientSetDigest(); got != want {
		t.Errorf("other settings changed digest")
	}
}

func TestClientSetDigestChanges(t *testing.T) {
	base := digestConfig().ClientSetDigest()
	seen := map[string]string{base: "base"}
	for name, change := range map[string]func(c *Config){
		"name":       func(c *Config) { c.Clients.Peers[0].Name = "alicia" },
		"public key": func(c *Config) { c.Clients.Peers[0].PublicKey = testKeys["PRIV"] },
		"allowed ip": func(c *Config) { c.Clients.Peers[0].AllowedIPs[1] = pfx("10.99.2.0/24")[0] },
		"extra ip":   func(c *Config) { c.Clients.Peers[2].AllowedIPs = pfx("fd99::4/128", "fd99::5/128") },
		"psk added":  func(c *Config) { c.Clients.Peers[0].PresharedKey = testKeys["PSK"] },
		"psk gone":   func(c *Config) { c.Clients.Peers[1].PresharedKey = [32]byte{} },
		"peer gone":  func(c *Config) { c.Clients.Peers = c.Clients.Peers[:2] },
		"ips moved": func(c *Config) { // same IPs, different owners
			c.Clients.Peers[0].AllowedIPs = pfx("10.99.0.2/32")
			c.Clients.Peers[1].AllowedIPs = pfx("10.99.0.3/32", "10.99.1.0/24")
		},
		"no peers": func(c *Config) { c.Clients.Peers = nil },
	} {
		c := digestConfig()
		change(c)
		d := c.ClientSetDigest()
		if other, ok := seen[d]; ok {
			t.Errorf("%s: digest equals that of %s", name, other)
		}
		seen[d] = name
	}
}
