//go:build linux

package e2e

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	bnetns "github.com/anyguard/anyguard/bench/netns"
)

// TestInterfaceDropIn uses `anyguard interface NAME` the way wg-quick uses
// wireguard-go: it daemonises, exits 0 with the UAPI socket in place, is
// configured with wg and ip, carries a stock client's traffic, follows the
// link going down and up, and exits when its UAPI socket is removed.
func TestInterfaceDropIn(t *testing.T) {
	tp := newTopology(t, topologyOptions{srvDefaultRoute: true})
	gwKeys, cliKeys := genKeyPair(t), genKeyPair(t)
	bin := anyguardBinary(t)
	iface := uniqueIfaceName(t, "agi")

	// Without -f it must daemonise: the command returns at once, 0.
	out, err := tp.gw.Exec(cmdTimeout, bin, "interface", iface)
	if err != nil {
		t.Fatalf("anyguard interface %s: %v: %s", iface, err, out)
	}
	if !fileExists(uapiSocket(iface)) {
		t.Fatalf("anyguard interface returned but %s is missing", uapiSocket(iface))
	}
	if link := tp.gw.ip(t, "link", "show", iface); !strings.Contains(link, "state DOWN") {
		t.Errorf("a new interface should start down like wireguard-go's: %s", link)
	}
	// A second one with the same name fails with exit 1 and a reason.
	if out, err := tp.gw.Exec(cmdTimeout, bin, "interface", iface); err == nil || !strings.Contains(out, "exists") {
		t.Errorf("second anyguard interface %s: want an error naming the existing interface, got %v: %s", iface, err, out)
	}
	err = bnetns.Configure(tp.gw.NS, t.TempDir(), bnetns.Interface{
		Iface: iface, Address: bnetns.GWAddr + "/16", MTU: 1420, ListenPort: clientPort,
		PrivateKey: gwKeys.Private, Peer: cliKeys.Public, AllowedIPs: []string{clientAddr + "/32"},
	})
	if err != nil {
		t.Fatal(err)
	}
	udpListening := func() bool {
		out, err := tp.gw.Exec(cmdTimeout, "ss", "-Hlun", "sport = :"+strconv.Itoa(clientPort))
		return err == nil && strings.TrimSpace(out) != ""
	}
	waitFor(t, nil, 5*time.Second, "the interface to listen once up", udpListening)
	startWGQuickClient(t, tp.cli, cliKeys, gwKeys.Public, gatewayEndpoint())
	checkClientPath(t, tp, iface, cliKeys.Public)

	// Down closes the socket (and, as in wireguard-go, drops the session),
	// up opens it again; traffic from the gateway side re-handshakes.
	tp.gw.ip(t, "link", "set", iface, "down")
	waitFor(t, nil, 5*time.Second, "the socket to close when the link is down", func() bool { return !udpListening() })
	tp.gw.ip(t, "link", "set", iface, "mtu", "1380", "up")
	waitFor(t, nil, 5*time.Second, "the socket to reopen when the link is up", udpListening)
	waitFor(t, nil, 15*time.Second, "ping from the gateway to the client after down and up", func() bool {
		_, err := tp.gw.Exec(cmdTimeout, "ping", "-n", "-c", "1", "-W", "1", clientAddr)
		return err == nil
	})

	// Removing the UAPI socket ends the daemon, which removes the interface.
	if err := os.Remove(uapiSocket(iface)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, nil, 10*time.Second, "the interface to go with its socket", func() bool {
		_, err := tp.gw.IP("link", "show", iface)
		return err != nil
	})
}

// TestInterfaceMovesNetns moves the interface to another namespace, as
// container set-ups do with wireguard-go: the daemon (and its UAPI socket)
// stays, and deleting the moved interface ends it.
func TestInterfaceMovesNetns(t *testing.T) {
	requirePrivileged(t)
	home, away := newNetns(t, "home"), newNetns(t, "away")
	iface := uniqueIfaceName(t, "agm")
	if out, err := home.Exec(cmdTimeout, anyguardBinary(t), "interface", iface); err != nil {
		t.Fatalf("anyguard interface %s: %v: %s", iface, err, out)
	}
	home.ip(t, "link", "set", iface, "netns", away.Name)
	away.ip(t, "address", "add", "10.77.0.1/24", "dev", iface)
	away.ip(t, "link", "set", iface, "up")
	time.Sleep(500 * time.Millisecond)
	if !fileExists(uapiSocket(iface)) || len(bnetns.Pids(home.Name)) == 0 {
		t.Fatalf("the daemon did not survive moving %s to another namespace", iface)
	}
	if _, err := home.Exec(cmdTimeout, "wg", "show", iface); err != nil {
		t.Errorf("wg show %s from the home namespace after the move: %v", iface, err)
	}
	away.ip(t, "link", "del", iface)
	waitFor(t, nil, 10*time.Second, "the daemon to exit once its interface is deleted", func() bool {
		return !fileExists(uapiSocket(iface)) && len(bnetns.Pids(home.Name)) == 0
	})
}

// TestInterfaceIPv6 joins two anyguard interfaces over an IPv6 underlay
// and pings across the tunnel over IPv6, and over IPv4 on the same tunnel.
func TestInterfaceIPv6(t *testing.T) {
	tp := newTopology(t, topologyOptions{})
	tp.gw.ip(t, "address", "add", "fd00:192::1/64", "dev", "ul0", "nodad")
	tp.cli.ip(t, "address", "add", "fd00:192::2/64", "dev", "ul0", "nodad")
	gwKeys, cliKeys := genKeyPair(t), genKeyPair(t)
	bin := anyguardBinary(t)
	dir := t.TempDir()
	daemon := []string{bin, "interface"}
	gwIface := uniqueIfaceName(t, "agi")
	gw, err := bnetns.StartUserspace(tp.gw.NS, daemon, dir, bnetns.Interface{
		Iface: gwIface, Address: "fd99::1/64", MTU: 1420, ListenPort: clientPort,
		PrivateKey: gwKeys.Private, Peer: cliKeys.Public, AllowedIPs: []string{"fd99::2/128", clientAddr + "/32"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Stop(5 * time.Second) })
	cliIface := uniqueIfaceName(t, "agi")
	cli, err := bnetns.StartUserspace(tp.cli.NS, daemon, dir, bnetns.Interface{
		Iface: cliIface, Address: "fd99::2/64", MTU: 1420,
		PrivateKey: cliKeys.Private, Peer: gwKeys.Public, AllowedIPs: []string{"fd99::/64", "10.99.0.0/16"},
		Endpoint: "[fd00:192::1]:" + strconv.Itoa(clientPort), Routes: []string{"10.99.0.0/16"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Stop(5 * time.Second) })
	tp.gw.ip(t, "address", "add", bnetns.GWAddr+"/16", "dev", gwIface)
	tp.cli.ip(t, "address", "add", clientAddr+"/32", "dev", cliIface)
	for _, dst := range []string{"fd99::1", bnetns.GWAddr} {
		waitFor(t, &proc{cli}, 10*time.Second, "ping "+dst+" through the tunnel", func() bool {
			_, err := tp.cli.Exec(cmdTimeout, "ping", "-n", "-c", "1", "-W", "1", dst)
			return err == nil
		})
	}
	peers, out, err := bnetns.WGShowDump(tp.gw.NS, gwIface)
	if err != nil || len(peers) != 1 || !strings.HasPrefix(peers[0].Endpoint, "[fd00:192::2]:") {
		t.Errorf("gateway should see the client at its IPv6 endpoint: %v\n%s", err, out)
	}
}
