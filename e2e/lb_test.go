//go:build linux

package e2e

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// nftLB is a UDP load balancer in a router namespace that behaves like an
// AWS NLB with client IP preservation or Global Accelerator: clients send
// to one virtual address (vip), nftables DNATs each flow to a gateway, the
// gateway sees the client's real source address, and conntrack rewrites
// its replies so that they come from the virtual address. A flow stays on
// its gateway while its conntrack entry lives, as a real LB's flow table
// does; moving it means changing where new flows from the client go and
// deleting its conntrack entry, as a rebalancing or failing-over LB would.
//
// Flows go by source address: the map flows pins a source to a gateway
// (the tests pin the client and the replaying attacker's addresses), and
// every other source is spread over all gateways by a hash of its address
// and port, like an NLB's flow hash. A gateway's datagram from the client
// port that belongs to no LB flow (no DNAT in its conntrack entry) is
// dropped and counted (stray): behind an NLB such a packet could not reach
// the client from the virtual address.
type nftLB struct {
	ns      *netns
	vip     string
	port    int
	targets []string          // every gateway's address, in hash order
	pins    map[string]string // source address → gateway, as in the map flows
}

const lbTable = "agt_lb"

// newNftLB installs the load balancer's table in ns (ip_forward on) for
// vip:port in front of targets; it is removed with the namespace.
func newNftLB(t testing.TB, ns *netns, vip string, port int, targets []string, wanDev string) *nftLB {
	t.Helper()
	if err := ns.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	var hash []string
	for i, a := range targets {
		hash = append(hash, fmt.Sprintf("%d : %s", i, a))
	}
	rules := fmt.Sprintf(`table ip %[1]s {
	map flows {
		type ipv4_addr : ipv4_addr
	}
	chain balance {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %[2]s udp dport %[3]d dnat to ip saddr map @flows
		ip daddr %[2]s udp dport %[3]d dnat to jhash ip saddr . udp sport mod %[4]d map { %[5]s }
	}
	chain replies {
		type filter hook forward priority filter; policy accept;
		iifname "%[6]s" udp sport %[3]d ct status dnat accept
		iifname "%[6]s" udp sport %[3]d counter name "stray" drop
	}
	counter stray {
	}
}
`, lbTable, vip, port, len(targets), strings.Join(hash, ", "), wanDev)
	lb := &nftLB{ns: ns, vip: vip, port: port, targets: targets, pins: make(map[string]string)}
	lb.nft(t, rules)
	return lb
}

// nft runs `nft -f -` with script in the LB's namespace.
func (lb *nftLB) nft(t testing.TB, script string) {
	t.Helper()
	if out, err := lb.ns.Exec(cmdTimeout, "sh", "-c", "nft -f - <<'EOF'\n"+script+"EOF\n"); err != nil {
		t.Fatalf("nft in %s: %v: %s\n%s", lb.ns.Name, err, out, script)
	}
}

// endpoint is where clients send: the virtual address.
func (lb *nftLB) endpoint() string { return net.JoinHostPort(lb.vip, strconv.Itoa(lb.port)) }

// pin sends new flows from src to target (replacing an earlier pin)
// without touching established ones.
func (lb *nftLB) pin(t testing.TB, src, target string) {
	t.Helper()
	// nft 1.0.6 refuses to add a key that exists with another value and
	// has no "destroy": delete the pin this LB made before, if any.
	script := fmt.Sprintf("add element ip %s flows { %s : %s }\n", lbTable, src, target)
	if _, ok := lb.pins[src]; ok {
		script = fmt.Sprintf("delete element ip %s flows { %s }\n", lbTable, src) + script
	}
	lb.nft(t, script)
	lb.pins[src] = target
}

// move sends src's flows to target from now on: the pin, then the
// conntrack entries of its flows to the virtual address are deleted so
// that its next datagram is balanced afresh.
func (lb *nftLB) move(t testing.TB, src, target string) {
	t.Helper()
	lb.pin(t, src, target)
	lb.forget(t, src)
}

// forget deletes the conntrack entries of src's UDP flows to the virtual
// address (conntrack exits 1 when there was none, which is fine).
func (lb *nftLB) forget(t testing.TB, src string) {
	t.Helper()
	out, err := lb.ns.Exec(cmdTimeout, "conntrack", "-D", "-p", "udp", "-s", src, "-d", lb.vip, "--dport", strconv.Itoa(lb.port))
	if err != nil && !strings.Contains(out, "0 flow entries have been deleted") {
		t.Fatalf("conntrack -D for %s: %v: %s", src, err, out)
	}
}

// target is the gateway conntrack sends src's current flow to, "" when
// it has none.
func (lb *nftLB) target(t testing.TB, src string) string {
	t.Helper()
	out, _ := lb.ns.Exec(cmdTimeout, "conntrack", "-L", "-p", "udp", "-s", src, "-d", lb.vip, "--dport", strconv.Itoa(lb.port))
	// orig: src=C dst=VIP ... reply: src=GATEWAY dst=C ...
	m := regexp.MustCompile(`dst=` + regexp.QuoteMeta(lb.vip) + `\s.*?src=(\S+)`).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return m[1]
}

// stray is how many datagrams from a gateway's client port the LB dropped
// because they belonged to no flow of the LB.
func (lb *nftLB) stray(t testing.TB) int64 {
	t.Helper()
	out := lb.ns.mustExec(t, "nft", "list", "counter", "ip", lbTable, "stray")
	m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("nft list counter stray: %s", out)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}
