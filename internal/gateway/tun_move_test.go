//go:build linux

package gateway_test

import (
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/e2etest"
	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/keys"
)

// TestTUNEgressMovedNetns moves a tun-mode gateway's TUN to another network
// namespace (the test re-executes itself under unshare, and makes the other
// namespace itself): /readyz turns 503 as the move takes the interface
// down, and 200 again once the interface is given its address and the
// probe's route and brought up there, which needs the readiness check to
// find the interface where it is and the probe's echo to cross the moved
// TUN.
func TestTUNEgressMovedNetns(t *testing.T) {
	if os.Getenv(inNetnsEnv) == "" {
		e2etest.RequireRoot(t, "a TUN in a network namespace")
		e2etest.RequireTools(t, "unshare")
		cmd := exec.Command("unshare", "--net", "--", os.Args[0], "-test.run=^TestTUNEgressMovedNetns$", "-test.v")
		cmd.Env = append(os.Environ(), inNetnsEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestTUNEgressMovedNetns") {
			t.Fatalf("in a new network namespace: %v\n%s", err, out)
		}
		t.Logf("in a new network namespace:\n%s", out)
		return
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	gwKey, _ := keys.Generate()
	cfg := config.Default()
	cfg.Node.Name = "tun-gw"
	cfg.Clients.PrivateKey = gwKey
	cfg.Clients.ListenPort = 0
	cfg.Clients.UAPI = false
	cfg.Clients.Address = []netip.Prefix{netip.MustParsePrefix("10.99.0.1/16")}
	cfg.Egress.Mode = config.ModeTUN
	cfg.Egress.TunName = "agmove0"
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
	waitCode(http.StatusOK, "at start")

	away := newNetnsHandle(t)
	defer away.Close()
	link, err := netlink.LinkByName("agmove0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(link, int(away)); err != nil {
		t.Fatalf("move the TUN: %v", err)
	}
	waitCode(http.StatusServiceUnavailable, "TUN moved (which takes it down)")

	h, err := netlink.NewHandleAt(away)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	moved, err := h.LinkByName("agmove0")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		what string
		err  error
	}{
		{"address", h.AddrAdd(moved, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 99, 0, 1), Mask: net.CIDRMask(16, 32)}})},
		{"up", h.LinkSetUp(moved)},
		{"probe route", h.RouteReplace(&netlink.Route{LinkIndex: moved.Attrs().Index, Scope: netlink.SCOPE_LINK,
			Dst: &net.IPNet{IP: gateway.ProbeSource4.AsSlice(), Mask: net.CIDRMask(32, 32)}})},
	}
	for _, s := range steps {
		if s.err != nil {
			t.Fatalf("configure the moved TUN: %s: %v", s.what, s.err)
		}
	}
	waitCode(http.StatusOK, "moved TUN configured and up")
}

// newNetnsHandle makes another network namespace and leaves this thread
// where it was.
func newNetnsHandle(t *testing.T) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	home, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer home.Close()
	away, err := netns.New()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	if err := netns.Set(home); err != nil {
		t.Fatal(err) // the thread stays locked: it is in the wrong namespace
	}
	runtime.UnlockOSThread()
	return away
}
