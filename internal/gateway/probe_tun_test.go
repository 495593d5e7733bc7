//go:build linux

package gateway_test

import (
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/e2etest"
	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/keys"
)

const inNetnsEnv = "ANYGUARD_TEST_IN_NETNS"

// TestProbeTraversesKernelTUN runs a tun-mode gateway in a network
// namespace of its own (the test re-executes itself under unshare) and
// checks that the readiness probe's echo goes through the kernel TUN and
// that /readyz follows the kernel side: 503 when the TUN loses its address
// or goes down, 200 again when mended.
func TestProbeTraversesKernelTUN(t *testing.T) {
	if os.Getenv(inNetnsEnv) == "" {
		e2etest.RequireRoot(t, "a TUN in a network namespace")
		e2etest.RequireTools(t, "unshare", "ip")
		cmd := exec.Command("unshare", "--net", "--", os.Args[0], "-test.run=^TestProbeTraversesKernelTUN$", "-test.v")
		cmd.Env = append(os.Environ(), inNetnsEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestProbeTraversesKernelTUN") {
			t.Fatalf("in a new network namespace: %v\n%s", err, out)
		}
		t.Logf("in a new network namespace:\n%s", out)
		return
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("link", "set", "lo", "up")

	gwKey, _ := keys.Generate()
	cfg := config.Default()
	cfg.Node.Name = "tun-gw"
	cfg.Clients.PrivateKey = gwKey
	cfg.Clients.ListenPort = 0
	cfg.Clients.UAPI = false
	cfg.Clients.Address = []netip.Prefix{netip.MustParsePrefix("10.99.0.1/16")}
	cfg.Egress.Mode = config.ModeTUN
	cfg.Egress.TunName = "agprobe0"
	cfg.Egress.Queues = 2
	cfg.Health.Listen = "127.0.0.1:0"
	cfg.Health.TCPListen = "off"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(cfg, gateway.Options{ProbeInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	st, srv, err := gw.ServeHealth(gateway.HealthOptions{CheckInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	defer srv.Close()
	waitCode := func(want int, why string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := http.Get("http://" + srv.Addr().String() + "/readyz?verbose")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == want {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz never answered %d (last: %v %v)", why, want, resp, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	counters := func() (rx, tx uint64) {
		t.Helper()
		l, err := netlink.LinkByName("agprobe0")
		if err != nil || l.Attrs().Statistics == nil {
			t.Fatalf("TUN statistics: %v", err)
		}
		return l.Attrs().Statistics.RxPackets, l.Attrs().Statistics.TxPackets
	}
	waitCode(http.StatusOK, "at start")
	// The kernel received echo requests from the TUN and sent replies
	// back into it.
	rx0, tx0 := counters()
	time.Sleep(time.Second)
	if rx, tx := counters(); rx < rx0+3 || tx < tx0+3 {
		t.Fatalf("probe does not cross the TUN: rx %d→%d, tx %d→%d in 1s", rx0, rx, tx0, tx)
	}

	ip("address", "del", "10.99.0.1/16", "dev", "agprobe0")
	waitCode(http.StatusServiceUnavailable, "TUN without its address")
	// Removing the TUN's last address made the kernel flush every route
	// through it, the probe's /32 among them: the gateway stays unready
	// (as clients routed beyond the client network would be cut off too)
	// until both are back.
	ip("address", "add", "10.99.0.1/16", "dev", "agprobe0")
	ip("route", "replace", gateway.ProbeSource4.String()+"/32", "dev", "agprobe0")
	waitCode(http.StatusOK, "address and routes restored")

	ip("link", "set", "agprobe0", "down")
	waitCode(http.StatusServiceUnavailable, "TUN down")
}
