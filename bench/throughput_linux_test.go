//go:build linux

package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/bench/netns"
	"github.com/anyguard/anyguard/internal/e2etest"
)

// TestThroughputSmoke runs the whole harness once, briefly (1 s per test,
// one repetition), with anyguard built from this tree and stock
// wireguard-go built from the module version we embed, and checks that
// every gateway carried traffic and that nothing is left behind.
func TestThroughputSmoke(t *testing.T) {
	if testing.Short() {
		e2etest.Skip(t, "-short given")
	}
	e2etest.RequireRoot(t, "network namespaces and TUN devices")
	netns.AddSbinToPath()
	e2etest.RequireTools(t, "ip", "ss", "wg", "iperf3", "ping")
	dir := t.TempDir()
	ag, wg := filepath.Join(dir, "anyguard"), filepath.Join(dir, "wireguard")
	start := time.Now()
	for _, b := range [][]string{{ag, "../cmd/anyguard"}, {wg, "golang.zx2c4.com/wireguard"}} {
		if out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	t.Logf("built anyguard and stock wireguard-go in %v", time.Since(start).Round(time.Millisecond))

	rep, err := RunThroughput(context.Background(), ThroughputOptions{
		Anyguard: ag, WireguardGo: wg, Duration: time.Second, Reps: 1, Progress: testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != len(AllModes)*len(AllTests) {
		t.Errorf("got %d results, want %d", len(rep.Results), len(AllModes)*len(AllTests))
	}
	for _, r := range rep.Results {
		if r.Gbps <= 0 || r.PPS <= 0 || r.GatewayCPUPGB <= 0 {
			t.Errorf("%s %s: nothing measured: %+v", r.Mode, r.Test, r)
		}
		if r.Mode != ModeStock && r.Ratio <= 0 {
			t.Errorf("%s %s: no ratio to stock", r.Mode, r.Test)
		}
	}
	if rep.Ceilings.VethTCP1Gbps <= 0 || rep.Ceilings.Seal1420GBps <= 0 {
		t.Errorf("ceilings not measured: %+v", rep.Ceilings)
	}
	t.Logf("\n%s", rep.Markdown())
	out, _ := netns.Run(netns.CmdTimeout, "ip", "netns", "list")
	prefix := nsPrefix + strconv.Itoa(os.Getpid()) + "-"
	if strings.Contains(out, prefix) {
		t.Errorf("namespaces left behind:\n%s", out)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
