package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/anyguard/anyguard/internal/e2etest"
	"github.com/anyguard/anyguard/internal/keys"
)

// standalone is the environment of a standalone gateway given no key.
var standalone = []string{"ANYGUARD_CLIENTS_ADDRESS=10.99.0.1/24", "ANYGUARD_EGRESS_MODE=netstack"}

func TestStateDirGeneratesAndKeeps(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	// anyguard check: nothing is written, the key is pending.
	c, err := LoadWith("", Options{Env: standalone, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.StateKeys) != 1 || !c.StateKeys[0].Pending || c.Clients.PrivateKey.IsZero() {
		t.Errorf("check: StateKeys %+v", c.StateKeys)
	}
	if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("check created the state directory: %v", err)
	}
	// First start: generated, 0600 in a 0700 directory, no backbone key
	// (standalone).
	c, err = LoadWith("", Options{Env: standalone, StateDir: state, GenerateKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(state, StateClientsKey)
	if len(c.StateKeys) != 1 || !c.StateKeys[0].Generated || c.StateKeys[0].File != file || c.Clustered() {
		t.Fatalf("first start: StateKeys %+v, clustered %v", c.StateKeys, c.Clustered())
	}
	first := c.Clients.PrivateKey
	for path, want := range map[string]os.FileMode{state: 0o700, file: 0o600} {
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %v", path, st.Mode().Perm(), err, want)
		}
	}
	if k, err := keys.ReadFile(file); err != nil || k != first {
		t.Errorf("key file: %v, same key %v", err, k == first)
	}
	entries, _ := os.ReadDir(state)
	if len(entries) != 1 {
		t.Errorf("state directory holds %v, want only %s (no temporary files)", entries, StateClientsKey)
	}
	// Restart: the same key, nothing generated.
	c, err = LoadWith("", Options{Env: standalone, StateDir: state, GenerateKeys: true})
	if err != nil || c.Clients.PrivateKey != first || c.StateKeys[0].Generated {
		t.Fatalf("restart: %v, same key %v, %+v", err, c.Clients.PrivateKey == first, c.StateKeys)
	}
	// A key given in the environment wins; the state directory is not read.
	c, err = LoadWith("", Options{Env: append(standalone, "ANYGUARD_CLIENTS_PRIVATE_KEY="+testKeys["PRIV"].String()), StateDir: state, GenerateKeys: true})
	if err != nil || c.Clients.PrivateKey != testKeys["PRIV"] || len(c.StateKeys) != 0 {
		t.Fatalf("given key: %v, %+v", err, c.StateKeys)
	}
}

// TestStateDirBadFiles: a state key others may read, garbage, or an
// unreadable directory are errors naming the field and file; nothing is
// overwritten.
func TestStateDirBadFiles(t *testing.T) {
	state := t.TempDir()
	file := filepath.Join(state, StateClientsKey)
	for _, tc := range []struct {
		text string
		mode os.FileMode
		kind error
	}{
		{testKeys["PRIV"].String() + "\n", 0o644, keys.ErrWorldReadable},
		{"garbage\n", 0o600, keys.ErrBadKey},
		{keys.Key{}.String() + "\n", 0o600, ErrInvalidValue},
	} {
		writeKey(t, file, tc.text, tc.mode)
		_, err := LoadWith("", Options{Env: standalone, StateDir: state, GenerateKeys: true})
		if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), "clients.private_key: ") || !strings.Contains(err.Error(), file) {
			t.Errorf("%q mode %v: %v, want %v naming the field and %s", tc.text, tc.mode, err, tc.kind, file)
		}
		if b, _ := os.ReadFile(file); string(b) != tc.text {
			t.Errorf("state key overwritten: %q", b)
		}
	}
	// A state "directory" that is a file.
	_, err := LoadWith("", Options{Env: standalone, StateDir: file, GenerateKeys: true})
	if err == nil || !strings.Contains(err.Error(), "clients.private_key: state directory: ") {
		t.Errorf("state dir is a file: %v", err)
	}
}

// TestStateDirFleet: a fleet member is never given a generated
// client-facing key; its own backbone key is generated.
func TestStateDirFleet(t *testing.T) {
	state := t.TempDir()
	gossip := filepath.Join(t.TempDir(), "gossip.key")
	writeKey(t, gossip, testKeys["PSK"].String()+"\n", 0o600)
	for _, env := range [][]string{
		{"ANYGUARD_CLUSTER_JOIN=10.0.0.2:7946"},
		{"ANYGUARD_CLUSTER_SECRET_KEY_FILE=" + gossip},
		{"ANYGUARD_BACKBONE_PRIVATE_KEY=" + testKeys["PUB1"].String()},
	} {
		_, err := LoadWith("", Options{Env: append(env, standalone...), StateDir: state, GenerateKeys: true})
		if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "clients.private_key: required: every gateway of a fleet must present the same client-facing key") ||
			!strings.Contains(err.Error(), "ANYGUARD_CLIENTS_PRIVATE_KEY_FILE") {
			t.Errorf("%v: %v", env, err)
		}
	}
	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Errorf("a failed fleet start wrote %v", entries)
	}
	env := append([]string{"ANYGUARD_CLUSTER_SECRET_KEY_FILE=" + gossip, "ANYGUARD_CLUSTER_ADVERTISE=10.0.0.1",
		"ANYGUARD_CLIENTS_PRIVATE_KEY=" + testKeys["PRIV"].String()}, standalone...)
	c, err := LoadWith("", Options{Env: env, StateDir: state, GenerateKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Clustered() || c.Backbone.PrivateKey == c.Clients.PrivateKey {
		t.Errorf("backbone key not generated")
	}
	if _, err := os.Stat(filepath.Join(state, StateBackboneKey)); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(state, StateClientsKey)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a fleet member wrote a clients key: %v", err)
	}
}

