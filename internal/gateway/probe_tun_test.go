//go:build linux

package gateway_test

import (
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/anyguard/anyguard/internal/gateway"

	"github.com/anyguard/anyguard/internal/testwait"
)

// TestProbeTraversesKernelTUN runs a tun-mode gateway in a network
// namespace of its own (the test re-executes itself under unshare) and
// checks that the readiness probe's echo goes through the kernel TUN and
// that /readyz follows the kernel side: 503 when the TUN loses its address
// or goes down, 200 again when mended.
func TestProbeTraversesKernelTUN(t *testing.T) {
	if !inOwnNetns(t, "TestProbeTraversesKernelTUN", "ip") {
		return
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("link", "set", "lo", "up")
	waitCode := startTUNGateway(t, "agprobe0")
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
	testwait.Until(t, 5*time.Second, "3 probe echoes to cross the TUN each way", func() bool {
		rx, tx := counters()
		return rx >= rx0+3 && tx >= tx0+3
	})

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
