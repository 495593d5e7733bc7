//go:build linux

package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The AMI boot test boots the image the Packer template builds, as far as
// that can be done without AWS: a Debian 12 root file system from
// Debian's packages (mmdebstrap), images/provision.sh applied to it as
// Packer applies it, and images/cloud-init/user-data.yaml given to
// cloud-init through a NoCloud seed, with only the values an operator
// fills in changed. systemd runs as PID 1 in a podman container joined to
// the gw namespace of the usual topology; a stand-in for IMDSv2 and SSM
// Parameter Store answers at 169.254.169.254 inside that namespace (an
// address on its loopback), so the first-boot script and the AWS CLI run
// unchanged. Everything is checked from outside: the unit's state and
// journal through systemctl/journalctl, /readyz from gw, and a stock
// WireGuard client in cli reaching the server in srv.
const (
	// amiSuite is Debian 12, which the Packer template starts from.
	amiSuite = "bookworm"
	// amiDrain is ANYGUARD_DRAIN_TIMEOUT in the test's user data.
	amiDrain = 4 * time.Second
	// amiRegion, amiInstance and amiVPC are what the IMDS stand-in says.
	amiRegion   = "eu-test-1"
	amiInstance = "i-0e2e0000000000a01"
	amiVPC      = "10.1.0.0/16"
	amiMAC      = "02:00:5e:00:53:01"
	amiRole     = "anyguard-e2e"
	amiKeyID    = "ASIAE2ETESTKEY000001"
	// amiTag is the join tag; the EC2 stand-in reports this instance and
	// amiPeer as running with it.
	amiTag  = "anyguard-cluster=e2e"
	amiPeer = "192.0.2.77"
	// imdsAddr is IMDS's address; the SSM stand-in listens on ssmPort.
	imdsAddr = "169.254.169.254"
	ssmPort  = "1080"
	// amiBootTimeout bounds boot plus cloud-init (Python, the AWS CLI).
	amiBootTimeout = 4 * time.Minute
)

// amiPackages make the root file system: what a Debian 12 cloud image has
// that the gateway's first boot uses (systemd, cloud-init, locales, curl,
// dbus for systemd-analyze security) plus the AWS CLI, which provision.sh
// would otherwise install from the network.
var amiPackages = []string{"systemd", "systemd-sysv", "dbus", "locales", "cloud-init", "curl", "ca-certificates", "awscli", "iproute2", "procps", "netbase"}

// amiTools are what the AMI tests run besides podman; `make deps` installs
// them.
var amiTools = []string{"mmdebstrap", "shellcheck", "packer", "cloud-init", "systemd-analyze"}

func requireAMITools(t testing.TB) {
	t.Helper()
	for _, tool := range amiTools {
		if _, err := exec.LookPath(tool); err != nil {
			requireE2E(t, tool+" is not installed (run `make deps` as root)")
		}
	}
}

