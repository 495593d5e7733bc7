package config

import (
	"errors"
	"flag"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/keys"
)

var update = flag.Bool("update", false, "rewrite the generated table in docs/configuration.md")

// envOnly is the least environment a standalone gateway starts with.
// Variables in extra replace those of the same name.
func envOnly(extra ...string) []string {
	base := []string{
		"ANYGUARD_CLIENTS_PRIVATE_KEY=" + testKeys["PRIV"].String(),
		"ANYGUARD_CLIENTS_ADDRESS=10.99.0.1/24",
		"PATH=/usr/bin", // not ours: ignored
	}
	for _, kv := range extra {
		name, _, _ := strings.Cut(kv, "=")
		base = slices.DeleteFunc(base, func(b string) bool { return strings.HasPrefix(b, name+"=") })
	}
	return append(base, extra...)
}

func TestEnvOnly(t *testing.T) {
	c, err := LoadWith("", Options{Env: envOnly(
		"ANYGUARD_EGRESS_MODE=netstack",
		"ANYGUARD_EGRESS_PREFIXES=10.1.0.0/16, 10.2.0.0/16",
		"ANYGUARD_CLIENTS_UAPI=false",
		"ANYGUARD_CLIENTS_LISTEN_PORT=51900",
		"ANYGUARD_HEALTH_DRAIN_TIMEOUT=5s",
		"ANYGUARD_NODE_NAME=true", // a name, not a boolean
		"ANYGUARD_CLIENTS_ENDPOINT=vpn.example.com",
		"ANYGUARD_E2E=require", // not the configuration's: ignored
		"ANYGUARD_STATE_DIR=/nonexistent",
	)})
	if err != nil {
		t.Fatal(err)
	}
	if c.Clients.PrivateKey != testKeys["PRIV"] || c.Egress.Mode != ModeNetstack || c.Clients.UAPI ||
		c.Clients.ListenPort != 51900 || c.Health.DrainTimeout != 5*time.Second || c.Node.Name != "true" {
		t.Errorf("config from the environment: %+v", c)
	}
	if want := pfx("10.1.0.0/16", "10.2.0.0/16"); !equalPrefixes(c.Egress.Prefixes, want) {
		t.Errorf("egress.prefixes = %v, want %v", c.Egress.Prefixes, want)
	}
	if ep, err := c.Clients.EndpointHostPort(); err != nil || ep != "vpn.example.com:51900" {
		t.Errorf("endpoint = %q, %v; want vpn.example.com:51900 (the listen port)", ep, err)
	}
	if c.Env["egress.mode"] != "ANYGUARD_EGRESS_MODE" || c.Path != "" {
		t.Errorf("Env = %v, Path = %q", c.Env, c.Path)
	}
	if c.Health.Listen != DefaultHealthListen || c.Node.Region != DefaultRegion {
		t.Errorf("defaults lost: %+v", c.Health)
	}
}

