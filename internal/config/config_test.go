package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/anyguard/anyguard/internal/keys"
)

// testKeys are generated once; YAML in tests names them by placeholder.
var testKeys = func() map[string]keys.Key {
	m := make(map[string]keys.Key)
	for _, name := range []string{"PRIV", "PUB1", "PUB2", "PUB3", "PSK"} {
		k, err := keys.Generate()
		if err != nil {
			panic(err)
		}
		m[name] = k
	}
	m["OWNPUB"] = m["PRIV"].Public()
	return m
}()

// fill replaces key placeholders in a YAML text.
func fill(s string) string {
	for name, k := range testKeys {
		s = strings.ReplaceAll(s, name, k.String())
	}
	return s
}

func writeKey(t testing.TB, path string, text string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask
		t.Fatal(err)
	}
}

func mustParse(t *testing.T, text, dir string) *Config {
	t.Helper()
	c, err := Parse([]byte(fill(text)), dir)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, text)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate after Parse: %v", err)
	}
	return c
}

func pfx(ss ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

func TestParseMinimalDefaults(t *testing.T) {
	c := mustParse(t, "clients:\n  private_key: PRIV\n  address: 10.99.0.1/16\n", "")
	want := Default()
	want.Clients.PrivateKey = testKeys["PRIV"]
	want.Clients.Address = pfx("10.99.0.1/16")
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	host, _ := os.Hostname()
	if c.Node.Name != host || c.Node.Region != "default" || c.Clients.ListenPort != 51820 ||
		c.Clients.MTU != 1420 || !c.Clients.UAPI || c.Egress.Mode != ModeTUN || c.Egress.TunName != "ag0" ||
		c.Egress.Queues != 0 || c.Log.Level != "info" || c.Log.Format != "text" || c.Path != "" {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestParseOverridesDefaultsWithZero(t *testing.T) {
	c := mustParse(t, `
clients:
  private_key: PRIV
  address: 10.99.0.1/16
  listen_port: 0
  uapi: false
  peers:
egress:
  mode: netstack
  queues: 0x10
log:
`, "")
	if c.Clients.ListenPort != 0 || c.Clients.UAPI || c.Egress.Mode != ModeNetstack || c.Egress.Queues != 16 || c.Log.Level != "info" {
		t.Errorf("got %+v", c)
	}
}

func TestParseAddressForms(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"address: 10.99.0.1/16", "[10.99.0.1/16]"},
		{"address: [10.99.0.1/16]", "[10.99.0.1/16]"},
		{"address: [10.99.0.1/16, 'fd99::1/64']", "[10.99.0.1/16 fd99::1/64]"},
		{"address:\n    - fd99::1/64\n    - 192.168.7.254/24", "[fd99::1/64 192.168.7.254/24]"},
		{"address: 10.0.0.1/31", "[10.0.0.1/31]"},
	} {
		c := mustParse(t, "clients:\n  private_key: PRIV\n  "+tc.yaml+"\n", "")
		if got := fmt.Sprint(c.Clients.Address); got != tc.want {
			t.Errorf("%q: got %s, want %s", tc.yaml, got, tc.want)
		}
	}
}

func TestParseIPv6(t *testing.T) {
	c := mustParse(t, `
node: {name: gw6, region: eu-west-1}
clients:
  private_key: PRIV
  address: fd99::1/64
  peers:
    - name: v6
      public_key: PUB1
      allowed_ips: [fd99::2/128, 2001:db8:1::/48, 10.99.0.2/32]
egress:
  prefixes: [2001:db8:100::/40, 10.0.0.0/8]
`, "")
	p := c.Clients.Peers[0]
	if !reflect.DeepEqual(p.AllowedIPs, pfx("fd99::2/128", "2001:db8:1::/48", "10.99.0.2/32")) ||
		!reflect.DeepEqual(c.Egress.Prefixes, pfx("2001:db8:100::/40", "10.0.0.0/8")) {
		t.Errorf("got %+v", c)
	}
}

func TestLoadRelativeKeyFiles(t *testing.T) {
	dir := t.TempDir()
	writeKey(t, filepath.Join(dir, "keys", "clients.key"), testKeys["PRIV"].String()+"\n", 0o600)
	writeKey(t, filepath.Join(dir, "keys", "alice.psk"), testKeys["PSK"].String()+"\n", 0o400)
	path := filepath.Join(dir, "anyguard.yaml")
	text := fill(`
clients:
  private_key_file: keys/clients.key
  address: 10.99.0.1/16
  peers:
    - name: alice
      public_key: PUB1
      preshared_key_file: keys/alice.psk
      allowed_ips: [10.99.0.2/32]
`)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != path || c.Clients.PrivateKey != testKeys["PRIV"] || c.Clients.Peers[0].PresharedKey != testKeys["PSK"] {
		t.Errorf("got %+v", c)
	}

	// Parse resolves against baseDir, not the working directory.
	if _, err := Parse([]byte(text), dir); err != nil {
		t.Errorf("Parse with baseDir: %v", err)
	}
	if _, err := Parse([]byte(text), t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Parse with another baseDir: err = %v, want not exist", err)
	}
}

func TestLoadErrorNamesFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "anyguard.yaml")
	if err := os.WriteFile(path, []byte("clients:\n  mtu: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if !errors.Is(err, ErrMissing) || !strings.HasPrefix(err.Error(), "config "+path+": clients.private_key: ") {
		t.Errorf("err = %v", err)
	}
	if _, err := Load(filepath.Join(dir, "nope.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestExampleParses(t *testing.T) {
	dir := t.TempDir()
	writeKey(t, filepath.Join(dir, "clients.key"), testKeys["PRIV"].String()+"\n", 0o600)
	writeKey(t, filepath.Join(dir, "bob.psk"), testKeys["PSK"].String()+"\n", 0o600)
	bb, _ := keys.Generate()
	gossip, _ := keys.Generate()
	writeKey(t, filepath.Join(dir, "backbone.key"), bb.String()+"\n", 0o600)
	writeKey(t, filepath.Join(dir, "gossip.key"), gossip.String()+"\n", 0o600)
	text := strings.ReplaceAll(Example, "/etc/anyguard/", dir+"/")
	c, err := Parse([]byte(text), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Node.Name != "use1-a" || c.Node.Region != "us-east-1" || len(c.Clients.Peers) != 2 ||
		c.Clients.Peers[1].Name != "bob@example.com" || c.Clients.Peers[1].PresharedKey != testKeys["PSK"] ||
		!reflect.DeepEqual(c.Egress.Prefixes, pfx("10.1.0.0/16")) {
		t.Errorf("got %+v", c)
	}
	// The example spells out the defaults: apart from the values it sets,
	// it must equal Default().
	want := Default()
	want.Node = c.Node
	want.Clients.PrivateKey = c.Clients.PrivateKey
	want.Clients.Address = c.Clients.Address
	want.Clients.Peers = c.Clients.Peers
	want.Egress.Prefixes = c.Egress.Prefixes
	want.Backbone.PrivateKey = bb
	want.Backbone.Endpoint = "203.0.113.7:51821"
	want.Cluster.Advertise = "203.0.113.7:7946"
	want.Cluster.Join = []string{"198.51.100.9:7946"}
	want.Cluster.SecretKey = gossip
	if !reflect.DeepEqual(c, want) {
		t.Errorf("example departs from the defaults:\n got %+v\nwant %+v", c, want)
	}
}

func TestExampleCopiesIdentical(t *testing.T) {
	b, err := os.ReadFile("../../examples/anyguard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != Example {
		t.Error("examples/anyguard.yaml and internal/config/example.yaml differ; copy one onto the other")
	}
}

func TestValidateBuiltInGo(t *testing.T) {
	c := Default()
	c.Node.Name = "demo"
	c.Clients.PrivateKey = testKeys["PRIV"]
	c.Clients.Address = pfx("10.99.0.1/16")
	c.Clients.Peers = []Peer{{Name: "a", PublicKey: testKeys["PUB1"], AllowedIPs: pfx("10.99.0.2/32")}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Clients.Peers = append(c.Clients.Peers, Peer{Name: "b", PublicKey: testKeys["PUB2"], AllowedIPs: pfx("10.99.0.0/24")})
	err := c.Validate()
	want := `config: clients.peers[1].allowed_ips[0]: 10.99.0.0/24 contains the gateway's own address 10.99.0.1`
	if !errors.Is(err, ErrOverlap) || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
	c = Default()
	c.Clients.PrivateKey = testKeys["PRIV"]
	c.Clients.Address = []netip.Prefix{{}}
	if err := c.Validate(); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "clients.address[0]:") {
		t.Errorf("zero prefix: err = %v", err)
	}
}
