//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	bnetns "github.com/anyguard/anyguard/bench/netns"
)

// The drop-in tests hold `anyguard interface` to what users of wireguard-go
// rely on, by running the same steps against it and against stock
// wireguard-go of the version we embed (stockWireguardGo). The set-up is
// wireguard-go's own tests/netns.sh: both daemons start in a home
// namespace, their interfaces are moved to ns1 and ns2, configured there
// with ip(8) and from home with wg(8), and the peers talk over home's
// loopback, where the daemons' UDP sockets stay.

// wgImpl is a wireguard-go compatible daemon under test.
type wgImpl struct {
	name string
	argv func(t testing.TB) []string // the daemon; "-f NAME" is appended
	// followsMovedLink: the daemon sees a moved interface go down and
	// change its MTU. anyguard interface does. Stock wireguard-go listens
	// to netlink in its own namespace only and, for a moved interface,
	// probes it with an empty write that current kernels answer "up"
	// whatever its state: it is up from the start and stays up.
	followsMovedLink bool
}

func wgImpls() []wgImpl {
	return []wgImpl{
		{name: "anyguard", argv: func(t testing.TB) []string { return []string{anyguardBinary(t), "interface"} },
			followsMovedLink: true},
		{name: "wireguard-go", argv: func(t testing.TB) []string { return []string{stockWireguardGo(t)} }},
	}
}

const (
	pairPort1, pairPort2 = 10000, 20000
	pairAddr1, pairAddr2 = "192.168.241.1", "192.168.241.2"
	pairAddr1v6          = "fd00::1"
	pairAddr2v6          = "fd00::2"
)

// wgPair is two interfaces of one implementation, peers of each other,
// moved out of the namespace their daemons run in.
type wgPair struct {
	impl           wgImpl
	home, ns1, ns2 *netns
	wg1, wg2       string // names as created: the UAPI sockets keep them
	dev1, dev2     string // names in ns1 and ns2 now (they may be renamed)
	d1, d2         *proc
	k1, k2         keyPair
	psk            string
	dir            string
}

// newWGPair runs netns.sh's sequence: create in home, move, configure,
// bring up; it returns once ns1 reaches ns2 through the tunnel.
func newWGPair(t *testing.T, impl wgImpl) *wgPair {
	t.Helper()
	requirePrivileged(t)
	argv := impl.argv(t)
	p := &wgPair{impl: impl, home: newNetns(t, "home"), ns1: newNetns(t, "ns1"), ns2: newNetns(t, "ns2"), dir: t.TempDir()}
	p.wg1, p.wg2 = uniqueIfaceName(t, "agd"), uniqueIfaceName(t, "agd")
	p.dev1, p.dev2 = p.wg1, p.wg2
	p.d1, p.d2 = p.start(t, argv, p.wg1), p.start(t, argv, p.wg2)
	p.home.ip(t, "link", "set", p.wg1, "netns", p.ns1.Name)
	p.home.ip(t, "link", "set", p.wg2, "netns", p.ns2.Name)

	p.k1, p.k2 = genKeyPair(t), genKeyPair(t)
	p.psk = genKeyPair(t).Private // 32 random bytes in base64, as wg genpsk prints
	p.wg(t, "set", p.wg1, "private-key", p.secret(t, p.k1.Private), "listen-port", strconv.Itoa(pairPort1),
		"peer", p.k2.Public, "preshared-key", p.secret(t, p.psk),
		"allowed-ips", pairAddr2+"/32,"+pairAddr2v6+"/128", "endpoint", "127.0.0.1:"+strconv.Itoa(pairPort2))
	p.wg(t, "set", p.wg2, "private-key", p.secret(t, p.k2.Private), "listen-port", strconv.Itoa(pairPort2),
		"peer", p.k1.Public, "preshared-key", p.secret(t, p.psk),
		"allowed-ips", pairAddr1+"/32,"+pairAddr1v6+"/128", "endpoint", "127.0.0.1:"+strconv.Itoa(pairPort1))
	p.ns1.ip(t, "address", "add", pairAddr1+"/24", "dev", p.dev1)
	p.ns2.ip(t, "address", "add", pairAddr2+"/24", "dev", p.dev2)
	p.ns1.ip(t, "link", "set", p.dev1, "up")
	p.ns2.ip(t, "link", "set", p.dev2, "up")
	p.addV6(t)
	p.awaitPing(t, p.ns1, pairAddr2)
	return p
}

