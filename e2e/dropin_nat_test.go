//go:build linux

package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDropInNAT is the NAT topology of wireguard-go's tests/netns.sh,
// against anyguard interface and stock wireguard-go: ns1's daemon sits
// behind a router (ns0) that SNATs it, with UDP conntrack entries expiring
// after 2 s. ns2 learns ns1's endpoint as the router's address, and ns1's
// persistent keepalive (1 s) keeps the mapping alive, so that ns2 can still
// reach ns1 after the timeout has passed.
func TestDropInNAT(t *testing.T) {
	for _, impl := range wgImpls() {
		t.Run(impl.name, func(t *testing.T) {
			requirePrivileged(t)
			if _, err := exec.LookPath("iptables"); err != nil {
				requireE2E(t, "iptables is missing (make deps installs it)")
			}
			argv := impl.argv(t)
			ns0, ns1, ns2 := newNetns(t, "router"), newNetns(t, "ns1"), newNetns(t, "ns2")
			wg1, wg2 := uniqueIfaceName(t, "agn"), uniqueIfaceName(t, "agn")
			start := func(ns *netns, iface string) *proc {
				d := startProc(t, impl.name+"-"+iface, []string{"LOG_LEVEL=verbose"},
					ns.Command(append(append([]string{}, argv...), "-f", iface)...)...)
				waitFor(t, d, 20*time.Second, "UAPI socket of "+iface, func() bool { return fileExists(uapiSocket(iface)) })
				return d
			}
			d1, d2 := start(ns1, wg1), start(ns2, wg2)
			k1, k2 := genKeyPair(t), genKeyPair(t)
			dir := t.TempDir()
			ns0.mustExec(t, "wg", "set", wg1, "private-key", writeSecret(t, dir, "k1", k1.Private), "listen-port", "10000",
				"peer", k2.Public, "allowed-ips", pairAddr2+"/32")
			ns0.mustExec(t, "wg", "set", wg2, "private-key", writeSecret(t, dir, "k2", k2.Private), "listen-port", "20000",
				"peer", k1.Public, "allowed-ips", pairAddr1+"/32")
			ns1.ip(t, "address", "add", pairAddr1+"/24", "dev", wg1)
			ns2.ip(t, "address", "add", pairAddr2+"/24", "dev", wg2)
			ns1.ip(t, "link", "set", wg1, "up")
			ns2.ip(t, "link", "set", wg2, "up")

			ns0.ip(t, "link", "add", "vethrc", "type", "veth", "peer", "name", "vethc")
			ns0.ip(t, "link", "add", "vethrs", "type", "veth", "peer", "name", "veths")
			ns0.ip(t, "link", "set", "vethc", "netns", ns1.Name)
			ns0.ip(t, "link", "set", "veths", "netns", ns2.Name)
			ns0.ip(t, "address", "add", "192.168.1.1/24", "dev", "vethrc")
			ns0.ip(t, "address", "add", "10.0.0.1/24", "dev", "vethrs")
			ns0.ip(t, "link", "set", "vethrc", "up")
			ns0.ip(t, "link", "set", "vethrs", "up")
			ns1.ip(t, "address", "add", "192.168.1.100/24", "dev", "vethc")
			ns1.ip(t, "link", "set", "vethc", "up")
			ns1.ip(t, "route", "add", "default", "via", "192.168.1.1")
			ns2.ip(t, "address", "add", "10.0.0.100/24", "dev", "veths")
			ns2.ip(t, "link", "set", "veths", "up")
			ns0.mustExec(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "192.168.1.0/24", "-d", "10.0.0.0/24",
				"-j", "SNAT", "--to", "10.0.0.1")
			for _, kv := range [][2]string{{"net.ipv4.ip_forward", "1"},
				{"net.netfilter.nf_conntrack_udp_timeout", "2"}, {"net.netfilter.nf_conntrack_udp_timeout_stream", "2"}} {
				if err := ns0.Sysctl(kv[0], kv[1]); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, nil, 5*time.Second, "the veths to come up", func() bool {
				return strings.Contains(ns1.ip(t, "link", "show", "vethc"), "state UP") &&
					strings.Contains(ns2.ip(t, "link", "show", "veths"), "state UP")
			})

			ns0.mustExec(t, "wg", "set", wg1, "peer", k2.Public, "endpoint", "10.0.0.100:20000", "persistent-keepalive", "1")
			ping := func(ns *netns, dst string) {
				t.Helper()
				waitFor(t, d1, 15*time.Second, "a ping from "+ns.Name+" to "+dst, func() bool {
					_, err := ns.Exec(cmdTimeout, "ping", "-n", "-c", "1", "-W", "1", dst)
					return err == nil && d2.Alive()
				})
			}
			ping(ns1, pairAddr2)
			ping(ns2, pairAddr1)
			if out := strings.TrimSpace(ns0.mustExec(t, "wg", "show", wg2, "endpoints")); out != k1.Public+"\t10.0.0.1:10000" {
				t.Fatalf("%s: wg2 sees ns1 at %q, want the router's 10.0.0.1:10000", impl.name, out)
			}
			// Past the 2 s conntrack timeout: only the keepalives keep the
			// mapping, so this is the one wait that must be a sleep.
			time.Sleep(3 * time.Second)
			if out, err := ns2.Exec(cmdTimeout, "ping", "-n", "-c", "1", "-W", "1", pairAddr1); err != nil {
				t.Fatalf("%s: ns2 cannot reach ns1 behind the NAT after the conntrack timeout: %v\n%s", impl.name, err, out)
			}
		})
	}
}