func TestAMIBoot(t *testing.T) {
	pm := requirePodman(t)
	requireAMITools(t)
	tp := newTopology(t, topologyOptions{srvDefaultRoute: true})
	bin := anyguardBinary(t)
	checkStatic(t, bin)
	base := amiBaseImage(t, pm, debianRootfs(t))

	gwKeys, alice, bob := genKeyPair(t), genKeyPair(t), genKeyPair(t)
	gossip := genKeyPair(t)
	ssm := map[string]string{
		"/anyguard/prod/clients.key": gwKeys.Private,
		"/anyguard/prod/gossip.key":  gossip.Private,
		"/anyguard/prod/peers.txt":   "alice " + alice.Public + " " + clientAddr + "/32",
	}
	aws := startAWSStandIn(t, tp.gw, ssm)
	image := buildAMIImage(t, pm, base, bin)

	c := newContainer(t, pm, "ami")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.exec(t, 30*time.Second, "sh", "-c",
				"journalctl -b --no-pager -o short-monotonic | tail -n 150; echo '--- cloud-init-output.log ---'; tail -n 60 /var/log/cloud-init-output.log")
			t.Logf("--- journal of %s ---\n%s", c.name, out)
			t.Logf("--- AWS stand-in requests ---\n%s", aws.requests())
		}
	})
	// SYS_ADMIN: systemd sets up the unit's sandbox (ProtectSystem= and
	// the other mount namespaces) only with it, and skips it with a
	// warning otherwise; NET_ADMIN and /dev/net/tun for the TUN egress.
	args := []string{"run", "-d", "--name", c.name, "--systemd=always",
		"--cap-add", "NET_ADMIN,SYS_ADMIN", "--device", "/dev/net/tun",
		"--network", "ns:/var/run/netns/" + tp.gw.Name, "--hostname", "gw",
		image, "/lib/systemd/systemd"}
	start := time.Now()
	pm.mustOutput(t, cmdTimeout, args...)

	// First boot: cloud-init runs the user data, which runs the
	// bootstrap script and starts the unit; `systemctl start` of a
	// Type=notify unit returns once READY=1 arrived.
	out, err := c.exec(t, amiBootTimeout, "cloud-init", "status", "--wait", "--long")
	if err != nil || !strings.Contains(out, "status: done") {
		t.Fatalf("cloud-init status --wait: %v\n%s", err, out)
	}
	t.Logf("booted and cloud-init done in %v", time.Since(start).Round(time.Millisecond))
	unit := c.unit(t)
	if unit["ActiveState"] != "active" || unit["SubState"] != "running" || unit["Type"] != "notify" || unit["StatusText"] != "ready" {
		t.Fatalf("anyguard.service after first boot: %v; want active/running, Type=notify, StatusText=ready (sent with READY=1)", unit)
	}
	if code, body, err := httpGet(tp.gw, containerHealthAddr, "/readyz?verbose"); err != nil || code != 200 {
		t.Fatalf("/readyz: %d %v: %s", code, err, body)
	}
	pid := unit["MainPID"]

	t.Run("provisioned", func(t *testing.T) { checkAMIProvisioned(t, c, pid) })
	t.Run("first-boot", func(t *testing.T) { checkAMIFirstBoot(t, c, aws) })
	t.Run("bootstrap-failures", func(t *testing.T) { checkAMIBootstrapFailures(t, c) })
	t.Run("join-from-tag", func(t *testing.T) { checkAMIJoinFromTag(t, c) })

	cli := startWGQuickClient(t, tp.cli, alice, gwKeys.Public, gatewayEndpoint())
	t.Run("ping", func(t *testing.T) { checkPing(t, tp) })

	t.Run("reload", func(t *testing.T) {
		// A new client in Parameter Store: the bootstrap script fetches
		// it again, `systemctl reload` hands it to the running gateway.
		aws.set("/anyguard/prod/peers.txt", "bob "+bob.Public+" "+clientAddr+"/32")
		if out, err := c.exec(t, 2*time.Minute, "anyguard-bootstrap"); err != nil {
			t.Fatalf("anyguard-bootstrap again: %v\n%s", err, out)
		}
		if out, err := c.exec(t, cmdTimeout, "systemctl", "reload", "anyguard"); err != nil {
			t.Fatalf("systemctl reload: %v\n%s", err, out)
		}
		waitFor(t, nil, 10*time.Second, "StatusText after the reload", func() bool {
			return c.unit(t)["StatusText"] == "ready, configuration reloaded"
		})
		if u := c.unit(t); u["MainPID"] != pid || u["ActiveState"] != "active" {
			t.Fatalf("after reload: %v, want the same process (%s) still active", u, pid)
		}
	})
	// The new client, which the gateway knew nothing of at boot, gets
	// through (alice, whose address bob took over, leaves first).
	cli.down(t)
	startWGQuickClient(t, tp.cli, bob, gwKeys.Public, gatewayEndpoint())
	t.Run("ping-new-client", func(t *testing.T) { checkPing(t, tp) })

	t.Run("stop", func(t *testing.T) { checkAMIStop(t, c, tp) })
	t.Run("broken-config", func(t *testing.T) { checkAMIBrokenConfig(t, c) })
}

