package device

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/anyguard/anyguard/internal/e2etest"

	"github.com/anyguard/anyguard/internal/testwait"
)

// netAdminOnlyEnv names, in the re-executed test, the namespace to move
// the TUN to.
const netAdminOnlyEnv = "ANYGUARD_TEST_NET_ADMIN_ONLY"

// TestTUNWithNetAdminOnly runs the TUN as a container grants it: with
// CAP_NET_ADMIN but not CAP_SYS_ADMIN (the test re-executes itself in a new
// network namespace under setpriv). Opening it and following up, MTU and
// down in its own namespace must not need setns. Moved to a namespace it
// cannot enter, it says so and falls back to probing, and Close still
// ends every goroutine.
func TestTUNWithNetAdminOnly(t *testing.T) {
	if os.Getenv(netAdminOnlyEnv) == "" {
		e2etest.RequireRoot(t, "a TUN in a network namespace")
		e2etest.RequireTools(t, "unshare", "setpriv", "ip")
		away := fmt.Sprintf("agtest-caps-%d", os.Getpid())
		if out, err := exec.Command("ip", "netns", "add", away).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v: %s", err, out)
		}
		defer exec.Command("ip", "netns", "del", away).Run()
		cmd := exec.Command("unshare", "--net", "--", "setpriv", "--bounding-set", "-all,+net_admin", "--inh-caps", "-all",
			os.Args[0], "-test.run=^TestTUNWithNetAdminOnly$", "-test.v")
		cmd.Env = append(os.Environ(), netAdminOnlyEnv+"=/var/run/netns/"+away)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestTUNWithNetAdminOnly") {
			t.Fatalf("with CAP_NET_ADMIN only: %v\n%s", err, out)
		}
		t.Logf("with CAP_NET_ADMIN only:\n%s", out)
		return
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "CapEff:\t0000000000001000\n") {
		t.Fatalf("want CAP_NET_ADMIN alone in effect:\n%s", status)
	}
	before := runtime.NumGoroutine()
	rec := make(linkRecorder, 16)
	var logs testwait.Buffer
	tn, err := OpenTUN(TUNConfig{Name: "agcaps0", Queues: 2, MTU: 1420, StartDown: true, OnLink: rec.record,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, func([][]byte, int) {})
	if err != nil {
		t.Fatalf("OpenTUN with CAP_NET_ADMIN only: %v", err)
	}
	defer tn.Close()
	link, err := netlink.LinkByName("agcaps0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	rec.await(t, "up", func(s LinkState) bool { return s.Running })
	if err := netlink.LinkSetMTU(link, 1300); err != nil {
		t.Fatal(err)
	}
	rec.await(t, "MTU 1300", func(s LinkState) bool { return s.MTU == 1300 })
	if err := netlink.LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	rec.await(t, "down", func(s LinkState) bool { return !s.Running })

	away, err := os.Open(os.Getenv(netAdminOnlyEnv))
	if err != nil {
		t.Fatal(err)
	}
	defer away.Close()
	if err := netlink.LinkSetNsFd(link, int(away.Fd())); err != nil {
		t.Fatalf("move the TUN with CAP_NET_ADMIN only: %v", err)
	}
	testwait.NoError(t, 5*time.Second, "word of the fallback after a move out of reach", func() error {
		if l := logs.String(); !strings.Contains(l, "probing it once a second") {
			return fmt.Errorf("log:\n%s", l)
		}
		return nil
	})
	tn.Close() // closing the last queue deletes the interface, wherever it is
	select {
	case <-tn.Stopped():
	case <-time.After(5 * time.Second):
		t.Fatal("readers still running 5 s after Close")
	}
	testwait.UntilStacks(t, 5*time.Second, fmt.Sprintf("goroutines back to %d after Close", before), func() bool { return runtime.NumGoroutine() <= before })
}
