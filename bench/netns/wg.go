//go:build linux

package netns

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anyguard/anyguard/wgkey"
)

// UAPIDir holds the UAPI sockets of every userspace WireGuard device on the
// machine, whatever its namespace: interface names must be unique here.
const UAPIDir = "/var/run/wireguard"

// UAPISocket is the UAPI socket of interface iface.
func UAPISocket(iface string) string { return filepath.Join(UAPIDir, iface+".sock") }

// KeyPair is a WireGuard key pair in base64, as wg(8) prints them.
type KeyPair struct {
	Private, Public string
}

// GenerateKeyPair makes a new key pair.
func GenerateKeyPair() (KeyPair, error) {
	k, err := wgkey.Generate()
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{Private: k.String(), Public: k.Public().String()}, nil
}

var (
	ifaceMu   sync.Mutex
	ifaceUsed = map[string]bool{}
)

// UniqueIfaceName returns prefix plus four random hex digits, a name that
// no UAPI socket on the machine and no earlier call in this process uses.
func UniqueIfaceName(prefix string) (string, error) {
	ifaceMu.Lock()
	defer ifaceMu.Unlock()
	for range 100 {
		var b [2]byte
		rand.Read(b[:])
		name := prefix + hex.EncodeToString(b[:])
		if ifaceUsed[name] {
			continue
		}
		if _, err := os.Stat(UAPISocket(name)); err == nil {
			continue
		}
		ifaceUsed[name] = true
		return name, nil
	}
	return "", fmt.Errorf("no free interface name with prefix %q", prefix)
}

// WriteSecret writes content to dir/name, readable by its owner only.
func WriteSecret(dir, name, content string) (string, error) {
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, []byte(content), 0o600)
}

// Interface is a userspace WireGuard interface configured with wg(8) and
// ip(8), the way an operator sets up wireguard-go.
type Interface struct {
	Iface      string
	Address    string // with prefix length, e.g. 10.99.0.1/16
	MTU        int
	ListenPort int // 0: none set
	PrivateKey string
	Peer       string   // public key of the one peer
	AllowedIPs []string // the peer's allowed IPs
	Endpoint   string   // the peer's endpoint, "" when learnt
	Routes     []string // prefixes routed into the interface beyond Address's network
}

// StartUserspace runs daemon (a wireguard-go compatible binary: stock
// wireguard-go, or anyguard interface) in the foreground inside ns as
// c.Iface, waits for its UAPI socket and configures it with wg and ip. The
// process is left to the caller to stop (or to ns.Remove).
func StartUserspace(ns *NS, daemon []string, dir string, c Interface) (*Proc, error) {
	args := ns.Command(append(append([]string{}, daemon...), "--foreground", c.Iface)...)
	p, err := Start(filepath.Base(daemon[0])+"-"+c.Iface, filepath.Join(dir, c.Iface+".log"),
		[]string{"LOG_LEVEL=error"}, args...)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Proc, error) {
		p.Stop(5 * time.Second)
		return nil, fmt.Errorf("%w\n--- log of %s ---\n%s", err, p.Name, p.Log())
	}
	if err := WaitFor(p, 20*time.Second, "UAPI socket "+UAPISocket(c.Iface), func() bool {
		_, err := os.Stat(UAPISocket(c.Iface))
		return err == nil
	}); err != nil {
		return fail(err)
	}
	if err := Configure(ns, dir, c); err != nil {
		return fail(err)
	}
	if c.ListenPort != 0 {
		if err := WaitUDPListening(ns, p, c.ListenPort, 5*time.Second); err != nil {
			return fail(err)
		}
	}
	return p, nil
}

// Configure sets up the existing userspace interface c.Iface in ns with
// wg set and ip: key, listen port, the peer, address, MTU, routes, and up.
// The private key goes through a file in dir.
func Configure(ns *NS, dir string, c Interface) error {
	keyFile, err := WriteSecret(dir, c.Iface+".key", c.PrivateKey+"\n")
	if err != nil {
		return err
	}
	set := []string{"wg", "set", c.Iface, "private-key", keyFile}
	if c.ListenPort != 0 {
		set = append(set, "listen-port", strconv.Itoa(c.ListenPort))
	}
	set = append(set, "peer", c.Peer, "allowed-ips", strings.Join(c.AllowedIPs, ","))
	if c.Endpoint != "" {
		set = append(set, "endpoint", c.Endpoint)
	}
	if _, err := ns.MustExec(set...); err != nil {
		return err
	}
	steps := [][]string{
		{"address", "add", c.Address, "dev", c.Iface},
		{"link", "set", c.Iface, "mtu", strconv.Itoa(c.MTU), "up"},
	}
	for _, r := range c.Routes {
		steps = append(steps, []string{"route", "add", r, "dev", c.Iface})
	}
	for _, s := range steps {
		if _, err := ns.IP(s...); err != nil {
			return err
		}
	}
	return nil
}

// WGPeer is one peer line of `wg show IFACE dump`.
type WGPeer struct {
	PublicKey     string
	Endpoint      string
	AllowedIPs    string
	LastHandshake time.Time // zero: never
	RxBytes       int64
	TxBytes       int64
}

// WGShowDump runs `wg show IFACE dump` in ns and returns its peers and the
// raw output.
func WGShowDump(ns *NS, iface string) ([]WGPeer, string, error) {
	out, err := ns.Exec(CmdTimeout, "wg", "show", iface, "dump")
	if err != nil {
		return nil, out, fmt.Errorf("wg show %s dump: %w: %s", iface, err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var peers []WGPeer
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
		p := WGPeer{PublicKey: f[0], Endpoint: f[2], AllowedIPs: f[3], RxBytes: rx, TxBytes: tx}
		if hs > 0 {
			p.LastHandshake = time.Unix(hs, 0)
		}
		peers = append(peers, p)
	}
	return peers, out, nil
}