// checkAMIProvisioned checks what provision.sh set up, in the booted
// system: the gateway's user and capabilities, the key files, the unit
// as systemd-analyze sees it.
func checkAMIProvisioned(t *testing.T, c *container, pid string) {
	out := c.mustExec(t, "sh", "-c", "ps -o user= -p "+pid+"; grep -E '^Cap(Eff|Amb|Bnd):' /proc/"+pid+"/status")
	// CAP_NET_ADMIN is bit 12: effective, ambient and bounding set hold
	// it and nothing else.
	for _, want := range []string{"anyguard\n", "CapEff:\t0000000000001000", "CapAmb:\t0000000000001000", "CapBnd:\t0000000000001000"} {
		if !strings.Contains(out, want) {
			t.Errorf("gateway process %s: no %q in\n%s", pid, want, out)
		}
	}
	out = c.mustExec(t, "sh", "-c", "stat -c '%n %U:%G %a' /etc/anyguard /etc/anyguard/keys /etc/anyguard/keys/* /etc/anyguard/anyguard.yaml /etc/anyguard/peers.txt")
	for _, want := range []string{
		"/etc/anyguard root:anyguard 750", "/etc/anyguard/keys anyguard:anyguard 700",
		"/etc/anyguard/keys/clients.key anyguard:anyguard 600", "/etc/anyguard/keys/gossip.key anyguard:anyguard 600",
		"/etc/anyguard/keys/backbone.key anyguard:anyguard 600",
		"/etc/anyguard/anyguard.yaml root:anyguard 640", "/etc/anyguard/peers.txt root:anyguard 640",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("stat: no %q in\n%s", want, out)
		}
	}
	out = c.mustExec(t, "cat", "/etc/sysctl.d/60-anyguard.conf")
	for _, want := range []string{"net.ipv4.ip_forward = 1", "net.ipv4.conf.all.rp_filter = 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("sysctl.d/60-anyguard.conf lacks %q", want)
		}
	}
	if out, err := c.exec(t, cmdTimeout, "systemd-analyze", "verify", "/etc/systemd/system/anyguard.service"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := c.exec(t, cmdTimeout, "systemd-analyze", "security", "--no-pager", "anyguard.service")
	exposure := ""
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, "Overall exposure level") {
			exposure = strings.TrimSpace(line)
		}
	}
	if err != nil || exposure == "" {
		t.Errorf("systemd-analyze security: %v\n%s", err, out)
	}
	t.Logf("systemd-analyze security in the image: %s", exposure)
}

// checkAMIFirstBoot checks what the bootstrap script made of the
// metadata and Parameter Store.
func checkAMIFirstBoot(t *testing.T, c *container, aws *awsStandIn) {
	cfg := c.mustExec(t, "cat", "/etc/anyguard/anyguard.yaml")
	for _, want := range []string{
		"name: " + amiInstance, "region: " + amiRegion, "advertise: " + gwUnderlay + ":7946",
		`prefixes: ["` + amiVPC + `"]`, "join: []", "drain_timeout: " + amiDrain.String(), `admin_listen: "127.0.0.1:8081"`,
		"peers_file: /etc/anyguard/peers.txt", "private_key_file: /etc/anyguard/keys/backbone.key",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("anyguard.yaml lacks %q:\n%s", want, cfg)
		}
	}
	// The AWS CLI signed its calls with the instance role's credentials,
	// which it could only have had from IMDS.
	if n := aws.signedCalls(); n < 3 {
		t.Errorf("%d signed SSM calls, want 3 (two keys and the peers)", n)
	}
}

