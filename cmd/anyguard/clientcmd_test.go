package main

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/internal/testwait"
)

// clientEnv sets up a gateway configured by the environment alone, with
// a state directory of its own, for the rest of t.
func clientEnv(t *testing.T, address string) string {
	t.Helper()
	state := filepath.Join(t.TempDir(), "state")
	for k, v := range map[string]string{
		stateDirEnv:                  state,
		configEnv:                    "",
		"ANYGUARD_CLIENTS_ADDRESS":   address,
		"ANYGUARD_EGRESS_MODE":       "netstack",
		"ANYGUARD_EGRESS_PREFIXES":   "10.1.0.0/16",
		"ANYGUARD_CLIENTS_ENDPOINT":  "vpn.example.com:51820",
		"ANYGUARD_HEALTH_LISTEN":     "127.0.0.1:0",
		"ANYGUARD_HEALTH_TCP_LISTEN": "off",
		// Tests run gateways side by side: not the fixed 8081.
		"ANYGUARD_HEALTH_ADMIN_LISTEN": "127.0.0.1:0",
		"ANYGUARD_CLIENTS_UAPI":        "false",
	} {
		t.Setenv(k, v)
	}
	return state
}

// parseConf reads the wg-quick file client add printed.
func parseConf(t *testing.T, text string) map[string]string {
	t.Helper()
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " = "); ok {
			m[k] = v
		}
	}
	return m
}

