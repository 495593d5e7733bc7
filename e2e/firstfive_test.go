//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The first five minutes, as README.md tells them: `make image`, one
// `podman run` with three environment variables and no configuration
// file, one `podman exec ... anyguard client add alice`, and alice's stock
// client (wg-quick in the cli namespace) reaches the private side. Then
// the same volume across a restart keeps the gateway's keys and alice.

// firstFiveEnv are the README's three variables; the endpoint is the
// gateway's address in the test's underlay.
func firstFiveEnv() []string {
	return []string{
		"ANYGUARD_CLIENTS_ADDRESS=10.99.0.1/24",
		"ANYGUARD_EGRESS_PREFIXES=10.1.0.0/16",
		"ANYGUARD_CLIENTS_ENDPOINT=" + gatewayEndpoint(),
	}
}

// makeImage runs `make image` as the README says, tagged for this run, and
// returns the tag and what make printed. The image is removed when t ends.
func makeImage(t testing.TB, pm *podman) (string, string) {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprintf("%s:%d-%d", imagePrefix, os.Getpid(), podmanSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "image", "IMAGE="+tag, "CONTAINER_TOOL=podman")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+pm.conf)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Cleanup(func() {
		if _, err := pm.output(cmdTimeout, "rmi", "-f", tag); err != nil {
			t.Errorf("removing image: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	t.Logf("make image took %v", time.Since(start).Round(time.Millisecond))
	return tag, string(out)
}

// newVolume names a podman volume for this test and removes it when t
// ends.
func newVolume(t testing.TB, pm *podman) string {
	t.Helper()
	name := fmt.Sprintf("%s%d-v%d", nsPrefix, os.Getpid(), podmanSeq.Add(1))
	t.Cleanup(func() {
		if _, err := pm.output(cmdTimeout, "volume", "rm", "-f", name); err != nil {
			t.Errorf("removing volume: %v", err)
		}
	})
	return name
}

func TestFirstFiveMinutes(t *testing.T) {
	pm := requirePodman(t)
	tp := newTopology(t, topologyOptions{})
	image, made := makeImage(t, pm)
	t.Run("image", func(t *testing.T) { checkImage(t, pm, image, made) })
	volume := newVolume(t, pm)

	start := func(role string) *container {
		c := newContainer(t, pm, role)
		args := []string{"run", "-d", "--name", c.name, "--network", "ns:/var/run/netns/" + tp.gw.Name,
			"--cap-drop=all", "--stop-timeout", strconv.Itoa(int(containerStopTimeout.Seconds())),
			"-v", volume + ":/var/lib/anyguard"}
		for _, e := range firstFiveEnv() {
			args = append(args, "-e", e)
		}
		pm.mustOutput(t, cmdTimeout, append(args, image)...)
		waitContainerReady(t, c, tp.gw, 20*time.Second)
		return c
	}
	c := start("first")
	t.Run("unprivileged", func(t *testing.T) { checkUnprivileged(t, c) })
	gwPub := generatedPublicKey(t, c)

	conf := pm.mustOutput(t, cmdTimeout, "exec", c.name, "anyguard", "client", "add", "alice")
	if !strings.Contains(conf, "PublicKey = "+gwPub+"\n") || !strings.Contains(conf, "Endpoint = "+gatewayEndpoint()+"\n") ||
		!strings.Contains(conf, "Address = 10.99.0.2/32\n") || !strings.Contains(conf, "AllowedIPs = 10.1.0.0/16, 10.99.0.0/24\n") {
		t.Fatalf("client add alice printed:\n%s", conf)
	}
	// Without the tunnel the client has no way to the private side.
	if err := dialFromCli(tp, time.Second); err == nil {
		t.Fatalf("the client reaches %s without the tunnel: the test would prove nothing", srvAddr)
	}
	startWGQuickConf(t, tp.cli, conf)
	checkTCPReaches(t, tp, 20*time.Second)
	// client add's SIGHUP (pid file) made the running gateway reload.
	if logs := c.logs(); !strings.Contains(logs, `msg="configuration reloaded"`) || !strings.Contains(logs, "clients=1 ") {
		t.Errorf("the gateway did not reload after client add:\n%s", logs)
	}

	list := pm.mustOutput(t, cmdTimeout, "exec", c.name, "anyguard", "client", "list")
	if !strings.Contains(list, "alice") || !strings.Contains(list, "/var/lib/anyguard/clients.peers") {
		t.Errorf("client list:\n%s", list)
	}
	// anyguard status asks the admin listener (127.0.0.1:8081 in the
	// container) by default; the health port, published to load
	// balancers, does not list clients.
	status := pm.mustOutput(t, cmdTimeout, "exec", c.name, "anyguard", "status")
	if !strings.Contains(status, "READY") || !strings.Contains(status, "alice") {
		t.Errorf("anyguard status in the container:\n%s", status)
	}
	if code, _, err := httpGet(tp.gw, containerHealthAddr, "/status"); err != nil || code != 404 {
		t.Errorf("/status on health.listen: %d %v, want 404", code, err)
	}
	check := pm.mustOutput(t, cmdTimeout, "exec", c.name, "anyguard", "check")
	if !strings.Contains(check, "private_key: (secret) # from /var/lib/anyguard/clients.key; public key "+gwPub) {
		t.Errorf("anyguard check in the container:\n%s", check)
	}

	// Restart on the same volume: same key, alice still configured, no
	// key generated.
	pm.mustOutput(t, containerStopTimeout+cmdTimeout, "rm", "-f", "-v", "-t", "0", c.name)
	c2 := start("second")
	if logs := c2.logs(); strings.Contains(logs, "generated the client-facing key") {
		t.Errorf("restart generated a new key:\n%s", logs)
	}
	check = pm.mustOutput(t, cmdTimeout, "exec", c2.name, "anyguard", "check")
	if !strings.Contains(check, "public key "+gwPub) || !strings.Contains(check, "# 1 clients, 1 of them from /var/lib/anyguard/clients.peers") {
		t.Errorf("after restart:\n%s", check)
	}
	checkTCPReaches(t, tp, 30*time.Second)
}

// checkImage checks what make image printed and the image's labels and
// user.
func checkImage(t *testing.T, pm *podman, image, made string) {
	m := regexp.MustCompile(`image \S+: (\d+) bytes \(\d+ MB\), (\d+) bytes compressed`).FindStringSubmatch(made)
	if m == nil {
		t.Fatalf("make image printed no size:\n%s", made)
	}
	size, _ := strconv.Atoi(m[1])
	packed, _ := strconv.Atoi(m[2])
	t.Logf("image: %d bytes, %d compressed", size, packed)
	// The limit, as podman image inspect counts (unpacked); make
	// image fails beyond it too (IMAGE_MAX_BYTES).
	const maxImageBytes = 20_000_000
	if size > maxImageBytes || size < 1e6 {
		t.Errorf("image is %d bytes, want at most %d", size, maxImageBytes)
	}
	if inspected := strings.TrimSpace(pm.mustOutput(t, cmdTimeout, "image", "inspect", "--format", "{{.Size}}", image)); inspected != m[1] {
		t.Errorf("podman image inspect says %s bytes, make image printed %s", inspected, m[1])
	}
	out := pm.mustOutput(t, cmdTimeout, "image", "inspect", "--format",
		`{{.Config.User}}|{{index .Config.Labels "org.opencontainers.image.source"}}|{{index .Config.Labels "org.opencontainers.image.version"}}|{{index .Config.Labels "org.opencontainers.image.revision"}}`, image)
	f := strings.Split(strings.TrimSpace(out), "|")
	rev, _ := exec.Command("git", "rev-parse", "HEAD").Output()
	if len(f) != 4 || f[0] != "65532:65532" || f[1] == "" || f[2] == "" || f[3] != strings.TrimSpace(string(rev)) {
		t.Errorf("image user and labels %q; want 65532:65532, a source, a version and revision %s", f, rev)
	}
	ver := pm.mustOutput(t, cmdTimeout, "run", "--rm", "--network", "none", image, "version")
	if !strings.Contains(ver, "anyguard "+f[2]+" (revision "+f[3]+")") {
		t.Errorf("anyguard version in the image: %q, want version %s revision %s", ver, f[2], f[3])
	}
	// The image's binary is built with -tags nodev: bench and demo say
	// where they are instead of running.
	for _, dev := range []string{"bench", "demo"} {
		_, err := pm.output(cmdTimeout, "run", "--rm", "--network", "none", image, dev)
		if err == nil || !strings.Contains(err.Error(), "anyguard "+dev+": not in this binary") || !strings.Contains(err.Error(), "make build") {
			t.Errorf("anyguard %s in the image: %v", dev, err)
		}
	}
}

// checkUnprivileged: the gateway runs as uid 65532 with no capabilities.
func checkUnprivileged(t *testing.T, c *container) {
	out := c.pm.mustOutput(t, cmdTimeout, "top", c.name, "huser", "capeff")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("podman top:\n%s", out)
	}
	f := strings.Fields(lines[1])
	if len(f) < 2 || f[0] != "65532" || f[1] != "none" {
		t.Errorf("gateway process: user and effective capabilities %q, want 65532 and none", f)
	}
}

var pubKeyLog = regexp.MustCompile(`generated the client-facing key; clients use its public key" file=/var/lib/anyguard/clients.key public_key="?([A-Za-z0-9+/=]{44})`)

// generatedPublicKey returns the client-facing public key the container
// logged when it generated the key.
func generatedPublicKey(t *testing.T, c *container) string {
	t.Helper()
	m := pubKeyLog.FindStringSubmatch(c.logs())
	if m == nil {
		t.Fatalf("the container did not log a generated client-facing key:\n%s", c.logs())
	}
	return m[1]
}

// checkTCPReaches opens a TCP connection from the client namespace to the
// private server (its iperf3 port) through the tunnel, retrying until
// timeout: the netstack egress re-originates it from the gateway.
func checkTCPReaches(t testing.TB, tp *topology, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = dialFromCli(tp, 2*time.Second); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("TCP from the client to %s:5201 through the gateway: %v", srvAddr, err)
}

// dialFromCli opens and closes a TCP connection from the client namespace
// to the private server's iperf3 port.
func dialFromCli(tp *topology, timeout time.Duration) error {
	return tp.cli.Do(func() error {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(srvAddr, "5201"), timeout)
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

// TestContainerPublish runs the image as the README does on a host, with
// podman's own network and the client port published with -p, but with
// podman itself started inside the gw namespace: its bridge, NAT and port
// forwarding live there and go when the test ends, and the stock client in
// cli reaches the published port at the gateway's underlay address.
func TestContainerPublish(t *testing.T) {
	pm := requirePodman(t)
	tp := newTopology(t, topologyOptions{})
	image := buildImage(t, pm)
	// Podman's bridge network NATs the container's flows out of gw.
	tp.gw.mustExec(t, "sysctl", "-w", "net.ipv4.ip_forward=1")
	name := fmt.Sprintf("%s%d-c%d-publish", nsPrefix, os.Getpid(), podmanSeq.Add(1))
	podmanIn := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		// nsenter, not ip netns exec: that mounts a sysfs of the
		// namespace, without the cgroup mount runc needs.
		cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/var/run/netns/" + tp.gw.Name, "podman"}, args...)...)
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+pm.conf)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return string(out), fmt.Errorf("podman %s in %s: %w: %s", strings.Join(args, " "), tp.gw.Name, err, stderr.String())
		}
		return string(out), nil
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := podmanIn(cmdTimeout, "logs", name)
			t.Logf("--- podman logs %s ---\n%s", name, out)
		}
		// Removed from inside gw, so that podman tears its network down
		// where it set it up.
		if out, err := podmanIn(cmdTimeout, "rm", "-f", "-v", "-t", "0", "--ignore", name); err != nil {
			t.Errorf("removing container: %v: %s", err, out)
		}
	})
	args := []string{"run", "-d", "--name", name, "-p", fmt.Sprintf("%d:51820/udp", clientPort), "--cap-drop=all",
		"--sysctl", "net.ipv4.ping_group_range=0 2147483647"}
	for _, e := range firstFiveEnv() {
		args = append(args, "-e", e)
	}
	if out, err := podmanIn(cmdTimeout, append(args, image)...); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	conf, err := podmanIn(cmdTimeout, "exec", name, "anyguard", "client", "add", "alice")
	if err != nil {
		t.Fatal(err)
	}
	startWGQuickConf(t, tp.cli, conf)
	checkTCPReaches(t, tp, 30*time.Second)
	checkPing(t, tp)
}