// checkAMIBootstrapFailures runs the bootstrap script again with settings
// it must refuse: a parameter that does not exist, an unknown secret
// source, a missing setting. Each must fail with a message saying so and
// leave the configuration and the peers file as they were.
func checkAMIBootstrapFailures(t *testing.T, c *container) {
	const files = "/etc/anyguard/anyguard.yaml /etc/anyguard/peers.txt /etc/anyguard/keys/backbone.key"
	before := c.mustExec(t, "sh", "-c", "sha256sum "+files)
	for _, tc := range []struct{ sed, want string }{
		{"s|^ANYGUARD_PEERS_NAME=.*|ANYGUARD_PEERS_NAME=/anyguard/prod/missing|", "fetching /anyguard/prod/missing from ssm failed"},
		{"s|^ANYGUARD_SECRET_SOURCE=.*|ANYGUARD_SECRET_SOURCE=vault|", "ANYGUARD_SECRET_SOURCE=vault: want ssm or secretsmanager"},
		{"/^ANYGUARD_CLIENT_ADDRESS=/d", "set ANYGUARD_CLIENT_ADDRESS"},
	} {
		script := "sed '" + tc.sed + "' /etc/anyguard/bootstrap.env > /tmp/bad.env && ANYGUARD_BOOTSTRAP_ENV=/tmp/bad.env anyguard-bootstrap"
		out, err := c.exec(t, 2*time.Minute, "sh", "-c", script)
		if err == nil || !strings.Contains(out+err.Error(), tc.want) {
			t.Errorf("bootstrap with %s: %v, want a failure saying %q\n%s", tc.sed, err, tc.want, out)
		}
	}
	if after := c.mustExec(t, "sh", "-c", "sha256sum "+files); after != before {
		t.Errorf("failed bootstrap runs changed files:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// checkAMIJoinFromTag runs the bootstrap script with ANYGUARD_JOIN_TAG
// and a fixed list, and checks the join list it writes: the tagged
// instances less this one, then the fixed addresses. (The booted gateway
// starts alone: a join list of gateways that do not exist would keep it
// unready.) The configuration is put back afterwards.
func checkAMIJoinFromTag(t *testing.T, c *container) {
	script := "cp -p /etc/anyguard/anyguard.yaml /tmp/keep.yaml && " +
		"sed -e 's|^ANYGUARD_JOIN_TAG=.*|ANYGUARD_JOIN_TAG=" + amiTag + "|' -e 's|^ANYGUARD_JOIN=.*|ANYGUARD_JOIN=192.0.2.88,192.0.2.89:7947|' " +
		"/etc/anyguard/bootstrap.env > /tmp/tag.env && ANYGUARD_BOOTSTRAP_ENV=/tmp/tag.env anyguard-bootstrap >/dev/null && " +
		"grep '^  join:' /etc/anyguard/anyguard.yaml; rc=$?; cp -p /tmp/keep.yaml /etc/anyguard/anyguard.yaml; exit $rc"
	out, err := c.exec(t, 2*time.Minute, "sh", "-c", script)
	if err != nil {
		t.Fatalf("bootstrap with a join tag: %v\n%s", err, out)
	}
	const want = `  join: ["` + amiPeer + `:7946", "192.0.2.88:7946", "192.0.2.89:7947"]`
	if strings.TrimSpace(out) != strings.TrimSpace(want) {
		t.Errorf("join list from the tag and ANYGUARD_JOIN:\n%s\nwant\n%s", out, want)
	}
}

// checkAMIStop checks `systemctl stop`: /readyz answers 503 at once while
// the client's traffic still flows, and the gateway exits 0 after the
// drain window, the unit inactive and successful.
func checkAMIStop(t *testing.T, c *container, tp *topology) {
	start := time.Now()
	stopped := make(chan error, 1)
	go func() {
		out, err := c.pm.output(time.Minute, "exec", c.name, "systemctl", "stop", "anyguard")
		if err != nil {
			err = fmt.Errorf("%w: %s", err, out)
		}
		stopped <- err
	}()
	draining := false
	for !draining && time.Since(start) < amiDrain/2 {
		code, _, err := httpGet(tp.gw, containerHealthAddr, "/readyz")
		draining = err == nil && code == 503
		time.Sleep(20 * time.Millisecond)
	}
	if !draining {
		t.Errorf("/readyz did not answer 503 within %v of systemctl stop", amiDrain/2)
	} else if out, err := tp.cli.Exec(cmdTimeout, "ping", "-n", "-c", "1", "-W", "1", srvAddr); err != nil {
		t.Errorf("ping through the draining gateway: %v\n%s", err, out)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("systemctl stop: %v", err)
	}
	took := time.Since(start)
	u := c.unit(t)
	t.Logf("systemctl stop took %v: %v", took.Round(time.Millisecond), u)
	if took < amiDrain {
		t.Errorf("systemctl stop returned after %v, within the drain window %v", took, amiDrain)
	}
	if u["ActiveState"] != "inactive" || u["Result"] != "success" || u["ExecMainStatus"] != "0" {
		t.Errorf("after systemctl stop: %v, want inactive, Result=success, ExecMainStatus=0", u)
	}
	journal := c.mustExec(t, "journalctl", "-u", "anyguard", "-o", "cat", "--no-pager")
	for _, want := range []string{"signal terminated: draining", "drain: window over", "drain: done", "gateway stopped"} {
		if !strings.Contains(journal, want) {
			t.Errorf("journal lacks %q", want)
		}
	}
}

// checkAMIBrokenConfig starts the unit on a configuration with a bad
// value: it must end failed, not restart forever, with the gateway's
// one-line error naming the field in the journal.
func checkAMIBrokenConfig(t *testing.T, c *container) {
	c.mustExec(t, "sed", "-i", "s|^  address: 10.99.0.1/16$|  address: 10.99.0.1/33|", "/etc/anyguard/anyguard.yaml")
	since := strings.TrimSpace(c.mustExec(t, "date", "+%Y-%m-%d %H:%M:%S"))
	if out, err := c.exec(t, time.Minute, "systemctl", "start", "anyguard"); err == nil {
		t.Fatalf("systemctl start with a broken configuration succeeded:\n%s", out)
	}
	waitFor(t, nil, 30*time.Second, "anyguard.service failed", func() bool { return c.unit(t)["ActiveState"] == "failed" })
	u := c.unit(t)
	if u["Result"] != "exit-code" && u["Result"] != "start-limit-hit" {
		t.Errorf("broken configuration: %v, want Result exit-code or start-limit-hit", u)
	}
	journal := c.mustExec(t, "journalctl", "-u", "anyguard", "-o", "cat", "--no-pager", "--since", since)
	const prefix = "anyguard run: config /etc/anyguard/anyguard.yaml: clients.address"
	var errLines []string
	for line := range strings.SplitSeq(journal, "\n") {
		if strings.HasPrefix(line, "anyguard run:") {
			errLines = append(errLines, line)
		}
	}
	if len(errLines) == 0 {
		t.Fatalf("journal has no error of anyguard run:\n%s", journal)
	}
	for _, line := range errLines {
		if !strings.HasPrefix(line, prefix) || !strings.Contains(line, `"10.99.0.1/33"`) || !strings.HasSuffix(line, ")") {
			t.Errorf("journal: %q, want one line starting %q naming the value and its line", line, prefix)
		}
	}
	t.Logf("journal: %s (%d starts)", errLines[0], len(errLines))
}

// exec runs a command in the container and returns its combined output.
func (c *container) exec(t testing.TB, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	out, err := c.pm.output(timeout, append([]string{"exec", c.name}, args...)...)
	return out, err
}

func (c *container) mustExec(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.exec(t, cmdTimeout, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// unit returns properties of anyguard.service from systemctl show.
func (c *container) unit(t testing.TB) map[string]string {
	t.Helper()
	out := c.mustExec(t, "systemctl", "show", "anyguard.service",
		"-p", "ActiveState,SubState,Result,Type,StatusText,MainPID,ExecMainStatus,NRestarts")
	m := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(line, "=")
		m[k] = v
	}
	return m
}

// debianMirror returns the Debian mirror configured for apt, the only one
// the CI machines reach.
func debianMirror() (string, error) {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for stanza := range strings.SplitSeq(string(b), "\n\n") {
			var uri string
			suite := false
			for line := range strings.SplitSeq(stanza, "\n") {
				k, v, _ := strings.Cut(line, ":")
				switch strings.TrimSpace(k) {
				case "URIs":
					uri = strings.Fields(v + " ")[0]
				case "Suites":
					suite = strings.Contains(" "+v+" ", " "+amiSuite+" ")
				}
			}
			if uri != "" && suite {
				return uri, nil
			}
		}
	}
	files, _ = filepath.Glob("/etc/apt/sources.list.d/*.list")
	for _, f := range append([]string{"/etc/apt/sources.list"}, files...) {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if fs := strings.Fields(line); len(fs) >= 3 && fs[0] == "deb" && !strings.HasPrefix(fs[1], "[") && fs[2] == amiSuite {
				return fs[1], nil
			}
		}
	}
	return "", fmt.Errorf("no apt source for Debian %s in /etc/apt/sources.list{,.d}", amiSuite)
}

// amiCacheDir keeps the root file system between runs; ANYGUARD_E2E_CACHE
// overrides it.
func amiCacheDir() string {
	if d := os.Getenv("ANYGUARD_E2E_CACHE"); d != "" {
		return d
	}
	return "/var/cache/anyguard-e2e"
}

// debianRootfs returns a tarball of the Debian root file system, made by
// mmdebstrap once and kept in amiCacheDir under a hash of everything that
// goes into it.
func debianRootfs(t testing.TB) string {
	t.Helper()
	mirror, err := debianMirror()
	if err != nil {
		t.Fatal(err)
	}
	version, err := runCmd(cmdTimeout, "mmdebstrap", "--version")
	if err != nil {
		t.Fatalf("mmdebstrap --version: %v: %s", err, version)
	}
	args := []string{"--variant=minbase", "--include=" + strings.Join(amiPackages, ","), amiSuite}
	h := sha256.Sum256([]byte(strings.Join(append(args, mirror, strings.TrimSpace(version)), "\x00")))
	key := hex.EncodeToString(h[:8])
	dir := amiCacheDir()
	path := filepath.Join(dir, "debian-"+amiSuite+"-"+key+".tar")
	if _, err := os.Stat(path); err == nil {
		t.Logf("root file system from the cache: %s", path)
		return path
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := fmt.Sprintf("%s.%d.tmp.tar", strings.TrimSuffix(path, ".tar"), os.Getpid())
	defer os.Remove(tmp)
	start := time.Now()
	out, err := runCmd(15*time.Minute, "mmdebstrap", append(append([]string{"--quiet", "--format=tar"}, args...), tmp, mirror)...)
	if err != nil {
		t.Fatalf("mmdebstrap %s %s %s: %v\n%s", strings.Join(args, " "), tmp, mirror, err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	// Only the current root file system is kept.
	old, _ := filepath.Glob(filepath.Join(dir, "debian-*.tar"))
	for _, f := range old {
		if f != path && !strings.Contains(f, ".tmp.") {
			os.Remove(f)
		}
	}
	t.Logf("mmdebstrap made %s from %s in %v", path, mirror, time.Since(start).Round(time.Second))
	return path
}

// amiBaseImage imports the root file system as a podman image, once: its
// tag carries the tarball's hash, and later runs reuse it.
func amiBaseImage(t testing.TB, pm *podman, tarball string) string {
	t.Helper()
	key := strings.TrimSuffix(filepath.Base(tarball), ".tar")
	tag := "localhost/anyguard-e2e-rootfs:" + key
	if _, err := pm.output(cmdTimeout, "image", "exists", tag); err == nil {
		return tag
	}
	// Only the current one is kept.
	out, _ := pm.output(cmdTimeout, "images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/anyguard-e2e-rootfs")
	for _, old := range strings.Fields(out) {
		if old != tag {
			pm.output(cmdTimeout, "rmi", old)
		}
	}
	start := time.Now()
	pm.mustOutput(t, buildTimeout, "import", "--quiet", tarball, tag)
	t.Logf("imported %s as %s in %v", tarball, tag, time.Since(start).Round(time.Millisecond))
	return tag
}

// amiUserData is images/cloud-init/user-data.yaml with the settings an
// operator fills in set for the test: no EC2 tag query (one gateway), the
// VPC's prefixes from IMDS, a short drain, the SSM stand-in's endpoint.
func amiUserData(t testing.TB, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "images", "cloud-init", "user-data.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, r := range [][2]string{
		{"ANYGUARD_JOIN_TAG=anyguard-cluster=prod", "ANYGUARD_JOIN_TAG="},
		{"ANYGUARD_DRAIN_TIMEOUT=30s", "ANYGUARD_DRAIN_TIMEOUT=" + amiDrain.String()},
		{"ANYGUARD_AWS_ENDPOINT_URL=", "ANYGUARD_AWS_ENDPOINT_URL=http://" + net.JoinHostPort(imdsAddr, ssmPort)},
	} {
		if strings.Count(s, "      "+r[0]+"\n") != 1 {
			t.Fatalf("user-data.yaml: no line %q to set for the test", r[0])
		}
		s = strings.Replace(s, "      "+r[0]+"\n", "      "+r[1]+"\n", 1)
	}
	return s
}

// buildAMIImage is the image build: the files Packer uploads, provision.sh
// run on them as root (twice, to hold it to being repeatable), and (the test's own layer) the NoCloud seed with
// the user data and two stand-ins for what an EC2 host has: a cloud-init
// datasource and no network setup of its own (the test's namespace is the
// network), and /dev/net/tun mode 0666, which udev sets on a real host.
func buildAMIImage(t testing.TB, pm *podman, base, bin string) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	copyFile(t, bin, filepath.Join(dir, "anyguard"), 0o755)
	for _, f := range []string{"anyguard.service", "anyguard-bootstrap", "provision.sh"} {
		copyFile(t, filepath.Join(root, "images", f), filepath.Join(dir, f), 0o644)
	}
	files := map[string]string{
		"user-data": amiUserData(t, root),
		"meta-data": "instance-id: " + amiInstance + "\nlocal-hostname: gw\n",
		"90-e2e.cfg": "# e2e/ami_test.go: the NoCloud seed only; the test's namespace is the network;\n" +
			"# no locale: update-locale fails on this minimal root file system (invalid locale\n" +
			"# settings: LANG=en_US.UTF-8), which makes cloud-init report an error.\n" +
			"datasource_list: [NoCloud, None]\nnetwork: {config: disabled}\nlocale: false\n",
		"e2e-tun.conf": "# e2e/ami_test.go: what udev does on a host.\nz /dev/net/tun 0666 - - -\n",
		"Containerfile": "FROM " + base + "\n" +
			"COPY anyguard anyguard.service anyguard-bootstrap provision.sh /tmp/anyguard/\n" +
			// Twice: provision.sh says running it again is harmless.
			"RUN sh /tmp/anyguard/provision.sh /tmp/anyguard && sh /tmp/anyguard/provision.sh /tmp/anyguard && rm -rf /tmp/anyguard\n" +
			"COPY user-data meta-data /var/lib/cloud/seed/nocloud/\n" +
			"COPY 90-e2e.cfg /etc/cloud/cloud.cfg.d/\n" +
			"COPY e2e-tun.conf /etc/tmpfiles.d/\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tag := fmt.Sprintf("%s:%d-%d", imagePrefix, os.Getpid(), podmanSeq.Add(1))
	start := time.Now()
	pm.mustOutput(t, buildTimeout, "build", "--network", "none", "-f", filepath.Join(dir, "Containerfile"), "-t", tag, dir)
	t.Cleanup(func() {
		if _, err := pm.output(cmdTimeout, "rmi", "-f", tag); err != nil {
			t.Errorf("removing image: %v", err)
		}
	})
	t.Logf("built image %s (provision.sh applied) in %v", tag, time.Since(start).Round(time.Millisecond))
	return tag
}

// awsStandIn answers IMDSv2 on imdsAddr:80 and SSM GetParameter on
// imdsAddr:ssmPort, inside one namespace.
type awsStandIn struct {
	mu     sync.Mutex
	params map[string]string
	log    []string
	signed int
	token  string
	secret string // the role's session token
}

func startAWSStandIn(t testing.TB, ns *netns, params map[string]string) *awsStandIn {
	t.Helper()
	a := &awsStandIn{params: params, token: "e2e-imds-token-" + genKeyPair(t).Public[:8], secret: "e2e-session-" + genKeyPair(t).Public[:8]}
	ns.ip(t, "address", "add", imdsAddr+"/32", "dev", "lo")
	for _, l := range []struct {
		port string
		h    http.HandlerFunc
	}{{"80", a.imds}, {ssmPort, a.ssm}} {
		var ln net.Listener
		err := ns.Do(func() error {
			var err error
			ln, err = net.Listen("tcp", net.JoinHostPort(imdsAddr, l.port))
			return err
		})
		if err != nil {
			t.Fatalf("AWS stand-in: %v", err)
		}
		srv := &http.Server{Handler: l.h, ReadHeaderTimeout: 5 * time.Second}
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close(); <-done })
	}
	return a
}

func (a *awsStandIn) record(r *http.Request, code int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.log = append(a.log, fmt.Sprintf("%s %s %s -> %d", r.Method, r.Host, r.URL.Path, code))
}

func (a *awsStandIn) requests() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.log, "\n")
}

