//go:build linux

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/health"
)

// The container tests run the image users run: images/Dockerfile built by
// podman around the static binary, the configuration mounted read-only at
// /etc/anyguard, and the image's own ENTRYPOINT, CMD and HEALTHCHECK. The
// container joins the gw namespace of the usual topology (--network
// ns:PATH) instead of publishing ports, so the stock client in cli reaches
// it at the gateway's underlay address and nothing touches the host's
// network or firewall.
const (
	// containerHealthAddr is where the Dockerfile's HEALTHCHECK asks, so
	// the tests' configs keep health.listen at its default :8080.
	containerHealthAddr = "127.0.0.1:8080"
	// containerAdminAddr is health.admin_listen's default: /status and
	// /metrics, on loopback in the container's (here the gw) namespace.
	containerAdminAddr = "127.0.0.1:8081"
	// containerDrain is health.drain_timeout in the tests' configs, and
	// containerStopTimeout the `podman run --stop-timeout` above it (the
	// default 10 s of podman and docker is below the default 30 s drain).
	containerDrain       = 4 * time.Second
	containerStopTimeout = 20 * time.Second
)

func TestContainerNetstack(t *testing.T) { testContainerMode(t, "netstack") }
func TestContainerTun(t *testing.T)      { testContainerMode(t, "tun") }

// testContainerMode runs the gateway's container with egress mode, checks
// readiness, the image's healthcheck, a stock client's traffic through it
// and a drain on `podman stop`.
func testContainerMode(t *testing.T, mode string) {
	pm := requirePodman(t)
	tp := newTopology(t, topologyOptions{srvDefaultRoute: mode == "tun"})
	image := buildImage(t, pm)
	gwKeys, cliKeys := genKeyPair(t), genKeyPair(t)
	iface := uniqueIfaceName(t, "ag")
	dir := t.TempDir()
	writeSecret(t, dir, "clients.key", gwKeys.Private+"\n")
	writeSecret(t, dir, "anyguard.yaml", fmt.Sprintf(`node: {name: gw1, region: test}
clients:
  private_key_file: /etc/anyguard/clients.key
  listen_port: %d
  address: 10.99.0.1/16
  peers:
    - name: alice
      public_key: %s
      allowed_ips: [%s/32]
egress:
  mode: %s
  tun_name: %s
  queues: 2
  prefixes: [10.1.0.0/16]
health:
  drain_timeout: %s
`, clientPort, cliKeys.Public, clientAddr, mode, iface, containerDrain))

	if mode != "tun" { // tun runs as root, without CAP_DAC_OVERRIDE: root's files
		chownForImage(t, dir)
	}
	c := newContainer(t, pm, mode)
	args := []string{"run", "-d", "--name", c.name,
		"--network", "ns:/var/run/netns/" + tp.gw.Name,
		"--stop-timeout", strconv.Itoa(int(containerStopTimeout.Seconds())),
		"-v", dir + ":/etc/anyguard:ro"}
	if mode == "tun" {
		// As images/Dockerfile says: root in the container (a non-root
		// user's added capabilities are not effective), the capability
		// and the device, and the mode (the image's environment says
		// netstack, and variables win over the file).
		args = append(args, "--user", "0", "--cap-add", "NET_ADMIN", "--device", "/dev/net/tun", "-e", "ANYGUARD_EGRESS_MODE=tun")
	} else {
		// No capability; ICMP through the netstack egress then needs a
		// ping socket for the gateway's group. Docker's default for a
		// container's network namespace (podman's: --sysctl
		// net.ipv4.ping_group_range="0 2147483647"); this container joins
		// the test's namespace, so the test sets it there.
		args = append(args, "--cap-drop=all")
		tp.gw.mustExec(t, "sysctl", "-w", "net.ipv4.ping_group_range=0 2147483647")
	}
	start := time.Now()
	pm.mustOutput(t, cmdTimeout, append(args, image)...)
	waitContainerReady(t, c, tp.gw, 20*time.Second)
	t.Logf("container %s (%s egress) ready in %v: podman %s", c.name, mode, time.Since(start).Round(time.Millisecond),
		strings.Join(append(args, image), " "))

	if mode == "tun" {
		// The TUN the container made lives in the namespace it joined.
		out, err := runCmd(cmdTimeout, "ip", "-n", tp.gw.Name, "-o", "-4", "address", "show", "dev", iface)
		if err != nil || !strings.Contains(out, " 10.99.0.1/16 ") {
			t.Errorf("tun egress: want interface %s with 10.99.0.1/16 in gw, got %v: %s", iface, err, out)
		}
	}
	t.Run("healthcheck", func(t *testing.T) { checkContainerHealthcheck(t, c) })
	startWGQuickClient(t, tp.cli, cliKeys, gwKeys.Public, gatewayEndpoint())
	t.Run("ping", func(t *testing.T) { checkPing(t, tp) })
	t.Run("iperf3-tcp", func(t *testing.T) {
		r := runIperf(t, tp)
		rx := r.End.SumReceived
		t.Logf("TCP: received %.1f Mbit/s", rx.BitsPerSecond/1e6)
		if rx.Bytes <= 0 {
			t.Errorf("TCP: nothing received: %+v", rx)
		}
	})
	t.Run("handshake", func(t *testing.T) { checkContainerHandshake(t, tp.gw) })
	t.Run("stop", func(t *testing.T) { checkContainerStop(t, c, tp) })
}