func TestClientAddListRemove(t *testing.T) {
	state := clientEnv(t, "10.99.0.1/24,fd99::1/64")
	code, out, errOut := runCLI(t, "", "client", "add", "alice", "--no-reload")
	if code != 0 {
		t.Fatalf("client add: exit %d: %s", code, errOut)
	}
	conf := parseConf(t, out)
	priv, err := keys.Parse(conf["PrivateKey"])
	if err != nil {
		t.Fatalf("PrivateKey: %v\n%s", err, out)
	}
	gw, err := keys.ReadFile(filepath.Join(state, config.StateClientsKey))
	if err != nil {
		t.Fatalf("client add did not create the gateway's key: %v", err)
	}
	want := map[string]string{
		"Address":             "10.99.0.2/32, fd99::2/128",
		"PublicKey":           gw.Public().String(),
		"Endpoint":            "vpn.example.com:51820",
		"AllowedIPs":          "10.1.0.0/16, 10.99.0.0/24, fd99::/64",
		"PersistentKeepalive": "25",
	}
	for k, v := range want {
		if conf[k] != v {
			t.Errorf("%s = %q, want %q", k, conf[k], v)
		}
	}
	// The private key is printed, never stored.
	filepath.Walk(state, func(path string, info os.FileInfo, err error) error {
		if b, _ := os.ReadFile(path); err == nil && strings.Contains(string(b), priv.String()) {
			t.Errorf("%s holds the client's private key", path)
		}
		return nil
	})
	peers, _ := os.ReadFile(filepath.Join(state, config.StatePeersFile))
	if string(peers) != "alice "+priv.Public().String()+" 10.99.0.2/32,fd99::2/128\n" {
		t.Errorf("peers file: %q", peers)
	}

	pub, _ := keys.Generate()
	code, out, errOut = runCLI(t, "", "client", "add", "--address", "10.99.0.7", "--public-key", pub.Public().String(), "bob", "--no-reload", "--qr")
	if code != 0 || !strings.Contains(out, "PrivateKey = CLIENT_PRIVATE_KEY") || !strings.Contains(out, "Address = 10.99.0.7/32, fd99::3/128") || !strings.Contains(out, "█") {
		t.Fatalf("client add --public-key --address --qr: exit %d: %s\n%s", code, errOut, out)
	}
	code, out, _ = runCLI(t, "", "client", "add", "carol", "--no-reload")
	if code != 0 || !strings.Contains(out, "Address = 10.99.0.3/32, fd99::4/128") {
		t.Fatalf("third client: %d\n%s", code, out)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"add", "alice"}, 1, `client "alice" exists already`},
		{[]string{"add", "dave", "--public-key", pub.Public().String()}, 1, `--public-key: client "bob" has this public key already`},
		{[]string{"add", "dave", "--public-key", "garbage"}, 2, "--public-key: not a WireGuard key"},
		{[]string{"add", "dave", "--public-key", keys.Key{}.String()}, 2, "all-zero key"},
		{[]string{"add", "dave", "--address", "10.99.0.7"}, 1, "--address 10.99.0.7: taken by bob"},
		{[]string{"add", "dave", "--address", "10.99.0.1"}, 1, "--address 10.99.0.1: taken by the gateway"},
		{[]string{"add", "dave", "--address", "10.99.0.255"}, 1, "not a client address of the client network 10.99.0.0/24"},
		{[]string{"add", "dave", "--address", "10.98.0.5"}, 1, "not a client address"},
		{[]string{"add", "dave", "--address", "nope"}, 2, `"nope" is not an IP address`},
		{[]string{"add", "dave", "--allowed-ips", "0.0.0.0/33"}, 2, "is not an IP prefix"},
		{[]string{"add", "bad name"}, 2, "is not a valid name"},
		{[]string{"add", strings.Repeat("x", 65)}, 2, "is not a valid name"},
		{[]string{"add", "-x"}, 2, "flag provided but not defined"},
		{[]string{"add"}, 2, "NAME is required"},
		{[]string{"add", "a", "b"}, 2, `unexpected argument "b"`},
		{[]string{"remove", "nobody", "--no-reload"}, 1, `no client "nobody"`},
		{[]string{"frob"}, 2, `unknown subcommand "frob"`},
		{nil, 2, "want a subcommand"},
	} {
		code, _, errOut := runCLI(t, "", append([]string{"client"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("client %v: exit %d, %q; want %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
	// Nothing the failures above tried got in.
	code, out, _ = runCLI(t, "", "client", "list")
	if code != 0 || strings.Count(out, "\n") != 4 || !strings.Contains(out, "bob") || strings.Contains(out, "dave") {
		t.Errorf("client list: %d\n%s", code, out)
	}
	code, _, errOut = runCLI(t, "", "client", "remove", "bob", "--no-reload")
	if code != 0 {
		t.Fatalf("remove: %s", errOut)
	}
	code, out, _ = runCLI(t, "", "client", "list")
	if code != 0 || strings.Contains(out, "bob") || !strings.Contains(out, "carol") {
		t.Errorf("after remove: %s", out)
	}
	// Bob's address is free again.
	code, out, _ = runCLI(t, "", "client", "add", "erin", "--address", "10.99.0.7", "--no-reload")
	if code != 0 {
		t.Errorf("reusing a removed client's address: %d %s", code, out)
	}
}

// TestClientAddFullNetwork: a /30 has room for one client besides the
// gateway.
func TestClientAddFullNetwork(t *testing.T) {
	clientEnv(t, "10.99.0.1/30")
	if code, out, errOut := runCLI(t, "", "client", "add", "a", "--no-reload"); code != 0 || !strings.Contains(out, "Address = 10.99.0.2/32") {
		t.Fatalf("first: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "", "client", "add", "b", "--no-reload"); code != 1 || !strings.Contains(errOut, "the client network 10.99.0.0/30 is full") {
		t.Errorf("second: %d %s", code, errOut)
	}
}

// TestClientRemoveInline: a client of the file's clients.peers is not the
// peers file's to remove.
func TestClientRemoveInline(t *testing.T) {
	clientEnv(t, "10.99.0.1/24")
	dir := t.TempDir()
	k, _ := keys.Generate()
	path := filepath.Join(dir, "anyguard.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf("clients:\n  peers:\n    - {name: zed, public_key: %s, allowed_ips: [10.99.0.2/32]}\n", k.Public())), 0o644)
	code, out, errOut := runCLI(t, "", "client", "add", "a", "--config", path, "--no-reload")
	if code != 0 || !strings.Contains(out, "Address = 10.99.0.3/32") {
		t.Fatalf("add next to an inline client: %d %s %s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "", "client", "remove", "zed", "--config", path, "--no-reload")
	if code != 1 || !strings.Contains(errOut, `client "zed" is in the configuration file's clients.peers`) {
		t.Errorf("remove inline: %d %s", code, errOut)
	}
}

// TestClientAddConcurrentProcesses: many `client add` processes at once
// on one peers file: every one succeeds, with an address of its own, and
// the file stays valid.
func TestClientAddConcurrentProcesses(t *testing.T) {
	state := clientEnv(t, "10.99.0.1/24")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const n = 24
	var wg sync.WaitGroup
	outs := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			cmd := exec.Command(exe, "client", "add", fmt.Sprintf("c%02d", i), "--no-reload")
			cmd.Env = append(os.Environ(), runMainEnv+"=1")
			b, err := cmd.CombinedOutput()
			outs[i], errs[i] = string(b), err
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("client add c%02d: %v\n%s", i, errs[i], outs[i])
			continue
		}
		addr := parseConf(t, outs[i])["Address"]
		if other, dup := seen[addr]; dup {
			t.Errorf("c%02d and c%02d both got %s", i, other, addr)
		}
		seen[addr] = i
	}
	cfg, err := config.LoadWith("", config.Options{Env: os.Environ(), StateDir: state})
	if err != nil {
		t.Fatalf("the peers file after concurrent adds: %v", err)
	}
	if cfg.Clients.FilePeers != n {
		t.Errorf("peers file holds %d clients, want %d", cfg.Clients.FilePeers, n)
	}
	// All of 10.99.0.2 .. 10.99.0.(n+1): none skipped, none twice.
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, 99, 0, byte(2 + i)})
		if _, ok := seen[a.String()+"/32"]; !ok {
			t.Errorf("%s was not handed out", a)
		}
	}
}

// TestClientAddReloadsGateway: client add finds the running gateway by its
// pid file and makes it reload; with no gateway it says so.
func TestClientAddReloadsGateway(t *testing.T) {
	state := clientEnv(t, "10.99.0.1/24")
	t.Setenv("ANYGUARD_CLIENTS_LISTEN_PORT", "0")
	code, _, errOut := runCLI(t, "", "client", "add", "early")
	if code != 0 || !strings.Contains(errOut, "no gateway runs with state directory "+state) {
		t.Fatalf("no gateway: %d %s", code, errOut)
	}
	cmd, out, done := startChild(t, append(os.Environ(), runMainEnv+"=1"), "run")
	waitFor(t, out, done, `msg="gateway started"`)
	if !strings.Contains(out.String(), "clients=1") {
		t.Errorf("the gateway did not start with the client added before it: %s", out)
	}
	code, _, errOut = runCLI(t, "", "client", "add", "alice")
	if code != 0 || !strings.Contains(errOut, fmt.Sprintf("asked the gateway (pid %d) to reload", cmd.Process.Pid)) {
		t.Fatalf("client add: %d %s", code, errOut)
	}
	waitFor(t, out, done, `msg="configuration reloaded" node=`, "clients=2")
	code, _, errOut = runCLI(t, "", "client", "remove", "early")
	if code != 0 {
		t.Fatalf("client remove: %s", errOut)
	}
	waitFor(t, out, done, "clients=1 ")
	// A second gateway on the same state directory runs, without the pid
	// file, and says why.
	if _, err := acquirePidFile(state); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("in use by another gateway (pid %d)", cmd.Process.Pid)) {
		t.Errorf("second pid file lock: %v", err)
	}
}

// waitFor waits until the output holds every one of want in one line.
func waitFor(t *testing.T, out *testwait.Buffer, done <-chan struct{}, want ...string) {
	t.Helper()
	testwait.NoError(t, 20*time.Second, fmt.Sprintf("%q in the gateway's output", want), func() error {
		for line := range strings.SplitSeq(out.String(), "\n") {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			if ok {
				return nil
			}
		}
		select {
		case <-done:
			return testwait.Stop(errors.New("the gateway exited"))
		default:
			return errors.New("not logged yet")
		}
	})
}

func TestCheckCommand(t *testing.T) {
	state := clientEnv(t, "10.99.0.1/24")
	code, out, errOut := runCLI(t, "", "check")
	if code != 0 || !strings.Contains(out, "# clients.private_key: none given; run will generate "+filepath.Join(state, config.StateClientsKey)) ||
		!strings.Contains(out, "mode: netstack # from ANYGUARD_EGRESS_MODE") {
		t.Fatalf("check: %d %s\n%s", code, errOut, out)
	}
	if _, err := os.Stat(state); err == nil {
		t.Errorf("check created the state directory")
	}
	k, _ := keys.Generate()
	t.Setenv("ANYGUARD_CLIENTS_PRIVATE_KEY", k.String())
	code, out, _ = runCLI(t, "", "check")
	if code != 0 || strings.Contains(out, k.String()) || !strings.Contains(out, "private_key: (secret) # from ANYGUARD_CLIENTS_PRIVATE_KEY; public key "+k.Public().String()) {
		t.Errorf("check with a key: %d\n%s", code, out)
	}
	if code, out, _ := runCLI(t, "", "check", "--quiet"); code != 0 || out != "" {
		t.Errorf("check --quiet: %d %q", code, out)
	}
	t.Setenv("ANYGUARD_CLIENTS_MTU", "9")
	code, out, errOut = runCLI(t, "", "check")
	if code != 1 || out != "" || errOut != "anyguard check: config: ANYGUARD_CLIENTS_MTU (clients.mtu): 9 is out of range 1280..9000\n" {
		t.Errorf("bad: %d %q %q", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "", "check", "--config", filepath.Join(t.TempDir(), "none.yaml"))
	if code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: %d %s", code, errOut)
	}
}

// TestRunWithoutConfig: run with neither file nor variables names what is
// missing and how to set it, and generates no key for a configuration that
// fails anyway.
func TestRunWithoutConfig(t *testing.T) {
	if _, err := os.Stat(defaultConfigPath); err == nil {
		t.Skipf("%s exists on this machine: run would read it", defaultConfigPath)
	}
	state := filepath.Join(t.TempDir(), "state")
	t.Setenv(stateDirEnv, state)
	t.Setenv(configEnv, "")
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "ANYGUARD_") && name != stateDirEnv && name != configEnv && name != "ANYGUARD_E2E" {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	code, _, errOut := runCLI(t, "", "run")
	if code != 1 || !strings.Contains(errOut, "clients.address: required") || !strings.Contains(errOut, "or set ANYGUARD_CLIENTS_ADDRESS") {
		t.Errorf("run with nothing: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(state); err == nil {
		t.Errorf("a failed start created the state directory")
	}
}

// TestSIGHUPDuringStartReloads: `client add` signals the gateway as soon
// as its pid file exists, which is before the gateway serves. That SIGHUP
// must not end the gateway (SIGHUP's default action): it reloads once the
// gateway serves.
func TestSIGHUPDuringStartReloads(t *testing.T) {
	state := clientEnv(t, "10.99.0.1/24")
	t.Setenv("ANYGUARD_CLIENTS_LISTEN_PORT", "0")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd, out, done := startChild(t, append(os.Environ(), runMainEnv+"=1"), "run")
	pid := filepath.Join(state, pidFileName)
	testwait.Until(t, 20*time.Second, "the pid file", func() bool {
		b, err := os.ReadFile(pid)
		return err == nil && strings.TrimSpace(string(b)) == fmt.Sprint(cmd.Process.Pid)
	})
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, done, `msg="configuration reloaded" node=`)
	if strings.Index(out.String(), `msg="gateway started"`) > strings.Index(out.String(), `msg="configuration reloaded"`) {
		t.Errorf("reloaded before it started:\n%s", out)
	}
}