func (a *awsStandIn) signedCalls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.signed
}

func (a *awsStandIn) set(name, value string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.params[name] = value
}

// imds is IMDSv2: a token from PUT /latest/api/token, required on every
// GET.
func (a *awsStandIn) imds(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" {
		if r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
			a.record(r, 400)
			http.Error(w, "missing ttl", http.StatusBadRequest)
			return
		}
		a.record(r, 200)
		io.WriteString(w, a.token)
		return
	}
	if r.Method != http.MethodGet || r.Header.Get("X-aws-ec2-metadata-token") != a.token {
		a.record(r, 401)
		http.Error(w, "IMDSv2 token required", http.StatusUnauthorized)
		return
	}
	creds, _ := json.Marshal(map[string]string{
		"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": amiKeyID, "SecretAccessKey": "e2e-secret",
		"Token": a.secret, "Expiration": time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339),
		"LastUpdated": time.Now().UTC().Format(time.RFC3339),
	})
	md := map[string]string{
		"placement/region": amiRegion,
		"instance-id":      amiInstance,
		"local-ipv4":       gwUnderlay,
		"mac":              amiMAC,
		"network/interfaces/macs/" + amiMAC + "/vpc-ipv4-cidr-blocks": amiVPC,
		"iam/security-credentials/":                                   amiRole,
		"iam/security-credentials/" + amiRole:                         string(creds),
	}
	v, ok := md[strings.TrimPrefix(r.URL.Path, "/latest/meta-data/")]
	if !ok {
		a.record(r, 404)
		http.NotFound(w, r)
		return
	}
	a.record(r, 200)
	io.WriteString(w, v)
}