// start runs the daemon for iface in home, in the foreground with a
// verbose log (dumped when the test fails), and waits for its UAPI socket.
func (p *wgPair) start(t *testing.T, argv []string, iface string) *proc {
	t.Helper()
	args := p.home.Command(append(append([]string{}, argv...), "-f", iface)...)
	d := startProc(t, p.impl.name+"-"+iface, []string{"LOG_LEVEL=verbose"}, args...)
	waitFor(t, d, 20*time.Second, "UAPI socket of "+iface, func() bool { return fileExists(uapiSocket(iface)) })
	return d
}

// addV6 (re)adds the inner IPv6 addresses: the kernel drops them when an
// interface goes down.
func (p *wgPair) addV6(t *testing.T) {
	t.Helper()
	p.ns1.ip(t, "address", "replace", pairAddr1v6+"/24", "dev", p.dev1, "nodad")
	p.ns2.ip(t, "address", "replace", pairAddr2v6+"/24", "dev", p.dev2, "nodad")
}

// secret writes s to a root-only file for wg's key arguments.
func (p *wgPair) secret(t *testing.T, s string) string {
	t.Helper()
	f, err := os.CreateTemp(p.dir, "key-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s + "\n"); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// wg runs wg(8) in home (any namespace would do: the UAPI sockets are
// files) and returns its output.
func (p *wgPair) wg(t *testing.T, args ...string) string {
	t.Helper()
	return p.home.mustExec(t, append([]string{"wg"}, args...)...)
}

// awaitPing waits until one echo from ns to dst is answered (a handshake
// may have to happen first).
func (p *wgPair) awaitPing(t *testing.T, ns *netns, dst string, extra ...string) {
	t.Helper()
	args := append([]string{"ping", "-n", "-c", "1", "-W", "1"}, extra...)
	waitFor(t, nil, 15*time.Second, fmt.Sprintf("a ping from %s to %s through %s", ns.Name, dst, p.impl.name), func() bool {
		if !p.d1.Alive() || !p.d2.Alive() {
			return false
		}
		_, err := ns.Exec(cmdTimeout, append(args, dst)...)
		return err == nil
	})
}

// pingAll sends 10 echoes from ns to dst (extra: more ping options) and
// fails t unless every one is answered.
func (p *wgPair) pingAll(t *testing.T, ns *netns, dst string, extra ...string) {
	t.Helper()
	args := append([]string{"ping", "-n", "-q", "-c", "10", "-i", "0.02", "-W", "1"}, extra...)
	out, err := ns.Exec(cmdTimeout, append(args, dst)...)
	if err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("%s: ping %s from %s %v: %v\n%s", p.impl.name, dst, ns.Name, extra, err, out)
	}
}

// pingFails checks that an echo from ns to dst is not answered.
func (p *wgPair) pingFails(t *testing.T, ns *netns, dst, why string) {
	t.Helper()
	if out, err := ns.Exec(cmdTimeout, "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", dst); err == nil {
		t.Fatalf("%s: ping %s from %s answered %s:\n%s", p.impl.name, dst, ns.Name, why, out)
	}
}

// pingBoth checks the tunnel both ways over IPv4 and IPv6.
func (p *wgPair) pingBoth(t *testing.T) {
	t.Helper()
	p.pingAll(t, p.ns1, pairAddr2)
	p.pingAll(t, p.ns2, pairAddr1)
	p.pingAll(t, p.ns1, pairAddr2v6)
	p.pingAll(t, p.ns2, pairAddr1v6)
}

// listening reports whether a UDP socket in home is bound to port (the
// daemons' sockets stay in the namespace they run in).
func (p *wgPair) listening(t *testing.T, port int) bool {
	t.Helper()
	out, err := p.home.Exec(cmdTimeout, "ss", "-Hlun", "sport = :"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("ss in %s: %v: %s", p.home.Name, err, out)
	}
	return strings.TrimSpace(out) != ""
}

// iperf runs short iperf3 TCP tests through the tunnel, as netns.sh does
// at each MTU: ns1 to ns2 over IPv4, and ns2 to ns1 (-R) over IPv6. Each
// must carry data and finish without error.
func (p *wgPair) iperf(t *testing.T) {
	t.Helper()
	srv := startProc(t, "iperf3-s", nil, p.ns2.Command("iperf3", "-s", "-p", strconv.Itoa(bnetns.IperfPort))...)
	defer srv.Stop(5 * time.Second)
	if err := bnetns.WaitTCPListening(p.ns2.NS, srv.Proc, bnetns.IperfPort, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, run := range []struct {
		dst   string
		extra []string
	}{{pairAddr2, nil}, {pairAddr2v6, []string{"-R"}}} {
		r, err := bnetns.Iperf(context.Background(), p.ns1.NS, run.dst, time.Second, run.extra...)
		if err != nil {
			t.Fatalf("%s: %v", p.impl.name, err)
		}
		if r.End.SumReceived.Bytes <= 0 {
			t.Fatalf("%s: iperf3 to %s %v carried nothing: %+v", p.impl.name, run.dst, run.extra, r.End)
		}
	}
}

// awaitLog waits until the daemon's log contains s.
func (p *wgPair) awaitLog(t *testing.T, d *proc, s string) {
	t.Helper()
	waitFor(t, d, 5*time.Second, fmt.Sprintf("%q in the log of %s", s, d.Name), func() bool {
		b, err := os.ReadFile(d.LogPath)
		return err == nil && strings.Contains(string(b), s)
	})
}

// TestDropInNetnsMove is issue 14's sequence: interfaces created in one
// namespace, moved to others, configured with wg and ip there, brought up:
// pings must pass both ways over IPv4 and IPv6, and keep passing after the
// interface is taken down and up, given another MTU and renamed in its new
// namespace; deleting it there ends the daemon. anyguard must also follow
// down and MTU (its socket closes while down; the device logs the MTU).
func TestDropInNetnsMove(t *testing.T) {
	for _, impl := range wgImpls() {
		t.Run(impl.name, func(t *testing.T) {
			p := newWGPair(t, impl)
			p.pingBoth(t)
			p.iperf(t)

			// Down and up where the interface lives now.
			p.ns1.ip(t, "link", "set", p.dev1, "down")
			p.pingFails(t, p.ns1, pairAddr2, "with the interface down")
			if impl.followsMovedLink {
				waitFor(t, p.d1, 5*time.Second, "the socket to close while the moved interface is down",
					func() bool { return !p.listening(t, pairPort1) })
			}
			p.ns1.ip(t, "link", "set", p.dev1, "up")
			p.addV6(t)
			waitFor(t, p.d1, 5*time.Second, "the socket to listen once the moved interface is up",
				func() bool { return p.listening(t, pairPort1) })
			p.awaitPing(t, p.ns1, pairAddr2)
			p.pingBoth(t)

			// Another MTU on both sides: a smaller one, then netns.sh's big one.
			for _, mtu := range []int{1280, 34816 - 1500 + 1420} {
				p.ns1.ip(t, "link", "set", p.dev1, "mtu", strconv.Itoa(mtu))
				p.ns2.ip(t, "link", "set", p.dev2, "mtu", strconv.Itoa(mtu))
				if impl.followsMovedLink {
					p.awaitLog(t, p.d1, fmt.Sprintf("MTU updated: %d", mtu))
				}
				// The largest packet the MTU allows, unfragmented, both ways.
				size := strconv.Itoa(mtu - 28)
				p.pingAll(t, p.ns1, pairAddr2, "-M", "do", "-s", size)
				p.pingAll(t, p.ns2, pairAddr1, "-M", "do", "-s", size)
				p.iperf(t)
			}
			p.ns1.ip(t, "link", "set", p.dev1, "mtu", "1420")
			p.ns2.ip(t, "link", "set", p.dev2, "mtu", "1420")

			// Renamed there (a rename needs the link down).
			renamed := p.dev1 + "r"
			p.ns1.ip(t, "link", "set", p.dev1, "down")
			p.ns1.ip(t, "link", "set", p.dev1, "name", renamed)
			p.dev1 = renamed
			p.ns1.ip(t, "link", "set", p.dev1, "up")
			p.addV6(t)
			if impl.followsMovedLink {
				p.awaitLog(t, p.d1, "Interface is now "+renamed)
			}
			p.awaitPing(t, p.ns1, pairAddr2)
			p.pingBoth(t)
			if out := p.wg(t, "show", p.wg1, "peers"); strings.TrimSpace(out) != p.k2.Public {
				t.Errorf("wg show %s peers after the rename: %q, want %s", p.wg1, out, p.k2.Public)
			}

			// Deleted in its new namespace: the daemon exits and takes its
			// UAPI socket with it.
			p.ns1.ip(t, "link", "del", p.dev1)
			waitFor(t, nil, 10*time.Second, "the daemon to exit once its moved interface is deleted", func() bool {
				return !p.d1.Alive() && !fileExists(uapiSocket(p.wg1))
			})
			if !p.d2.Alive() {
				t.Errorf("the other daemon exited too: %v", p.d2.Err())
			}
		})
	}
}

// dropInStep is one behaviour of wireguard-go a drop-in must share. Steps
// run in order on one pair per implementation, as in netns.sh: each starts
// from the state the previous one left.
type dropInStep struct {
	name string
	run  func(t *testing.T, p *wgPair)
}

// TestDropInBehaviours runs what users of wireguard-go rely on (most of it
// from wireguard-go's tests/netns.sh) against anyguard interface and stock
// wireguard-go, on interfaces moved out of the daemons' namespace.
func TestDropInBehaviours(t *testing.T) {
	for _, impl := range wgImpls() {
		t.Run(impl.name, func(t *testing.T) {
			p := newWGPair(t, impl)
			for _, s := range dropInSteps {
				if !t.Run(s.name, func(t *testing.T) { s.run(t, p) }) {
					return // later steps build on this one
				}
				if !p.d1.Alive() || !p.d2.Alive() {
					t.Fatalf("a daemon exited during %s: %v %v", s.name, p.d1.Err(), p.d2.Err())
				}
			}
		})
	}
}

var dropInSteps = []dropInStep{
	{"ipv4 and ipv6 inside", func(t *testing.T, p *wgPair) { p.pingBoth(t) }},
	{"wg show dump", checkDump},
	{"ipv6 endpoints", func(t *testing.T, p *wgPair) {
		p.wg(t, "set", p.wg1, "peer", p.k2.Public, "endpoint", "[::1]:"+strconv.Itoa(pairPort2))
		p.wg(t, "set", p.wg2, "peer", p.k1.Public, "endpoint", "[::1]:"+strconv.Itoa(pairPort1))
		// A packet right after the switch may be lost, with stock
		// wireguard-go as with anyguard (netns.sh's pings tolerate it):
		// wait for the new path, then require every echo again.
		p.awaitPing(t, p.ns1, pairAddr2)
		p.awaitPing(t, p.ns2, pairAddr1)
		p.pingBoth(t)
		p.wantEndpoint(t, p.wg1, p.k2.Public, "[::1]:"+strconv.Itoa(pairPort2))
		p.wantEndpoint(t, p.wg2, p.k1.Public, "[::1]:"+strconv.Itoa(pairPort1))
	}},
	{"roaming over ipv4", func(t *testing.T, p *wgPair) {
		// wg1 changes its address and port: wg2 learns both from the
		// first authenticated packet.
		p.home.ip(t, "-4", "address", "del", "127.0.0.1/8", "dev", "lo")
		p.home.ip(t, "-4", "address", "add", "127.212.121.99/8", "dev", "lo")
		p.wg(t, "set", p.wg1, "listen-port", "9999")
		p.wg(t, "set", p.wg1, "peer", p.k2.Public, "endpoint", "127.0.0.1:"+strconv.Itoa(pairPort2))
		p.awaitPing(t, p.ns1, pairAddr2v6)
		p.wantEndpoint(t, p.wg2, p.k1.Public, "127.212.121.99:9999")
	}},
	{"roaming over ipv6", func(t *testing.T, p *wgPair) {
		p.wg(t, "set", p.wg1, "listen-port", "9998")
		p.wg(t, "set", p.wg1, "peer", p.k2.Public, "endpoint", "[::1]:"+strconv.Itoa(pairPort2))
		p.awaitPing(t, p.ns1, pairAddr2)
		p.wantEndpoint(t, p.wg2, p.k1.Public, "[::1]:9998")
	}},
	{"allowed ips changed while traffic flows", func(t *testing.T, p *wgPair) {
		p.wg(t, "set", p.wg1, "peer", p.k2.Public, "allowed-ips", "192.168.241.0/24")
		p.pingAll(t, p.ns2, pairAddr1)
		// A more specific peer takes 192.168.241.2: wg2's packets from it
		// are dropped (cryptokey routing), though wg1 still learns wg2's
		// new port from them.
		more := genKeyPair(t).Public
		p.wg(t, "set", p.wg1, "peer", more, "allowed-ips", pairAddr2+"/32")
		p.wg(t, "set", p.wg2, "listen-port", "9997")
		p.pingFails(t, p.ns2, pairAddr1, "while another peer holds the source address")
		p.wg(t, "set", p.wg1, "peer", more, "remove")
		p.wantEndpoint(t, p.wg1, p.k2.Public, "[::1]:9997")
		p.wg(t, "set", p.wg1, "peer", p.k2.Public, "allowed-ips", pairAddr2+"/32,"+pairAddr2v6+"/128")
		p.awaitPing(t, p.ns2, pairAddr1)
		p.pingBoth(t)
	}},
	{"keys changed while traffic flows", func(t *testing.T, p *wgPair) {
		startProc(t, "ping-background", nil, p.ns1.Command("ping", "-n", "-i", "0.05", "-w", "60", pairAddr2)...)
		k2 := genKeyPair(t)
		p.wg(t, "set", p.wg2, "private-key", p.secret(t, k2.Private))
		if got := strings.TrimSpace(p.wg(t, "show", p.wg2, "public-key")); got != k2.Public {
			t.Fatalf("wg show %s public-key = %q after the change, want %s", p.wg2, got, k2.Public)
		}
		p.pingFails(t, p.ns2, pairAddr1, "while wg1 still expects wg2's old key")
		p.wg(t, "set", p.wg1, "peer", p.k2.Public, "remove")
		p.k2 = k2
		p.addPeer1(t)
		p.awaitPing(t, p.ns1, pairAddr2)
		p.pingBoth(t)
	}},
	{"preshared keys must match", func(t *testing.T, p *wgPair) {
		p.wg(t, "set", p.wg2, "peer", p.k1.Public, "preshared-key", p.secret(t, genKeyPair(t).Private))
		// A preshared key counts from the next handshake: make one.
		p.wg(t, "set", p.wg1, "peer", p.k2.Public, "remove")
		p.addPeer1(t)
		p.pingFails(t, p.ns1, pairAddr2, "with different preshared keys")
		p.wg(t, "set", p.wg2, "peer", p.k1.Public, "preshared-key", p.secret(t, p.psk))
		p.awaitPing(t, p.ns1, pairAddr2)
		p.pingBoth(t)
	}},
	{"peer removed during traffic", func(t *testing.T, p *wgPair) {
		startProc(t, "ping-background", nil, p.ns2.Command("ping", "-n", "-i", "0.02", "-w", "60", pairAddr1)...)
		p.wg(t, "set", p.wg1, "peer", p.k2.Public, "remove")
		if out := strings.TrimSpace(p.wg(t, "show", p.wg1, "peers")); out != "" {
			t.Fatalf("wg show %s peers after the removal: %q", p.wg1, out)
		}
		p.pingFails(t, p.ns1, pairAddr2, "after the peer was removed")
		p.addPeer1(t)
		p.awaitPing(t, p.ns1, pairAddr2)
		p.pingBoth(t)
	}},
	{"persistent keepalive", func(t *testing.T, p *wgPair) {
		p.wg(t, "set", p.wg1, "peer", p.k2.Public, "persistent-keepalive", "1")
		if peer := p.dumpPeer(t, p.wg1, p.k2.Public); peer[7] != "1" {
			t.Fatalf("persistent keepalive in the dump: %q, want 1", peer[7])
		}
		// With no traffic of ours, wg2 keeps receiving wg1's keepalives.
		rx0 := p.dumpPeer(t, p.wg2, p.k1.Public)[5]
		waitFor(t, p.d1, 5*time.Second, "a keepalive to reach wg2", func() bool {
			return p.dumpPeer(t, p.wg2, p.k1.Public)[5] != rx0
		})
		p.wg(t, "set", p.wg1, "peer", p.k2.Public, "persistent-keepalive", "0")
		if peer := p.dumpPeer(t, p.wg1, p.k2.Public); peer[7] != "off" {
			t.Fatalf("persistent keepalive in the dump after 0: %q, want off", peer[7])
		}
	}},
	{"130,560 allowed ips on one peer", func(t *testing.T, p *wgPair) {
		// netns.sh: a request and an answer far larger than one read.
		iface := uniqueIfaceName(t, "agd")
		d := p.start(t, p.impl.argv(t), iface)
		defer d.Stop(5 * time.Second)
		var conf strings.Builder
		fmt.Fprintf(&conf, "[Interface]\nPrivateKey = %s\n[Peer]\nPublicKey = %s\n", genKeyPair(t).Private, genKeyPair(t).Public)
		for a := 1; a <= 255; a++ {
			for b := 0; b <= 255; b++ {
				fmt.Fprintf(&conf, "AllowedIPs = %d.%d.0.0/16,%d::%d/128\n", a, b, a, b)
			}
		}
		p.wg(t, "setconf", iface, p.secret(t, conf.String()))
		if n := len(strings.Fields(p.wg(t, "show", iface, "allowed-ips"))); n != 255*256*2+1 {
			t.Fatalf("wg show %s allowed-ips: %d fields, want the key and %d prefixes", iface, n, 255*256*2)
		}
	}},
	{"many peers and allowed ips in one request", func(t *testing.T, p *wgPair) {
		// netns.sh: a configuration whose answer spans several UAPI reads.
		iface := uniqueIfaceName(t, "agd")
		d := p.start(t, p.impl.argv(t), iface)
		defer d.Stop(5 * time.Second)
		var conf strings.Builder
		fmt.Fprintf(&conf, "[Interface]\nPrivateKey = %s\n", genKeyPair(t).Private)
		for a := 1; a <= 40; a++ {
			fmt.Fprintf(&conf, "[Peer]\nPublicKey = %s\n", genKeyPair(t).Public)
			for b := 1; b <= 52; b++ {
				fmt.Fprintf(&conf, "AllowedIPs = %d.%d.0.0/16\n", a, b)
			}
		}
		p.wg(t, "setconf", iface, p.secret(t, conf.String()))
		lines := strings.Split(strings.TrimSpace(p.wg(t, "show", iface, "allowed-ips")), "\n")
		if len(lines) != 40 {
			t.Fatalf("wg show %s allowed-ips: %d peers, want 40", iface, len(lines))
		}
		for _, l := range lines {
			if n := len(strings.Fields(l)); n != 53 {
				t.Fatalf("wg show %s allowed-ips: a peer with %d fields, want a key and 52 prefixes: %q", iface, n, l)
			}
		}
	}},
	{"peers without allowed ips", func(t *testing.T, p *wgPair) {
		// netns.sh: 29 peers with none and one with two; showconf works.
		iface := uniqueIfaceName(t, "agd")
		d := p.start(t, p.impl.argv(t), iface)
		defer d.Stop(5 * time.Second)
		var conf strings.Builder
		for range 29 {
			fmt.Fprintf(&conf, "[Peer]\nPublicKey = %s\n", genKeyPair(t).Public)
		}
		fmt.Fprintf(&conf, "[Peer]\nPublicKey = %s\nAllowedIPs = 255.2.3.4/32, abcd::255/128\n", genKeyPair(t).Public)
		p.wg(t, "setconf", iface, p.secret(t, conf.String()))
		out := p.wg(t, "showconf", iface)
		if n := strings.Count(out, "[Peer]"); n != 30 || !strings.Contains(out, "255.2.3.4/32") || !strings.Contains(out, "abcd::255/128") {
			t.Fatalf("wg showconf %s: %d peers, want 30 with the last one's allowed ips:\n%s", iface, n, out)
		}
	}},
}

// addPeer1 gives wg1 its peer wg2 as newWGPair does, at wg2's endpoint as
// the steps have left it ([::1]:9997).
func (p *wgPair) addPeer1(t *testing.T) {
	t.Helper()
	p.wg(t, "set", p.wg1, "peer", p.k2.Public, "preshared-key", p.secret(t, p.psk),
		"allowed-ips", pairAddr2+"/32,"+pairAddr2v6+"/128", "endpoint", "[::1]:9997")
}

// wantEndpoint checks the endpoint iface has for peer.
func (p *wgPair) wantEndpoint(t *testing.T, iface, peer, want string) {
	t.Helper()
	out := strings.TrimSpace(p.wg(t, "show", iface, "endpoints"))
	if out != peer+"\t"+want {
		t.Fatalf("%s: wg show %s endpoints = %q, want %q", p.impl.name, iface, out, peer+"\t"+want)
	}
}

// dumpPeer returns the fields of peer's line in `wg show IFACE dump`.
func (p *wgPair) dumpPeer(t *testing.T, iface, peer string) []string {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(p.wg(t, "show", iface, "dump")), "\n")[1:] {
		if f := strings.Split(l, "\t"); len(f) == 8 && f[0] == peer {
			return f
		}
	}
	t.Fatalf("%s: peer %s not in wg show %s dump", p.impl.name, peer, iface)
	return nil
}

// checkDump checks every field of `wg show wg1 dump` after traffic.
func checkDump(t *testing.T, p *wgPair) {
	out := p.wg(t, "show", p.wg1, "dump")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("wg show %s dump: want the interface and one peer:\n%s", p.wg1, out)
	}
	want := []string{p.k1.Private, p.k1.Public, strconv.Itoa(pairPort1), "off"}
	if got := strings.Split(lines[0], "\t"); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("interface line %q, want %q", got, want)
	}
	f := p.dumpPeer(t, p.wg1, p.k2.Public)
	allowed := strings.Split(f[3], ",")
	if f[1] != p.psk || f[2] != "127.0.0.1:"+strconv.Itoa(pairPort2) || len(allowed) != 2 ||
		!strings.Contains(f[3], pairAddr2+"/32") || !strings.Contains(f[3], pairAddr2v6+"/128") || f[7] != "off" {
		t.Errorf("peer line %q: want psk, endpoint 127.0.0.1:%d, allowed %s/32 and %s/128, keepalive off",
			f, pairPort2, pairAddr2, pairAddr2v6)
	}
	hs, err1 := strconv.ParseInt(f[4], 10, 64)
	rx, err2 := strconv.ParseInt(f[5], 10, 64)
	tx, err3 := strconv.ParseInt(f[6], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || time.Since(time.Unix(hs, 0)) > 5*time.Minute || rx <= 0 || tx <= 0 {
		t.Errorf("peer line %q: want a recent handshake and bytes both ways", f)
	}
}
