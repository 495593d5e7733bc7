//go:build linux

package gateway_test

import (
	"net"
	"net/http"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/anyguard/anyguard/internal/gateway"
)

// TestTUNEgressMovedNetns moves a tun-mode gateway's TUN to another network
// namespace (the test re-executes itself under unshare, and makes the other
// namespace itself): /readyz turns 503 as the move takes the interface
// down, and 200 again once the interface is given its address and the
// probe's route and brought up there, which needs the readiness check to
// find the interface where it is and the probe's echo to cross the moved
// TUN.
func TestTUNEgressMovedNetns(t *testing.T) {
	if !inOwnNetns(t, "TestTUNEgressMovedNetns") {
		return
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	waitCode := startTUNGateway(t, "agmove0")
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
