package device

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/anyguard/anyguard/internal/testwait"
)

// linkRecorder collects what a TUN reports through TUNConfig.OnLink.
type linkRecorder chan LinkState

func (r linkRecorder) record(s LinkState) {
	select {
	case r <- s:
	default: // a test that stops reading must not block the watcher
	}
}

// await returns the first reported state that satisfies cond, or false
// after 5 s.
func (r linkRecorder) await(t *testing.T, what string, cond func(LinkState) bool) (LinkState, bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	var last LinkState
	for {
		select {
		case s := <-r:
			if cond(s) {
				return s, true
			}
			last = s
		case <-deadline:
			t.Errorf("timed out waiting for %s; last state reported: %+v", what, last)
			return last, false
		}
	}
}

func netnsIno(t *testing.T, h netns.NsHandle) uint64 {
	t.Helper()
	ino, err := netnsInode(h)
	if err != nil {
		t.Error(err)
	}
	return ino
}

// newAwayNetns makes a second, unnamed namespace and leaves the calling
// (locked) thread where it was.
func newAwayNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	home, err := netns.Get()
	if err != nil {
		t.Fatalf("get netns: %v", err)
	}
	defer home.Close()
	away, err := netns.New()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	if err := netns.Set(home); err != nil {
		t.Fatalf("back to the home netns: %v", err)
	}
	return away
}

// TestTUNFollowsLinkAcrossNetns moves a multi-queue TUN to another
// namespace the way `ip link set NAME netns NS` does and changes it there:
// every change reaches OnLink and Link, SetRoutes acts where the interface
// is, and deleting it there stops the queues' readers.
func TestTUNFollowsLinkAcrossNetns(t *testing.T) {
	inNewNetns(t, func() {
		before := runtime.NumGoroutine()
		rec := make(linkRecorder, 64)
		tn, err := OpenTUN(TUNConfig{Name: "agmove0", Queues: 3, MTU: 1420, StartDown: true, OnLink: rec.record},
			func([][]byte, int) {})
		if err != nil {
			t.Errorf("OpenTUN: %v", err)
			return
		}
		defer tn.Close()
		home, err := netns.Get()
		if err != nil {
			t.Errorf("get netns: %v", err)
			return
		}
		defer home.Close()
		homeIno := netnsIno(t, home)
		if s := tn.Link(); s.Name != "agmove0" || s.Up || s.Running || s.MTU != 1420 || s.Netns != homeIno || s.Index == 0 {
			t.Errorf("state after OpenTUN %+v: want agmove0, down, MTU 1420, in netns %d", s, homeIno)
		}

		away := newAwayNetns(t)
		defer away.Close()
		awayIno := netnsIno(t, away)
		link, err := netlink.LinkByName("agmove0")
		if err != nil {
			t.Errorf("link: %v", err)
			return
		}
		if err := netlink.LinkSetNsFd(link, int(away)); err != nil {
			t.Errorf("move to the other netns: %v", err)
			return
		}
		h, err := netlink.NewHandleAt(away)
		if err != nil {
			t.Errorf("netlink handle: %v", err)
			return
		}
		defer h.Close()
		rec.await(t, "the state in the new namespace", func(s LinkState) bool { return s.Netns == awayIno })
		moved, err := h.LinkByName("agmove0")
		if err != nil {
			t.Errorf("moved link: %v", err)
			return
		}
		if err := h.LinkSetUp(moved); err != nil {
			t.Errorf("set up: %v", err)
			return
		}
		if s, ok := rec.await(t, "up in the new namespace", func(s LinkState) bool { return s.Running }); ok {
			if !s.Up || s.Netns != awayIno || s.Index != moved.Attrs().Index {
				t.Errorf("after up in the new namespace: %+v, want up with index %d in netns %d", s, moved.Attrs().Index, awayIno)
			}
		}
		if err := h.LinkSetMTU(moved, 1280); err != nil {
			t.Errorf("set MTU: %v", err)
			return
		}
		rec.await(t, "MTU 1280", func(s LinkState) bool { return s.MTU == 1280 && s.Running })
		if err := h.LinkSetDown(moved); err != nil { // a rename needs the link down
			t.Errorf("set down: %v", err)
			return
		}
		rec.await(t, "down", func(s LinkState) bool { return !s.Running && !s.Up })
		if err := h.LinkSetName(moved, "agmove1"); err != nil {
			t.Errorf("rename: %v", err)
			return
		}
		rec.await(t, "the new name", func(s LinkState) bool { return s.Name == "agmove1" })
		if tn.Name() != "agmove1" {
			t.Errorf("Name() = %q after the rename, want agmove1", tn.Name())
		}
		if err := h.LinkSetUp(moved); err != nil {
			t.Errorf("set up: %v", err)
			return
		}
		rec.await(t, "up again", func(s LinkState) bool { return s.Running })

		// Routes go where the interface is, under its new name.
		dst := netip.MustParsePrefix("10.79.0.0/24")
		if err := tn.SetRoutes([]netip.Prefix{dst}); err != nil {
			t.Errorf("SetRoutes after the move: %v", err)
		}
		routes, err := h.RouteList(moved, netlink.FAMILY_V4)
		if err != nil {
			t.Errorf("route list: %v", err)
		}
		found := false
		for _, r := range routes {
			found = found || (r.Dst != nil && r.Dst.String() == dst.String())
		}
		if !found {
			t.Errorf("route %s not in the interface's namespace: %v", dst, routes)
		}

		// Back home (with another name), then deleted from there.
		if err := h.LinkSetNsFd(moved, int(home)); err != nil {
			t.Errorf("move back: %v", err)
			return
		}
		rec.await(t, "the state back home", func(s LinkState) bool { return s.Netns == homeIno && s.Name == "agmove1" })
		back, err := netlink.LinkByName("agmove1")
		if err != nil {
			t.Errorf("link back home: %v", err)
			return
		}
		if err := netlink.LinkDel(back); err != nil {
			t.Errorf("delete: %v", err)
			return
		}
		select {
		case <-tn.Stopped():
		case <-time.After(5 * time.Second):
			t.Error("readers still running 5 s after the interface was deleted")
		}
		rec.await(t, "the deletion", func(s LinkState) bool { return s.Index == 0 && !s.Up && s.Name == "agmove1" })
		tn.Close()
		testwait.UntilStacks(t, 5*time.Second, fmt.Sprintf("goroutines back to %d after Close", before), func() bool { return runtime.NumGoroutine() <= before })
	})
}

