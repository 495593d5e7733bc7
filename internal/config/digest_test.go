package config

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
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

// digestV1 is ClientSetDigest as first written, one string per record:
// the digest is compared across gateways, so a faster one must not change
// its value (a cluster upgrades one gateway at a time).
func digestV1(c *Config) string {
	recs := make([]string, 0, len(c.Clients.Peers))
	for _, p := range c.Clients.Peers {
		ips := make([]string, 0, len(p.AllowedIPs))
		for _, ip := range p.AllowedIPs {
			ips = append(ips, ip.String())
		}
		slices.Sort(ips)
		var b []byte
		field := func(s string) {
			b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
			b = append(b, s...)
		}
		field(p.Name)
		field(string(p.PublicKey[:]))
		field(strings.Join(ips, ","))
		if p.PresharedKey.IsZero() {
			field("nopsk")
		} else {
			field("psk")
		}
		recs = append(recs, string(b))
	}
	slices.Sort(recs)
	h := sha256.New()
	h.Write([]byte("anyguard client set v1\n"))
	for _, r := range recs {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(r)))
		h.Write(n[:])
		h.Write([]byte(r))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestClientSetDigestUnchanged(t *testing.T) {
	c := digestConfig()
	for i := range 500 {
		k := testKeys["PUB1"]
		k[0], k[1] = byte(i), byte(i>>8)
		p := Peer{Name: fmt.Sprintf("n%d", i*7919%1000), PublicKey: k, AllowedIPs: pfx(fmt.Sprintf("10.98.%d.%d/32", i/256, i%256))}
		if i%3 == 0 {
			p.AllowedIPs = append(p.AllowedIPs, pfx(fmt.Sprintf("fd98::%x/128", i), fmt.Sprintf("10.%d.0.0/16", 100+i%100))...)
		}
		if i%5 == 0 {
			p.PresharedKey = testKeys["PSK"]
		}
		c.Clients.Peers = append(c.Clients.Peers, p)
	}
	for _, peers := range [][]Peer{nil, c.Clients.Peers[:1], c.Clients.Peers} {
		c := &Config{Clients: Clients{Peers: peers}}
		if got, want := c.ClientSetDigest(), digestV1(c); got != want {
			t.Errorf("%d peers: digest %s, the original's %s", len(peers), got, want)
		}
	}
}
