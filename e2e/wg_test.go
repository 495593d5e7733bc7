//go:build linux

package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// uapiDir holds the UAPI sockets of every userspace WireGuard device on the
// machine, whatever its namespace: interface names must be unique here.
const uapiDir = "/var/run/wireguard"

type keyPair struct {
	priv, pub string
}

// genKeyPair makes a WireGuard key pair with wg genkey / wg pubkey.
func genKeyPair(t testing.TB) keyPair {
	t.Helper()
	priv, err := exec.Command("wg", "genkey").Output()
	if err != nil {
		t.Fatalf("wg genkey: %v", err)
	}
	cmd := exec.Command("wg", "pubkey")
	cmd.Stdin = strings.NewReader(string(priv))
	pub, err := cmd.Output()
	if err != nil {
		t.Fatalf("wg pubkey: %v", err)
	}
	return keyPair{priv: strings.TrimSpace(string(priv)), pub: strings.TrimSpace(string(pub))}
}

// writeSecret writes content to dir/name, readable by root only.
func writeSecret(t testing.TB, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var (
	ifaceMu   sync.Mutex
	ifaceUsed = map[string]bool{}
)

// uniqueIfaceName returns prefix plus four random hex digits, a name that no
// UAPI socket on the machine uses, and removes that socket when t ends.
func uniqueIfaceName(t testing.TB, prefix string) string {
	t.Helper()
	ifaceMu.Lock()
	defer ifaceMu.Unlock()
	for range 100 {
		var b [2]byte
		rand.Read(b[:])
		name := prefix + hex.EncodeToString(b[:])
		if ifaceUsed[name] {
			continue
		}
		if _, err := os.Stat(uapiSocket(name)); err == nil {
			continue
		}
		ifaceUsed[name] = true
		t.Cleanup(func() { os.Remove(uapiSocket(name)) })
		return name
	}
	t.Fatalf("no free interface name with prefix %q", prefix)
	return ""
}

func uapiSocket(iface string) string {
	return filepath.Join(uapiDir, iface+".sock")
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// wgQuickClient is a stock WireGuard client: a wg-quick config brought up
// in a namespace, which (with no kernel module) runs Debian's wireguard-go.
type wgQuickClient struct {
	ns      *netns
	iface   string
	conf    string
	logPath string // wg-quick's output and the daemon's verbose log
}

// startWGQuickClient brings up a client with address 10.99.0.2/32 that
// routes the client network and the private network to the gateway at
// endpoint. It is brought down when t ends.
func startWGQuickClient(t testing.TB, ns *netns, keys keyPair, gatewayPub, endpoint string) *wgQuickClient {
	t.Helper()
	dir := t.TempDir()
	c := &wgQuickClient{ns: ns, iface: uniqueIfaceName(t, "agc")}
	conf := fmt.Sprintf(`[Interface]
PrivateKey = %s
Address = 10.99.0.2/32

[Peer]
PublicKey = %s
Endpoint = %s
AllowedIPs = 10.99.0.0/16, 10.1.0.0/16
`, keys.priv, gatewayPub, endpoint)
	c.conf = writeSecret(t, dir, c.iface+".conf", conf)
	c.logPath = filepath.Join(dir, "wg-quick.log")
	logf, err := os.Create(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// The daemon wireguard-go inherits the log file as stdout when
	// LOG_LEVEL is set; a file (not a pipe) keeps Wait from waiting for it.
	cmd := exec.Command("ip", "netns", "exec", ns.name, "wg-quick", "up", c.conf)
	cmd.Env = append(os.Environ(), "LOG_LEVEL=verbose")
	cmd.Stdout, cmd.Stderr = logf, logf
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- client %s (wg-quick + wireguard-go) log ---\n%s", c.iface, c.log())
		}
		if fileExists(uapiSocket(c.iface)) {
			// Removing the socket makes wireguard-go exit; removeNetns
			// ends it otherwise.
			if out, err := ns.exec(10*time.Second, "wg-quick", "down", c.conf); err != nil {
				t.Logf("wg-quick down %s: %v: %s", c.iface, err, out)
			}
		}
	})
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("wg-quick up: %v", err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(cmdTimeout):
		cmd.Process.Kill()
		err = fmt.Errorf("timed out after %v", cmdTimeout)
	}
	if err != nil {
		t.Fatalf("wg-quick up %s: %v", c.conf, err)
	}
	return c
}

func (c *wgQuickClient) log() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return fmt.Sprintf("(reading log: %v)", err)
	}
	if len(b) > maxLogDump {
		b = b[len(b)-maxLogDump:]
	}
	return string(b)
}

// wgPeer is one peer line of `wg show IFACE dump`.
type wgPeer struct {
	publicKey     string
	endpoint      string
	allowedIPs    string
	lastHandshake time.Time // zero: never
	rxBytes       int64
	txBytes       int64
}

// wgShowDump runs `wg show IFACE dump` in ns and returns its peers.
func wgShowDump(ns *netns, iface string) ([]wgPeer, string, error) {
	out, err := ns.exec(cmdTimeout, "wg", "show", iface, "dump")
	if err != nil {
		return nil, out, fmt.Errorf("wg show %s dump: %w: %s", iface, err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var peers []wgPeer
	// The first line is the interface itself (4 fields).
	for _, line := range lines[1:] {
		f := strings.Split(line, "\t")
		if len(f) != 8 {
			return nil, out, fmt.Errorf("wg show %s dump: unexpected peer line %q", iface, line)
		}
		hs, err1 := strconv.ParseInt(f[4], 10, 64)
		rx, err2 := strconv.ParseInt(f[5], 10, 64)
		tx, err3 := strconv.ParseInt(f[6], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, out, fmt.Errorf("wg show %s dump: bad numbers in %q", iface, line)
		}
		p := wgPeer{publicKey: f[0], endpoint: f[2], allowedIPs: f[3], rxBytes: rx, txBytes: tx}
		if hs > 0 {
			p.lastHandshake = time.Unix(hs, 0)
		}
		peers = append(peers, p)
	}
	return peers, out, nil
}