// TestTUNProbeLink checks the fallback used where the interface's namespace
// cannot be watched: on a multi-queue TUN with virtio headers, as on
// wireguard-go's single queue, an empty write says "up" while the interface
// is up (and "down" while it is down only on kernels that answer EIO; this
// is logged, not required), and tells a deleted interface.
func TestTUNProbeLink(t *testing.T) {
	inNewNetns(t, func() {
		tn, err := OpenTUN(TUNConfig{Name: "agprobe0", Queues: 2, MTU: 1420, StartDown: true}, func([][]byte, int) {})
		if err != nil {
			t.Errorf("OpenTUN: %v", err)
			return
		}
		defer tn.Close()
		link, err := netlink.LinkByName("agprobe0")
		if err != nil {
			t.Errorf("link: %v", err)
			return
		}
		running, err := tn.probeRunning()
		t.Logf("empty write on a down TUN: running %v, err %v (EIO, i.e. down, only on older kernels)", running, err)
		if err := netlink.LinkSetUp(link); err != nil {
			t.Errorf("set up: %v", err)
			return
		}
		if running, err := tn.probeRunning(); err != nil || !running {
			t.Errorf("probe with the link up: running %v, err %v", running, err)
		}
		if err := netlink.LinkDel(link); err != nil {
			t.Errorf("delete: %v", err)
			return
		}
		<-tn.Stopped()
		if _, err := tn.probeRunning(); err != errLinkGone {
			t.Errorf("probe after the interface was deleted: %v, want errLinkGone", err)
		}
		if _, err := net.InterfaceByName("agprobe0"); err == nil {
			t.Error("interface still there")
		}
	})
}
