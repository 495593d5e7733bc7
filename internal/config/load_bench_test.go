package config

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/anyguard/anyguard/internal/keys"
)

// scaleYAML is a configuration with n clients in the flow style that
// `anyguard bench scale` writes.
func scaleYAML(tb testing.TB, n int) []byte {
	tb.Helper()
	priv, err := keys.Generate()
	if err != nil {
		tb.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "node: {name: scale, region: scale}\nclients:\n  private_key: %s\n  listen_port: 0\n  address: 10.64.0.1/10\n  uapi: false\n  peers:\n", priv)
	for i := range n {
		var k keys.Key
		rand.Read(k[:])
		a := 10<<24 | 64<<16 + uint32(i) + 2
		fmt.Fprintf(&b, "    - {name: c%d, public_key: %s, allowed_ips: [%d.%d.%d.%d/32]}\n", i, k, a>>24, a>>16&0xff, a>>8&0xff, a&0xff)
	}
	b.WriteString("egress:\n  mode: netstack\n  prefixes: [10.1.0.0/16]\n")
	return []byte(b.String())
}

// BenchmarkLoad100k loads a configuration of 100,000 clients, the size
// the scale goals name (load well under 1 s).
func BenchmarkLoad100k(b *testing.B) {
	path := filepath.Join(b.TempDir(), "scale.yaml")
	if err := os.WriteFile(path, scaleYAML(b, 100_000), 0o600); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(path); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkYAMLNodes100k is the floor under BenchmarkLoad100k: go.yaml.in/yaml/v3
// parsing the same file into its node tree, with nothing of ours.
func BenchmarkYAMLNodes100k(b *testing.B) {
	data := scaleYAML(b, 100_000)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var n yaml.Node
		if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&n); err != nil {
			b.Fatal(err)
		}
	}
}

// scalePeersFile is the configuration of scaleYAML with its n clients in
// a peers file (peers.txt next to it) instead.
func scalePeersFile(tb testing.TB, dir string, n int) string {
	tb.Helper()
	priv, err := keys.Generate()
	if err != nil {
		tb.Fatal(err)
	}
	yaml := fmt.Sprintf("node: {name: scale, region: scale}\nclients:\n  private_key: %s\n  listen_port: 0\n  address: 10.64.0.1/10\n  uapi: false\n  peers_file: peers.txt\negress:\n  mode: netstack\n  prefixes: [10.1.0.0/16]\n", priv)
	var b strings.Builder
	for i := range n {
		var k keys.Key
		rand.Read(k[:])
		a := 10<<24 | 64<<16 + uint32(i) + 2
		fmt.Fprintf(&b, "c%d %s %d.%d.%d.%d/32\n", i, k, a>>24, a>>16&0xff, a>>8&0xff, a&0xff)
	}
	path := filepath.Join(dir, "scale.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "peers.txt"), []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// BenchmarkLoad100kPeersFile loads 100,000 clients from a peers file
// (goal: well under 0.2 s, reading, parsing and validating).
func BenchmarkLoad100kPeersFile(b *testing.B) {
	path := scalePeersFile(b, b.TempDir(), 100_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(path); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParsePeersFile100k is the peers file's line parser alone.
func BenchmarkParsePeersFile100k(b *testing.B) {
	dir := b.TempDir()
	scalePeersFile(b, dir, 100_000)
	data, err := os.ReadFile(filepath.Join(dir, "peers.txt"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, err := parsePeersFile(data, "peers.txt", dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidate100k is Validate of a loaded configuration of 100,000
// clients, which Reload repeats.
func BenchmarkValidate100k(b *testing.B) {
	c, err := Load(scalePeersFile(b, b.TempDir(), 100_000))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClientSetDigest100k is the digest Reload computes.
func BenchmarkClientSetDigest100k(b *testing.B) {
	c, err := Load(scalePeersFile(b, b.TempDir(), 100_000))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.ClientSetDigest()
	}
}
