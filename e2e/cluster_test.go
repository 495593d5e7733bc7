//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	bnetns "github.com/anyguard/anyguard/bench/netns"
)

// The two-region topology of TestClusterTwoRegions. Every address exists
// only inside the test's namespaces.
//
//	          cli (stock client: wg-quick + wireguard-go, 192.0.2.100)
//	           │
//	wan: bridge br0, 192.0.2.0/24 (the internet, and the gateways' WAN:
//	           │                    gossip and backbone ride it too)
//	   ┌───────┴────────┐
//	  gwA 192.0.2.1    gwB 192.0.2.2     anyguard run, tun egress
//	   │ 10.1.0.0/24     │ 10.2.0.0/24
//	  srvA 10.1.0.10    srvB 10.2.0.10   default route via their gateway
const (
	clusterCli     = "192.0.2.100"
	clusterClients = "10.99.0.0/16, 10.1.0.0/16, 10.2.0.0/16"
	gossipPort     = 7946
	backbonePort   = 51821
	healthPort     = 8080
	// adminPort is health.admin_listen's default port, on loopback in
	// the gateway's namespace: /status and /metrics are there.
	adminPort = 8081
)

// clusterRegion is one region: a gateway namespace and its private network
// with one server.
type clusterRegion struct {
	name     string // gateway node name, gwA or gwB
	region   string
	wan      string // the gateway's address on the WAN
	lan      string // the gateway's address on the region network
	prefix   string // the region network, served by the gateway
	srvAddr  string
	gw, srv  *netns
	iperf    *proc  // iperf3 -s on srv
	iface    string // tun_name and UAPI name of the gateway
	proc     *proc
	ownerLog string // what the gateway logs when alice's owner changes
	config   string // the configuration file it runs with
}

func (r *clusterRegion) endpoint() string { return net.JoinHostPort(r.wan, strconv.Itoa(clientPort)) }