// TestStateDirConcurrentFirstStart: gateways starting at once on one
// empty directory all end up with one key.
func TestStateDirConcurrentFirstStart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	const n = 16
	got := make([]keys.Key, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := LoadWith("", Options{Env: standalone, StateDir: state, GenerateKeys: true})
			errs[i] = err
			if err == nil {
				got[i] = c.Clients.PrivateKey
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i] != got[0] {
			t.Errorf("start %d: %v, same key %v", i, errs[i], got[i] == got[0])
		}
	}
}

// TestStateDirPeersFile: the state directory's peers file is read when
// clients.peers_file is not set, and a missing one is no error.
func TestStateDirPeersFile(t *testing.T) {
	state := t.TempDir()
	env := append([]string{"ANYGUARD_CLIENTS_PRIVATE_KEY=" + testKeys["PRIV"].String()}, standalone...)
	c, err := LoadWith("", Options{Env: env, StateDir: state})
	if err != nil || c.Clients.PeersFile != "" {
		t.Fatalf("no peers file: %v, %q", err, c.Clients.PeersFile)
	}
	file := filepath.Join(state, StatePeersFile)
	writeKey(t, file, fill("alice PUB1 10.99.0.2/32\n"), 0o644)
	c, err = LoadWith("", Options{Env: env, StateDir: state})
	if err != nil || c.Clients.PeersFile != file || len(c.Clients.Peers) != 1 {
		t.Fatalf("peers file: %v, %q, %d peers", err, c.Clients.PeersFile, len(c.Clients.Peers))
	}
	writeKey(t, file, "alice garbage 10.99.0.2/32\n", 0o644)
	if _, err = LoadWith("", Options{Env: env, StateDir: state}); err == nil || !strings.Contains(err.Error(), file+":1: public_key: not a WireGuard key") {
		t.Errorf("bad peers file: %v", err)
	}
}

// TestStateDirNothingForABadConfig: a configuration that fails for
// another reason generates no key.
func TestStateDirNothingForABadConfig(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	_, err := LoadWith("", Options{Env: append([]string{"ANYGUARD_CLIENTS_MTU=1"}, standalone...), StateDir: state, GenerateKeys: true})
	if err == nil {
		t.Fatal("accepted")
	}
	if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed start created the state directory: %v", err)
	}
}

// TestEffectiveRedacts: the effective configuration names every source,
// shows public keys, hides every secret, and parses back.
func TestEffectiveRedacts(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	writeKey(t, filepath.Join(dir, "psk.key"), testKeys["PSK"].String()+"\n", 0o600)
	writeKey(t, filepath.Join(state, StatePeersFile), fill("bob PUB2 10.99.0.3/32\ncarol PUB3 10.99.0.4/32 "+filepath.Join(dir, "psk.key")+"\n"), 0o644)
	path := filepath.Join(dir, "anyguard.yaml")
	writeKey(t, path, fill(`clients:
  address: 10.99.0.1/24
  peers:
    - {name: alice, public_key: PUB1, preshared_key_file: psk.key, allowed_ips: [10.99.0.2/32]}
egress: {mode: netstack, prefixes: [10.1.0.0/16]}
`), 0o644)
	c, err := LoadWith(path, Options{Env: []string{"ANYGUARD_CLIENTS_MTU=1300"}, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Effective()
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	t.Logf("\n%s", text)
	for _, secret := range []keys.Key{testKeys["PSK"], c.Clients.PrivateKey} {
		if strings.Contains(text, secret.String()) {
			t.Errorf("a secret is printed")
		}
	}
	for _, want := range []string{
		"private_key: (secret) # to be generated at first start in " + filepath.Join(state, StateClientsKey) + "\n",
		"mtu: 1300 # from ANYGUARD_CLIENTS_MTU",
		"peers_file: " + filepath.Join(state, StatePeersFile) + " # 2 clients",
		"public_key: " + testKeys["PUB1"].String(),
		"preshared_key: (secret)",
		"address: [10.99.0.1/24]",
		"drain_timeout: 30s",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q", want)
		}
	}
	if strings.Contains(text, "bob") {
		t.Errorf("clients of the peers file listed")
	}
	// It reads back, once the secrets are given again.
	back := strings.ReplaceAll(text, "private_key: (secret)", "private_key: "+testKeys["PRIV"].String())
	back = strings.ReplaceAll(back, "preshared_key: (secret)", "preshared_key: "+testKeys["PSK"].String())
	if _, err := Parse([]byte(back), dir); err != nil {
		t.Errorf("effective configuration does not parse back: %v", err)
	}
}

// TestStateDirOwnerKept: root writing a key into the state directory of a
// gateway that runs as another user gives the key to that user.
func TestStateDirOwnerKept(t *testing.T) {
	e2etest.RequireRoot(t, "creating files for another user")
	state := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadWith("", Options{Env: standalone, StateDir: state, GenerateKeys: true}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(state, StateClientsKey))
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 65532 || sys.Gid != 65532 || st.Mode().Perm() != 0o600 {
		t.Errorf("key owned by %d:%d mode %v, want 65532:65532 0600", sys.Uid, sys.Gid, st.Mode().Perm())
	}
}