// waitContainerReady polls /readyz in ns until it answers 200, failing t
// if the container exits or timeout passes first.
func waitContainerReady(t testing.TB, c *container, ns *netns, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for i := 0; ; i++ {
		code, body, err := httpGet(ns, containerHealthAddr, "/readyz?verbose")
		if err == nil && code == 200 {
			return
		}
		last = fmt.Sprintf("%d %v: %s", code, err, strings.TrimSpace(body))
		if i%10 == 9 {
			if s := c.state(t); !s.Running {
				t.Fatalf("container %s exited (%s, code %d) before it was ready; last /readyz: %s", c.name, s.Status, s.ExitCode, last)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s not ready after %v; last /readyz: %s", c.name, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkContainerHealthcheck runs the image's HEALTHCHECK (anyguard
// healthcheck inside the container) and checks podman's verdict.
func checkContainerHealthcheck(t testing.TB, c *container) {
	t.Helper()
	if out, err := c.pm.output(cmdTimeout, "healthcheck", "run", c.name); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if s := c.state(t); s.Health.Status != "healthy" {
		t.Fatalf("podman inspect: health %q, want healthy", s.Health.Status)
	}
}

// checkContainerHandshake checks, from /status and /metrics only, that the
// client alice completed a handshake and sent traffic.
func checkContainerHandshake(t testing.TB, ns *netns) {
	t.Helper()
	code, body, err := httpGet(ns, containerAdminAddr, "/status")
	if err != nil || code != 200 {
		t.Fatalf("/status: %d %v: %s", code, err, body)
	}
	var st health.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v: %s", err, body)
	}
	found := false
	for _, cl := range st.Clients {
		if cl.Name != "alice" {
			continue
		}
		found = true
		if cl.LastHandshake.IsZero() || cl.RxBytes == 0 {
			t.Errorf("/status: client alice: no handshake or no traffic: %+v", cl)
		} else {
			t.Logf("/status: alice handshake %v ago from %s, rx %d B, tx %d B",
				time.Since(cl.LastHandshake).Round(time.Second), cl.Endpoint, cl.RxBytes, cl.TxBytes)
		}
	}
	if !found {
		t.Errorf("/status: client alice missing: %s", body)
	}
	code, body, err = httpGet(ns, containerAdminAddr, "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	const series = `anyguard_handshake_messages_received_total{type="initiation"} `
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, series); ok {
			if n, err := strconv.ParseFloat(v, 64); err != nil || n < 1 {
				t.Errorf("/metrics: %s, want at least 1", line)
			}
			return
		}
	}
	t.Errorf("/metrics: no %s", strings.TrimSpace(series))
}

// checkContainerStop runs `podman stop` (SIGTERM) and checks the drain:
// /readyz turns 503 at once while the client's traffic still flows, and
// after the drain window the gateway exits 0, well before podman would
// resort to SIGKILL.
func checkContainerStop(t testing.TB, c *container, tp *topology) {
	t.Helper()
	start := time.Now()
	stopped := make(chan error, 1)
	go func() {
		_, err := c.pm.output(containerStopTimeout+cmdTimeout, "stop", c.name)
		stopped <- err
	}()
	var draining bool
	for !draining && time.Since(start) < containerDrain/2 {
		code, _, err := httpGet(tp.gw, containerHealthAddr, "/readyz")
		draining = err == nil && code == 503
		time.Sleep(20 * time.Millisecond)
	}
	if !draining {
		t.Errorf("/readyz did not answer 503 within %v of podman stop", containerDrain/2)
	} else if out, err := tp.cli.Exec(cmdTimeout, "ping", "-n", "-c", "1", "-W", "1", srvAddr); err != nil {
		t.Errorf("ping through the draining gateway: %v\n%s", err, out)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	s := c.state(t)
	t.Logf("podman stop took %v; container %s, exit code %d", took.Round(time.Millisecond), s.Status, s.ExitCode)
	if s.Status != "exited" || s.ExitCode != 0 {
		t.Errorf("after podman stop: container %s with exit code %d, want exited with 0", s.Status, s.ExitCode)
	}
	if took < containerDrain || took >= containerStopTimeout {
		t.Errorf("podman stop took %v, want the drain window %v and less than --stop-timeout %v", took, containerDrain, containerStopTimeout)
	}
	logs := c.logs()
	for _, want := range []string{"signal terminated: draining", "drain: started", "drain: window over", "drain: done", "gateway stopped"} {
		if !strings.Contains(logs, want) {
			t.Errorf("podman logs: no %q", want)
		}
	}
}

// TestContainerBadConfig mounts a configuration with a bad field: the
// container must exit 1 with the one-line error naming the field and its
// line as its only output.
func TestContainerBadConfig(t *testing.T) {
	pm := requirePodman(t)
	image := buildImage(t, pm)
	keys := genKeyPair(t)
	dir := t.TempDir()
	writeSecret(t, dir, "clients.key", keys.Private+"\n")
	writeSecret(t, dir, "anyguard.yaml", fmt.Sprintf(`node: {name: gw1, region: test}
clients:
  private_key_file: /etc/anyguard/clients.key
  address: 10.99.0.1/16
  peers:
    - name: alice
      public_key: %s
      allowed_ips: [10.99.0.2/33]
egress:
  mode: netstack
`, keys.Public))
	chownForImage(t, dir)
	const want = `anyguard run: config /etc/anyguard/anyguard.yaml: clients.peers[0].allowed_ips[0]: "10.99.0.2/33" is not a valid IP prefix (line 8)`

	c := newContainer(t, pm, "bad")
	_, err := pm.output(cmdTimeout, "run", "--name", c.name, "--network", "none", "-v", dir+":/etc/anyguard:ro", image)
	// podman run exits with the container's status.
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("podman run with a bad config: %v, want exit status 1", err)
	}
	if s := c.state(t); s.Status != "exited" || s.ExitCode != 1 {
		t.Errorf("podman inspect: container %s with exit code %d, want exited with 1", s.Status, s.ExitCode)
	}
	logs := strings.TrimRight(c.logs(), "\n")
	if logs != want {
		t.Errorf("podman logs:\n%s\nwant exactly:\n%s", logs, want)
	}
}
