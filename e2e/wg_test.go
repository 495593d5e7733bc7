//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	bnetns "github.com/anyguard/anyguard/bench/netns"
)

type keyPair = bnetns.KeyPair

// genKeyPair makes a WireGuard key pair.
func genKeyPair(t testing.TB) keyPair {
	t.Helper()
	k, err := bnetns.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writeSecret writes content to dir/name, readable by root only.
func writeSecret(t testing.TB, dir, name, content string) string {
	t.Helper()
	path, err := bnetns.WriteSecret(dir, name, content)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// uniqueIfaceName returns prefix plus four random hex digits, a name that no
// UAPI socket on the machine uses, and removes that socket when t ends.
func uniqueIfaceName(t testing.TB, prefix string) string {
	t.Helper()
	name, err := bnetns.UniqueIfaceName(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(uapiSocket(name)) })
	return name
}

func uapiSocket(iface string) string { return bnetns.UAPISocket(iface) }

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
	return startWGQuickClientRoutes(t, ns, keys, gatewayPub, endpoint, "10.99.0.0/16, 10.1.0.0/16")
}

// startWGQuickClientRoutes is startWGQuickClient with the peer's AllowedIPs
// (a wg-quick list) given.
func startWGQuickClientRoutes(t testing.TB, ns *netns, keys keyPair, gatewayPub, endpoint, allowedIPs string) *wgQuickClient {
	t.Helper()
	conf := fmt.Sprintf(`[Interface]
PrivateKey = %s
Address = 10.99.0.2/32

[Peer]
PublicKey = %s
Endpoint = %s
AllowedIPs = %s
`, keys.Private, gatewayPub, endpoint, allowedIPs)
	return startWGQuickConf(t, ns, conf)
}

// startWGQuickConf brings up the wg-quick file conf in ns (the interface
// named as uniqueIfaceName makes it); it is brought down when t ends.
func startWGQuickConf(t testing.TB, ns *netns, conf string) *wgQuickClient {
	t.Helper()
	dir := t.TempDir()
	c := &wgQuickClient{ns: ns, iface: uniqueIfaceName(t, "agc")}
	c.conf = writeSecret(t, dir, c.iface+".conf", conf)
	c.logPath = filepath.Join(dir, "wg-quick.log")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- client %s (wg-quick + wireguard-go) log ---\n%s", c.iface, c.log())
		}
		if fileExists(uapiSocket(c.iface)) {
			// Removing the socket makes wireguard-go exit; removeNetns
			// ends it otherwise.
			if out, err := ns.Exec(10*time.Second, "wg-quick", "down", c.conf); err != nil {
				t.Logf("wg-quick down %s: %v: %s", c.iface, err, out)
			}
		}
	})
	c.up(t)
	return c
}

// up runs wg-quick up on the client's configuration.
func (c *wgQuickClient) up(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// The daemon wireguard-go inherits the log file as stdout when
	// LOG_LEVEL is set; a file (not a pipe) keeps Wait from waiting for it.
	cmd := exec.Command("ip", "netns", "exec", c.ns.Name, "wg-quick", "up", c.conf)
	cmd.Env = append(os.Environ(), "LOG_LEVEL=verbose")
	cmd.Stdout, cmd.Stderr = logf, logf
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
}

// down runs wg-quick down on the client's configuration: its wireguard-go
// exits and the session with it.
func (c *wgQuickClient) down(t testing.TB) {
	t.Helper()
	if out, err := c.ns.Exec(cmdTimeout, "wg-quick", "down", c.conf); err != nil {
		t.Fatalf("wg-quick down %s: %v: %s", c.iface, err, out)
	}
}

func (c *wgQuickClient) log() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return fmt.Sprintf("(reading log: %v)", err)
	}
	if len(b) > bnetns.MaxLogDump {
		b = b[len(b)-bnetns.MaxLogDump:]
	}
	return string(b)
}