// ec2 is EC2's DescribeInstances (query protocol) for the join tag: this
// instance and amiPeer, if the filters are the tag and running.
func (a *awsStandIn) ec2(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("Action") != "DescribeInstances" {
		a.record(r, 400)
		http.Error(w, "only DescribeInstances", http.StatusBadRequest)
		return
	}
	key, value, _ := strings.Cut(amiTag, "=")
	f := r.PostForm
	if f.Get("Filter.1.Name") != "tag:"+key || f.Get("Filter.1.Value.1") != value ||
		f.Get("Filter.2.Name") != "instance-state-name" || f.Get("Filter.2.Value.1") != "running" {
		a.record(r, 400)
		http.Error(w, "unexpected filters: "+f.Encode(), http.StatusBadRequest)
		return
	}
	a.record(r, 200)
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>e2e</requestId><reservationSet>
<item><reservationId>r-0e2e1</reservationId><ownerId>123456789012</ownerId><instancesSet>
<item><instanceId>%s</instanceId><privateIpAddress>%s</privateIpAddress></item>
<item><instanceId>i-0e2e0000000000a02</instanceId><privateIpAddress>%s</privateIpAddress></item>
</instancesSet></item></reservationSet></DescribeInstancesResponse>`, amiInstance, gwUnderlay, amiPeer)
}

// ssm is Parameter Store's GetParameter (JSON 1.1 protocol). It checks
// that the call was signed with the role's credentials from IMDS.
func (a *awsStandIn) ssm(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, typ, msg string) {
		a.record(r, code)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential="+amiKeyID+"/") ||
		r.Header.Get("X-Amz-Security-Token") != a.secret {
		fail(400, "UnrecognizedClientException", "not signed with the instance role's credentials")
		return
	}
	if r.Header.Get("X-Amz-Target") == "" {
		a.ec2(w, r)
		return
	}
	if r.Header.Get("X-Amz-Target") != "AmazonSSM.GetParameter" {
		fail(400, "UnknownOperationException", "only GetParameter")
		return
	}
	var req struct {
		Name           string
		WithDecryption bool
	}
	if err := json.NewDecoder(bufio.NewReader(io.LimitReader(r.Body, 1<<16))).Decode(&req); err != nil {
		fail(400, "ValidationException", err.Error())
		return
	}
	a.mu.Lock()
	a.signed++
	v, ok := a.params[req.Name]
	a.mu.Unlock()
	if !ok || !req.WithDecryption {
		fail(400, "ParameterNotFound", req.Name)
		return
	}
	a.record(r, 200)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(map[string]any{"Parameter": map[string]any{
		"Name": req.Name, "Type": "SecureString", "Value": v, "Version": 1,
	}})
}