// newClusterTopology builds the namespaces, the WAN bridge and the region
// networks, and starts iperf3 -s on both servers.
func newClusterTopology(t *testing.T) (cli *netns, regions [2]*clusterRegion) {
	t.Helper()
	requirePrivileged(t)
	start := time.Now()
	regions = [2]*clusterRegion{
		{name: "gwA", region: "region-a", wan: "192.0.2.1", lan: "10.1.0.1", prefix: "10.1.0.0/16", srvAddr: "10.1.0.10"},
		{name: "gwB", region: "region-b", wan: "192.0.2.2", lan: "10.2.0.1", prefix: "10.2.0.0/16", srvAddr: "10.2.0.10"},
	}
	wan := newNetns(t, "wan")
	cli = newNetns(t, "cli")
	addBridge(t, wan, "br0")
	attachToBridge(t, wan, "br0", cli, "cli", "eth0", clusterCli+"/24")
	for i, r := range regions {
		r.gw = newNetns(t, strings.ToLower(r.name))
		r.srv = newNetns(t, "srv"+string(rune('a'+i)))
		attachToBridge(t, wan, "br0", r.gw, strings.ToLower(r.name), "eth0", r.wan+"/24")
		r.gw.ip(t, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0", "netns", r.srv.Name)
		r.gw.ip(t, "address", "add", r.lan+"/24", "dev", "lan0")
		r.srv.ip(t, "address", "add", r.srvAddr+"/24", "dev", "lan0")
		r.gw.ip(t, "link", "set", "lan0", "up")
		r.srv.ip(t, "link", "set", "lan0", "up")
		// The region network sends everything else, the client network
		// included, to its gateway: no SNAT anywhere.
		r.srv.ip(t, "route", "add", "default", "via", r.lan)
		if err := r.gw.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
			t.Fatal(err)
		}
		r.iperf = startProc(t, "iperf3-server-"+r.name, nil,
			r.srv.Command("iperf3", "-s", "-B", r.srvAddr, "-p", strconv.Itoa(bnetns.IperfPort), "--forceflush")...)
		if err := bnetns.WaitTCPListening(r.srv.NS, r.iperf.Proc, bnetns.IperfPort, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("namespaces: cli=%s wan=%s gwA=%s srvA=%s gwB=%s srvB=%s; ready in %v", cli.Name, wan.Name,
		regions[0].gw.Name, regions[0].srv.Name, regions[1].gw.Name, regions[1].srv.Name, time.Since(start).Round(time.Millisecond))
	return cli, regions
}

// addBridge makes an up bridge named name in ns.
func addBridge(t testing.TB, ns *netns, name string) {
	t.Helper()
	ns.ip(t, "link", "add", name, "type", "bridge")
	ns.ip(t, "link", "set", name, "up")
}

// attachToBridge connects ns to bridge br in host with a veth: port on
// the bridge's side, dev carrying addr (a prefix, "" for none) in ns.
func attachToBridge(t testing.TB, host *netns, br string, ns *netns, port, dev, addr string) {
	t.Helper()
	host.ip(t, "link", "add", port, "type", "veth", "peer", "name", dev, "netns", ns.Name)
	host.ip(t, "link", "set", port, "master", br, "up")
	if addr != "" {
		ns.ip(t, "address", "add", addr, "dev", dev)
	}
	ns.ip(t, "link", "set", dev, "up")
}

// startClusterGateway starts `anyguard run` in r.gw with the clients
// section every gateway shares, its own backbone key, and the gossip key;
// it joins the peers (every gateway lists the others, the way an operator
// would configure them). It returns once the process started; readiness
// (UAPI socket, client port, joined) is waited for separately. The
// configuration stays in r.config, so that r can be restarted under the
// same name (restartClusterGateway).
func startClusterGateway(t *testing.T, r *clusterRegion, clientKeys keyPair, alicePub, gossipKey string, peers ...*clusterRegion) {
	t.Helper()
	bin := anyguardBinary(t)
	dir := t.TempDir()
	r.iface = uniqueIfaceName(t, "ag"+strings.ToLower(r.name[2:]))
	backbone := genKeyPair(t)
	var join []string
	for _, p := range peers {
		join = append(join, fmt.Sprintf(`"%s:%d"`, p.wan, gossipPort))
	}
	config := fmt.Sprintf(`node: {name: %s, region: %s}
clients:
  private_key_file: %s
  listen_port: %d
  address: 10.99.0.1/16
  mtu: 1420
  peers:
    - name: alice
      public_key: %s
      allowed_ips: [%s/32]
egress:
  mode: tun
  tun_name: %s
  queues: 2
  prefixes: [%s]
health:
  listen: ":%d"
  tcp_listen: "off"
  drain_timeout: 0s
backbone:
  private_key_file: %s
  listen_port: %d
cluster:
  bind: %s:%d
  advertise: %s:%d
  join: [%s]
  secret_key_file: %s
  profile: lan
log: {level: info}
`, r.name, r.region,
		writeSecret(t, dir, "clients.key", clientKeys.Private+"\n"), clientPort, alicePub, clientAddr,
		r.iface, r.prefix, healthPort,
		writeSecret(t, dir, "backbone.key", backbone.Private+"\n"), backbonePort,
		r.wan, gossipPort, r.wan, gossipPort, strings.Join(join, ", "),
		writeSecret(t, dir, "gossip.key", gossipKey+"\n"))
	r.config = writeSecret(t, dir, r.name+".yaml", config)
	r.proc = startProc(t, "anyguard-"+r.name, nil, "ip", "netns", "exec", r.gw.Name, bin, "run", "--config", r.config)
}

// restartClusterGateway starts r again with the configuration it was
// first started with: the same name, keys and interface. The process
// lives until owner (the test that made the topology) ends.
func restartClusterGateway(t *testing.T, owner testing.TB, r *clusterRegion) {
	t.Helper()
	r.proc = startProcOwned(t, owner, "anyguard-"+r.name+"-restarted", nil, "ip", "netns", "exec", r.gw.Name, anyguardBinary(t), "run", "--config", r.config)
}

// waitClusterGateway waits until r's UAPI socket exists, it listens on
// the client port and /readyz answers 200 (joined, data path proven).
func waitClusterGateway(t *testing.T, r *clusterRegion) {
	t.Helper()
	waitFor(t, r.proc, 20*time.Second, r.name+"'s UAPI socket", func() bool { return fileExists(uapiSocket(r.iface)) })
	waitUDPListening(t, r.gw, r.proc, clientPort, 5*time.Second)
	waitFor(t, r.proc, 20*time.Second, r.name+" ready (/readyz 200: joined, data path proven)", func() bool {
		code, _, err := httpGetIn(r.gw, "/readyz")
		return err == nil && code == http.StatusOK
	})
}

// TestClusterTwoRegions: two regions, each a namespace with an anyguard
// gateway (tun egress) and a server; a stock client (wg-quick) reaches
// both servers through either gateway, and each region's network reaches
// the client through its own gateway, which forwards over the backbone to
// the gateway that owns the client (no SNAT).
//
// The client moves twice, by both mechanisms a gateway learns it from:
//
//  1. wg set ... endpoint gwB, as a roaming client or an anycast front
//     would move it. The client keeps its session and its UDP source
//     address and port (one socket, one address on the shared WAN), so gwB
//     receives transport packets it cannot decrypt from the endpoint that
//     gwA's ownership record names: gwB recognises the flow, initiates a
//     handshake at once and claims the client when its traffic decrypts
//     (fast recovery, reason takeover). The stock client's own rekey (≥ 15 s)
//     is never needed.
//  2. wg-quick down and up with the configuration's endpoint, gwA: a new
//     wireguard-go with a new source port, which the cluster has never seen,
//     so only the client's own handshake initiation can move it (reason
//     handshake): a gateway claims a client the moment it sees its
//     authenticated initiation.
//
// After each move both servers are reached from the client (ping, TCP),
// both servers reach the client (ping), the other gateway's ping goes over
// the backbone (its backbone tx counter grows; it holds no session with
// the client), both gateways log the owner change and /status names it.
func TestClusterTwoRegions(t *testing.T) {
	testStart := time.Now()
	cli, regions := newClusterTopology(t)
	gwA, gwB := regions[0], regions[1]
	clientKeys, alice, gossip := genKeyPair(t), genKeyPair(t), genKeyPair(t)

	start := time.Now()
	startClusterGateway(t, gwA, clientKeys, alice.Public, gossip.Private, gwB)
	startClusterGateway(t, gwB, clientKeys, alice.Public, gossip.Private, gwA)
	for _, r := range regions {
		waitClusterGateway(t, r)
	}
	t.Logf("gateways started, joined and ready in %v", time.Since(start).Round(time.Millisecond))

	c := startWGQuickClientRoutes(t, cli, alice, clientKeys.Public, gwA.endpoint(), clusterClients)

	// Phase 1: the client on gwA. Its first packet's handshake makes gwA
	// the owner, and gwB learns it by gossip.
	phase := time.Now()
	reached := waitPing(t, cli, gwA.srvAddr, 5*time.Second)
	waitOwner(t, regions, "gwA", "handshake", 5*time.Second)
	t.Logf("phase 1: client up on gwA: reached region A after %v, owner gwA everywhere after %v",
		reached.Round(time.Millisecond), time.Since(phase).Round(time.Millisecond))
	checkClusterPaths(t, c, regions, gwA, gwB, alice.Public)

	// Phase 2: move the endpoint to gwB (same source address and port).
	// Traffic flowing at the move is what makes gwB notice it.
	c.setEndpoint(t, clientKeys.Public, gwB.endpoint())
	phase = time.Now()
	reached = waitPing(t, cli, gwB.srvAddr, 5*time.Second)
	waitOwner(t, regions, "gwB", "takeover", 5*time.Second)
	t.Logf("phase 2: wg set endpoint gwB: client reached region B after %v, owner gwB everywhere after %v",
		reached.Round(time.Millisecond), time.Since(phase).Round(time.Millisecond))
	checkClusterPaths(t, c, regions, gwB, gwA, alice.Public)

	// Phase 3: the client restarts (wg-quick down, up) with its configured
	// endpoint gwA: a new source port, so a new handshake is what moves it.
	c.down(t)
	c.up(t)
	phase = time.Now()
	reached = waitPing(t, cli, gwB.srvAddr, 5*time.Second)
	waitOwner(t, regions, "gwA", "handshake", 5*time.Second)
	t.Logf("phase 3: wg-quick down/up on gwA: client reached region B after %v, owner gwA everywhere after %v",
		reached.Round(time.Millisecond), time.Since(phase).Round(time.Millisecond))
	checkClusterPaths(t, c, regions, gwA, gwB, alice.Public)

	for _, r := range regions {
		if !r.proc.Alive() {
			t.Errorf("%s exited during the test: %v", r.name, r.proc.Err())
		}
	}
	t.Logf("whole test (without cleanup) %v", time.Since(testStart).Round(time.Millisecond))
}

// checkClusterPaths checks every path while owner holds the client: the
// client reaches both servers (ping and a TCP transfer), the owner's
// server reaches the client directly and the other server through its own
// gateway, the backbone and the owner, with the other gateway holding no
// session with the client (only the owner transmits to it).
func checkClusterPaths(t *testing.T, c *wgQuickClient, regions [2]*clusterRegion, owner, other *clusterRegion, alicePub string) {
	t.Helper()
	cli := c.ns
	for _, r := range regions {
		out, err := cli.Exec(cmdTimeout, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", r.srvAddr)
		if err != nil {
			t.Fatalf("ping %s (%s) from the client, owner %s: %v\n%s", r.srvAddr, r.region, owner.name, err, out)
		}
		res, err := bnetns.Iperf(context.Background(), cli.NS, r.srvAddr, time.Second)
		if err != nil {
			t.Fatalf("TCP from the client to %s (%s), owner %s: %v", r.srvAddr, r.region, owner.name, err)
		}
		rx := res.End.SumReceived
		if rx.Bytes <= 0 {
			t.Fatalf("TCP to %s: nothing received: %+v", r.srvAddr, rx)
		}
		// No SNAT: the server sees the client's own address.
		if !strings.Contains(r.iperf.Log(), "Accepted connection from "+clientAddr) {
			t.Errorf("%s's iperf3 server did not see a connection from %s (SNAT?):\n%s", r.srvAddr, clientAddr, r.iperf.Log())
		}
		t.Logf("client → %s via %s: ping %s; TCP %.0f Mbit/s", r.srvAddr, owner.name, lastLines(out, 1), rx.BitsPerSecond/1e6)
	}
	for _, r := range regions {
		// The iperf3 runs above may still have a late segment in flight
		// to the other region: start counting once the backbone is quiet.
		before := quietBackboneTx(t, r)
		sessionBefore := clientTx(t, other, alicePub)
		out, err := r.srv.Exec(cmdTimeout, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", clientAddr)
		if err != nil {
			t.Fatalf("ping the client %s from %s (%s), owner %s: %v\n%s", clientAddr, r.srvAddr, r.region, owner.name, err, out)
		}
		sent := backboneTx(t, r) - before
		via := "directly"
		if r != owner {
			via = "over the backbone to " + owner.name
			if sent < 3 {
				t.Errorf("%s → client: %s forwarded %d packets over the backbone, want ≥ 3 (the echo requests)", r.srvAddr, r.name, sent)
			}
		} else if sent != 0 {
			t.Errorf("%s → client: the owner %s sent %d packets into the backbone, want 0", r.srvAddr, r.name, sent)
		}
		if tx := clientTx(t, other, alicePub); tx != 0 || sessionBefore != 0 {
			t.Errorf("%s, which does not own the client, transmitted to it (wg show tx %d B, then %d B)", other.name, sessionBefore, tx)
		}
		t.Logf("%s → client via %s %s: %s", r.srvAddr, r.name, via, lastLines(out, 1))
	}
	checkStatusOwner(t, owner, other)
	// Nothing pulled the client back to the other gateway meanwhile: a
	// stock client roams to whichever gateway last sent it an
	// authenticated packet.
	out := c.ns.mustExec(t, "wg", "show", c.iface, "endpoints")
	if f := strings.Fields(out); len(f) != 2 || f[1] != owner.endpoint() {
		t.Errorf("client's endpoint after the checks: %q, want %s (owner %s)", strings.TrimSpace(out), owner.endpoint(), owner.name)
	}
}

// waitPing pings addr from ns every 50 ms until one answers, and returns
// how long that took.
func waitPing(t *testing.T, ns *netns, addr string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	secs := strconv.Itoa(int(timeout.Round(time.Second) / time.Second))
	out, err := ns.Exec(timeout+cmdTimeout, "ping", "-n", "-c", "1", "-i", "0.05", "-w", secs, addr)
	if err != nil {
		t.Fatalf("ping %s from %s: no answer within %v: %v\n%s", addr, ns.Name, timeout, err, out)
	}
	return time.Since(start)
}

// ownerChange matches a gateway's log line for a change of alice's owner.
var ownerChange = regexp.MustCompile(`msg="client owner changed" client=alice from=\S+ to=(\S+) version=(\d+) reason=(\S+)`)

// waitOwner waits until both gateways' latest log line about alice's owner
// names owner with reason.
func waitOwner(t *testing.T, regions [2]*clusterRegion, owner, reason string, timeout time.Duration) {
	t.Helper()
	for _, r := range regions {
		waitFor(t, r.proc, timeout, fmt.Sprintf("%s to log owner %s (%s)", r.name, owner, reason), func() bool {
			m := ownerChange.FindAllStringSubmatch(r.proc.Log(), -1)
			if len(m) == 0 {
				return false
			}
			last := m[len(m)-1]
			r.ownerLog = last[0]
			return last[1] == owner && last[3] == reason
		})
		t.Logf("%s: %s", r.name, r.ownerLog)
	}
}

// checkStatusOwner reads both gateways' /status: both name the owner
// (the cluster's view, not just which gateway holds a session).
func checkStatusOwner(t *testing.T, owner, other *clusterRegion) {
	t.Helper()
	for _, r := range []*clusterRegion{owner, other} {
		st, err := readStatus(r)
		if err != nil {
			t.Fatal(err)
		}
		got := st.owner("alice")
		t.Logf("%s /status: alice's owner %q", r.name, got)
		if got != owner.name {
			t.Errorf("%s /status: alice's owner %q, want %q", r.name, got, owner.name)
		}
	}
}

// gatewayStatus is the part of a gateway's /status the tests read.
type gatewayStatus struct {
	Members []struct {
		Name  string `json:"name"`
		State string `json:"state"`
		Self  bool   `json:"self"`
	} `json:"members"`
	Clients []struct {
		Name     string `json:"name"`
		Owner    string `json:"owner"`
		Endpoint string `json:"endpoint"`
	} `json:"clients"`
}

// readStatus fetches and decodes r's /status.
func readStatus(r *clusterRegion) (gatewayStatus, error) {
	var st gatewayStatus
	code, body, err := httpGetIn(r.gw, "/status")
	if err != nil || code != http.StatusOK {
		return st, fmt.Errorf("%s /status: %d %v: %s", r.name, code, err, body)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("%s /status: %w: %s", r.name, err, body)
	}
	return st, nil
}

// owner is the owner /status names for the client called name, or
// "(name missing)".
func (st gatewayStatus) owner(name string) string {
	for _, c := range st.Clients {
		if c.Name == name {
			return c.Owner
		}
	}
	return "(" + name + " missing)"
}

// alive lists the members /status shows alive, itself included.
func (st gatewayStatus) alive() []string {
	var names []string
	for _, m := range st.Members {
		if m.State == "alive" {
			names = append(names, m.Name)
		}
	}
	return names
}

// quietBackboneTx waits until r's backbone tx count stands still for
// 300 ms (at most 3 s) and returns it.
func quietBackboneTx(t *testing.T, r *clusterRegion) int64 {
	t.Helper()
	n := backboneTx(t, r)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		time.Sleep(300 * time.Millisecond)
		m := backboneTx(t, r)
		if m == n {
			break
		}
		n = m
	}
	return n
}

// backboneTx is the gateway's count of packets its router sent into the
// backbone (anyguard_packets_total{path="backbone",direction="tx"}).
func backboneTx(t *testing.T, r *clusterRegion) int64 {
	t.Helper()
	code, body, err := httpGetIn(r.gw, "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("%s /metrics: %d %v", r.name, code, err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "anyguard_packets_total{") ||
			!strings.Contains(line, `path="backbone"`) || !strings.Contains(line, `direction="tx"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("%s /metrics: %q: %v", r.name, line, err)
		}
		return int64(v)
	}
	t.Fatalf("%s /metrics: no backbone tx series:\n%s", r.name, body)
	return 0
}

// clientTx is how many bytes the gateway's client device has sent to the
// client over its current session (wg show dump); 0 when the client is no
// peer of the device (clients become peers when they connect, and stop
// being peers when another gateway takes them over).
func clientTx(t *testing.T, r *clusterRegion, pub string) int64 {
	t.Helper()
	peers, _, err := bnetns.WGShowDump(r.gw.NS, r.iface)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.PublicKey == pub {
			return p.TxBytes
		}
	}
	return 0
}

// httpGetIn fetches path from the gateway in ns: /status, /metrics and the
// status page from the admin listener (health.admin_listen's default), the
// rest from the health listener.
func httpGetIn(ns *netns, path string) (int, []byte, error) {
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	port := healthPort
	if p, _, _ := strings.Cut(path, "?"); p == "/status" || p == "/metrics" || p == "/" {
		port = adminPort
	}
	resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// setEndpoint points the client's peer at a new endpoint with wg set, as a
// roaming client does; its session and socket stay.
func (c *wgQuickClient) setEndpoint(t *testing.T, peerPub, endpoint string) {
	t.Helper()
	c.ns.mustExec(t, "wg", "set", c.iface, "peer", peerPub, "endpoint", endpoint)
}