func equalPrefixes(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestEnvOverridesFile: the environment wins field by field, including a
// key variable over the file's key file; what it does not name stays.
func TestEnvOverridesFile(t *testing.T) {
	dir := t.TempDir()
	writeKey(t, filepath.Join(dir, "k.key"), testKeys["PRIV"].String()+"\n", 0o600)
	writeKey(t, filepath.Join(dir, "b.key"), testKeys["PUB2"].String()+"\n", 0o600)
	path := filepath.Join(dir, "anyguard.yaml")
	writeKey(t, path, fill(`node: {name: gw1, region: eu}
clients:
  private_key_file: k.key
  address: 10.99.0.1/16
  mtu: 1400
egress: {mode: tun, prefixes: [10.1.0.0/16]}
`), 0o644)
	c, err := LoadWith(path, Options{Env: []string{
		"ANYGUARD_CLIENTS_MTU=1300",
		"ANYGUARD_CLIENTS_PRIVATE_KEY_FILE=" + filepath.Join(dir, "b.key"),
		"ANYGUARD_EGRESS_PREFIXES=",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Clients.MTU != 1300 || c.Clients.PrivateKey != testKeys["PUB2"] || len(c.Egress.Prefixes) != 0 {
		t.Errorf("environment did not win: mtu %d, key from b.key %v, prefixes %v", c.Clients.MTU, c.Clients.PrivateKey == testKeys["PUB2"], c.Egress.Prefixes)
	}
	if c.Node.Name != "gw1" || c.Node.Region != "eu" || c.Egress.Mode != ModeTUN || c.Path != path {
		t.Errorf("file's other fields lost: %+v", c.Node)
	}
	// Without the environment, the same file loads as before.
	c, err = LoadWith(path, Options{})
	if err != nil || c.Clients.MTU != 1400 {
		t.Fatalf("file alone: %v, mtu %d", err, c.Clients.MTU)
	}
}

// TestEnvBadValues: every kind of variable, with bad values. Each error
// names the variable, wraps the sentinel, is one line, and leaves no
// partial Config.
func TestEnvBadValues(t *testing.T) {
	dir := t.TempDir()
	world := filepath.Join(dir, "world.key")
	writeKey(t, world, testKeys["PRIV"].String()+"\n", 0o644)
	garbage := filepath.Join(dir, "garbage.key")
	writeKey(t, garbage, "not a key\n", 0o600)
	zero := filepath.Join(dir, "zero.key")
	writeKey(t, zero, keys.Key{}.String()+"\n", 0o600)
	tests := []struct {
		env  string
		kind error
		want string
	}{
		{"ANYGUARD_CLIENTS_MTU=abc", ErrInvalidValue, "ANYGUARD_CLIENTS_MTU (clients.mtu): expected an integer, got a string"},
		{"ANYGUARD_CLIENTS_MTU=", ErrMissing, "ANYGUARD_CLIENTS_MTU (clients.mtu): no value given"},
		{"ANYGUARD_CLIENTS_MTU=99", ErrInvalidValue, "ANYGUARD_CLIENTS_MTU (clients.mtu): 99 is out of range 1280..9000"},
		{"ANYGUARD_CLIENTS_LISTEN_PORT=70000", ErrInvalidValue, "ANYGUARD_CLIENTS_LISTEN_PORT (clients.listen_port): 70000 is out of range 0..65535"},
		{"ANYGUARD_CLIENTS_LISTEN_PORT=-1", ErrInvalidValue, "out of range 0..65535"},
		{"ANYGUARD_EGRESS_QUEUES=99999999999999999999999", ErrInvalidValue, "ANYGUARD_EGRESS_QUEUES (egress.queues): "},
		{"ANYGUARD_CLIENTS_UAPI=yes", ErrInvalidValue, "ANYGUARD_CLIENTS_UAPI (clients.uapi): expected true or false, got a string"},
		{"ANYGUARD_CLIENTS_UAPI=", ErrMissing, "ANYGUARD_CLIENTS_UAPI (clients.uapi): no value given; unset the variable to keep the default"},
		{"ANYGUARD_HEALTH_DRAIN_TIMEOUT=30", ErrInvalidValue, `ANYGUARD_HEALTH_DRAIN_TIMEOUT (health.drain_timeout): "30" is not a duration such as 30s or 1m30s; write 30s for seconds`},
		{"ANYGUARD_HEALTH_DRAIN_TIMEOUT=2h", ErrInvalidValue, "ANYGUARD_HEALTH_DRAIN_TIMEOUT (health.drain_timeout): 2h0m0s is out of range 0s..1h"},
		{"ANYGUARD_CLIENTS_ADDRESS=10.99.0.1/33", ErrInvalidValue, `ANYGUARD_CLIENTS_ADDRESS (clients.address[0]): "10.99.0.1/33" is not a valid IP prefix`},
		{"ANYGUARD_CLIENTS_ADDRESS=10.99.0.1", ErrInvalidValue, "write 10.99.0.1/32 for a single address"},
		{"ANYGUARD_CLIENTS_ADDRESS=10.99.0.1/24,,fd00::1/64", ErrMissing, "ANYGUARD_CLIENTS_ADDRESS (clients.address[1]): no value given"},
		{"ANYGUARD_CLIENTS_ADDRESS=10.99.0.0/24", ErrInvalidValue, "ANYGUARD_CLIENTS_ADDRESS (clients.address[0]): 10.99.0.0/24 is the network address"},
		{"ANYGUARD_CLIENTS_ADDRESS=", ErrMissing, "ANYGUARD_CLIENTS_ADDRESS (clients.address): required"},
		{"ANYGUARD_EGRESS_PREFIXES=10.1.0.0/16,10.1.2.0/24", ErrOverlap, "ANYGUARD_EGRESS_PREFIXES (egress.prefixes[1]): 10.1.2.0/24 overlaps 10.1.0.0/16 at egress.prefixes[0] (ANYGUARD_EGRESS_PREFIXES)"},
		{"ANYGUARD_EGRESS_PREFIXES=10.1.0.1/16", ErrInvalidValue, "ANYGUARD_EGRESS_PREFIXES (egress.prefixes[0]): 10.1.0.1/16 has host bits set; use 10.1.0.0/16"},
		{"ANYGUARD_EGRESS_MODE=kernel", ErrInvalidValue, `ANYGUARD_EGRESS_MODE (egress.mode): "kernel" is not one of tun, netstack`},
		{"ANYGUARD_NODE_NAME=a b", ErrInvalidValue, `ANYGUARD_NODE_NAME (node.name): "a b" is not a valid name`},
		{"ANYGUARD_NODE_NAME=", ErrMissing, "ANYGUARD_NODE_NAME (node.name): required"},
		{"ANYGUARD_HEALTH_LISTEN=8080", ErrInvalidValue, `ANYGUARD_HEALTH_LISTEN (health.listen): "8080" is not a host:port`},
		{"ANYGUARD_HEALTH_ADMIN_LISTEN=8081", ErrInvalidValue, `ANYGUARD_HEALTH_ADMIN_LISTEN (health.admin_listen): "8081" is not a host:port`},
		{"ANYGUARD_HEALTH_ADMIN_LISTEN=:8080", ErrConflict, `ANYGUARD_HEALTH_ADMIN_LISTEN (health.admin_listen): ":8080" would share its port with health.listen ":8080"`},
		{"ANYGUARD_CLUSTER_JOIN=10.0.0.1:7946", ErrMissing, "ANYGUARD_CLUSTER_JOIN (cluster.join): joining a cluster needs backbone.private_key"},
		{"ANYGUARD_CLIENTS_ENDPOINT=vpn_example.com", ErrInvalidValue, `ANYGUARD_CLIENTS_ENDPOINT (clients.endpoint): "vpn_example.com": host "vpn_example.com" is neither`},
		{"ANYGUARD_CLIENTS_ENDPOINT=vpn.example.com:0", ErrInvalidValue, `port "0" is not a number in 1..65535`},
		{"ANYGUARD_CLIENTS_ENDPOINT=0.0.0.0:51820", ErrInvalidValue, "0.0.0.0 is not an address clients can reach"},
		{"ANYGUARD_BACKBONE_PRIVATE_KEY=garbage", keys.ErrBadKey, "ANYGUARD_BACKBONE_PRIVATE_KEY (backbone.private_key): not a WireGuard key"},
		{"ANYGUARD_BACKBONE_PRIVATE_KEY=" + keys.Key{}.String(), ErrInvalidValue, "an all-zero key is not a key"},
		{"ANYGUARD_BACKBONE_PRIVATE_KEY=", ErrMissing, "ANYGUARD_BACKBONE_PRIVATE_KEY (backbone.private_key): no value given"},
		{"ANYGUARD_CLUSTER_SECRET_KEY_FILE=" + world, keys.ErrWorldReadable, "ANYGUARD_CLUSTER_SECRET_KEY_FILE (cluster.secret_key): key file " + world + " has mode 0644, open to group or others: run chmod 600 " + world},
		{"ANYGUARD_CLUSTER_SECRET_KEY_FILE=" + garbage, keys.ErrBadKey, "not a WireGuard key"},
		{"ANYGUARD_CLUSTER_SECRET_KEY_FILE=" + zero, ErrInvalidValue, "an all-zero key is not a key"},
		{"ANYGUARD_CLUSTER_SECRET_KEY_FILE=" + filepath.Join(dir, "missing.key"), fs.ErrNotExist, "ANYGUARD_CLUSTER_SECRET_KEY_FILE (cluster.secret_key): open "},
		{"ANYGUARD_CLUSTER_SECRET_KEY_FILE=", ErrMissing, "ANYGUARD_CLUSTER_SECRET_KEY_FILE (cluster.secret_key): no value given"},
		{"ANYGUARD_CLUSTER_SECRET_KEY_FILE=" + dir, nil, "not a regular file"},
		{"ANYGUARD_CLIENTS_MTUU=1400", ErrUnknownField, "ANYGUARD_CLIENTS_MTUU: unknown field; did you mean ANYGUARD_CLIENTS_MTU?"},
		{"ANYGUARD_EGRESS_SOMETHING_ELSE_ENTIRELY=1", ErrUnknownField, "known variables: ANYGUARD_EGRESS_MODE, ANYGUARD_EGRESS_TUN_NAME"},
		{"ANYGUARD_CLIENTS_PEERS=alice", ErrUnknownField, "ANYGUARD_CLIENTS_PEERS: unknown field"},
		{"ANYGUARD_CLIENTS_PEERS_FILE=" + filepath.Join(dir, "none.peers"), fs.ErrNotExist, "ANYGUARD_CLIENTS_PEERS_FILE (clients.peers_file): open "},
		{"ANYGUARD_LOG_LEVEL=loud", ErrInvalidValue, `ANYGUARD_LOG_LEVEL (log.level): "loud" is not one of`},
	}
	for _, tc := range tests {
		c, err := LoadWith("", Options{Env: envOnly(tc.env)})
		if err == nil {
			t.Errorf("%s: accepted: %+v", tc.env, c)
			continue
		}
		if c != nil {
			t.Errorf("%s: a Config with the error", tc.env)
		}
		var fe *FieldError
		if !errors.As(err, &fe) || (tc.kind != nil && !errors.Is(err, tc.kind)) {
			t.Errorf("%s: error %v (%T) does not wrap %v", tc.env, err, err, tc.kind)
		}
		if !strings.Contains(err.Error(), tc.want) || strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("%s:\n got %v\nwant %q", tc.env, err, tc.want)
		}
	}
}

// TestEnvConflicts: a key and its _FILE variant together, and one
// variable twice.
func TestEnvConflicts(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(dir, "k.key")
	writeKey(t, kf, testKeys["PUB3"].String()+"\n", 0o600)
	_, err := LoadWith("", Options{Env: envOnly("ANYGUARD_CLIENTS_PRIVATE_KEY_FILE=" + kf)})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "ANYGUARD_CLIENTS_PRIVATE_KEY_FILE (clients.private_key): conflicts with ANYGUARD_CLIENTS_PRIVATE_KEY") {
		t.Errorf("key and key file: %v", err)
	}
	_, err = LoadWith("", Options{Env: envOnly("ANYGUARD_CLIENTS_MTU=1400", "ANYGUARD_CLIENTS_MTU=1300")})
	if !errors.Is(err, ErrDuplicate) || !strings.Contains(err.Error(), "ANYGUARD_CLIENTS_MTU (clients.mtu): set twice") {
		t.Errorf("twice: %v", err)
	}
}

// TestEnvMissingNamesVariable: a required field missing from both file
// and environment is reported with the variable that would set it.
func TestEnvMissingNamesVariable(t *testing.T) {
	_, err := LoadWith("", Options{Env: []string{"ANYGUARD_CLIENTS_ADDRESS=10.99.0.1/24"}})
	want := "config: clients.private_key: required: set private_key or private_key_file; or set ANYGUARD_CLIENTS_PRIVATE_KEY or ANYGUARD_CLIENTS_PRIVATE_KEY_FILE"
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	_, err = LoadWith("", Options{Env: []string{"ANYGUARD_CLIENTS_PRIVATE_KEY=" + testKeys["PRIV"].String()}})
	if err == nil || !strings.Contains(err.Error(), "clients.address: required: the gateway's address on the client network, e.g. 10.99.0.1/16; or set ANYGUARD_CLIENTS_ADDRESS") {
		t.Errorf("address: %v", err)
	}
}

func TestEnvVarsUnique(t *testing.T) {
	seen := map[string]string{}
	for _, e := range EnvVars() {
		if other, ok := seen[e.Name]; ok {
			t.Errorf("%s names both %s and %s", e.Name, other, e.Path)
		}
		seen[e.Name] = e.Path
		if !ownsEnv(e.Name) {
			t.Errorf("%s is outside the sections' prefixes", e.Name)
		}
	}
	// Every field that a gateway or fleet member needs at start.
	for _, want := range []string{"ANYGUARD_CLIENTS_PRIVATE_KEY_FILE", "ANYGUARD_CLIENTS_ADDRESS", "ANYGUARD_EGRESS_PREFIXES",
		"ANYGUARD_BACKBONE_PRIVATE_KEY_FILE", "ANYGUARD_CLUSTER_JOIN", "ANYGUARD_CLUSTER_SECRET_KEY_FILE", "ANYGUARD_CLUSTER_ADVERTISE",
		"ANYGUARD_CLIENTS_PEERS_FILE", "ANYGUARD_CLIENTS_ENDPOINT", "ANYGUARD_NODE_REGION"} {
		if _, ok := seen[want]; !ok {
			t.Errorf("no variable %s", want)
		}
	}
}

// TestEnvFleet: a fleet member configured by the environment alone, its
// backbone key generated in the state directory.
func TestEnvFleet(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	kf := filepath.Join(dir, "gossip.key")
	writeKey(t, kf, testKeys["PSK"].String()+"\n", 0o600)
	env := envOnly("ANYGUARD_CLUSTER_JOIN=10.0.0.2:7946,gw3.internal:7946",
		"ANYGUARD_CLUSTER_SECRET_KEY_FILE="+kf, "ANYGUARD_CLUSTER_ADVERTISE=10.0.0.1")
	c, err := LoadWith("", Options{Env: env, StateDir: state, GenerateKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Clustered() || len(c.Cluster.Join) != 2 || c.Cluster.SecretKey != testKeys["PSK"] {
		t.Errorf("not a fleet member: %+v", c.Cluster)
	}
	if len(c.StateKeys) != 1 || c.StateKeys[0].Path != "backbone.private_key" || !c.StateKeys[0].Generated {
		t.Errorf("StateKeys = %+v, want the backbone key generated", c.StateKeys)
	}
}

// TestEnvTableDoc keeps the table in docs/configuration.md identical to
// EnvTable (go test -run TestEnvTableDoc -update rewrites it).
func TestEnvTableDoc(t *testing.T) {
	const begin, end = "<!-- BEGIN GENERATED ENV TABLE -->\n", "<!-- END GENERATED ENV TABLE -->"
	path := filepath.Join("..", "..", "docs", "configuration.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s: no %q ... %q section", path, begin, end)
	}
	want := doc[:i+len(begin)] + EnvTable() + doc[j:]
	if doc == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the table in %s", path)
		return
	}
	t.Errorf("%s: the environment table is stale; run go test ./internal/config -run TestEnvTableDoc -update", path)
}
