package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/wgkey"
)

// TestClusterSmoke runs the cluster benchmark on 3 gateways with a few
// claims and checks that every figure is produced and plausible (not how
// fast: that is the benchmark's job).
func TestClusterSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real gossip for several seconds")
	}
	rep, err := RunCluster(context.Background(), ClusterOptions{
		Sizes: []int{3}, Profiles: []string{"lan"}, Clients: 100,
		Claims: 10, ClaimRate: 50,
		LoadNodes: 3, LoadRate: 50, LoadTime: time.Second,
		FailoverSizes: []int{3}, FailoverTrials: 1,
		Settle: 200 * time.Millisecond, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Convergence) != 1 || len(rep.Gossip) != 1 || len(rep.Failover) != 1 {
		t.Fatalf("want one point of each kind: %+v", rep)
	}
	t.Logf("\n%s", rep.Markdown())
	c := rep.Convergence[0]
	if c.Nodes != 3 || c.Claims != 10 || c.Converged != 10 || c.P50Ms <= 0 || c.P99Ms < c.P50Ms || c.MaxMs < c.P99Ms || c.MaxMs > 5000 {
		t.Errorf("implausible convergence %+v", c)
	}
	g := rep.Gossip[0]
	if g.Rate < 10 || g.ClaimsBps <= 0 || g.IdlePacketBps <= 0 || g.LoadStreamBps < 0 || g.BytesPerClaim <= 0 || g.Records == 0 || g.Convergence.Converged == 0 {
		t.Errorf("implausible gossip %+v", g)
	}
	if f := rep.Failover[0]; f.NotAliveS <= 0 || f.DeadS < f.NotAliveS || f.DeadS > 5 {
		t.Errorf("implausible failover %+v", f)
	}
	// Records travel as indices into the client set, as the gateway sends them.
	if rep.RecordBytes < 20 || rep.RecordBytes > 40 {
		t.Errorf("record of %d bytes: not by client index?", rep.RecordBytes)
	}
	md := rep.Markdown()
	for _, want := range []string{"| lan | 3 | 50 |", "kB/s", "| lan | 3 | 1 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

// TestWANDelays checks the injected delays: none within a region, the
// table's between regions, none toward unknown addresses.
func TestWANDelays(t *testing.T) {
	w := newWANNet(wanDelays)
	w.regions["127.0.0.1:1"] = 0
	w.regions["127.0.0.1:2"] = 2
	for _, tc := range []struct {
		from int
		addr string
		want time.Duration
	}{
		{0, "127.0.0.1:1", 0},
		{0, "127.0.0.1:2", 75 * time.Millisecond},
		{1, "127.0.0.1:2", 50 * time.Millisecond},
		{1, "127.0.0.1:9", 0},
	} {
		if got := w.delay(tc.from, tc.addr); got != tc.want {
			t.Errorf("delay(%d, %s) = %v, want %v", tc.from, tc.addr, got, tc.want)
		}
	}
	if d := newWANNet(nil).delay(0, "127.0.0.1:2"); d != 0 {
		t.Errorf("no delays configured, got %v", d)
	}
}

// TestUnsupersededFollowsTableOrder: of two concurrent claims with the
// same version, the one with the later HLC time wins in every table, so
// the benchmark must wait for that one, whatever the owners' names.
func TestUnsupersededFollowsTableOrder(t *testing.T) {
	var client wgkey.Key
	client[0] = 1
	early := claimKey{client: client, version: 3, time: 100, owner: "z"}
	late := claimKey{client: client, version: 3, time: 200, owner: "a"}
	older := claimKey{client: client, version: 2, time: 900, owner: "zz"}
	got := (&benchCluster{}).unsuperseded([]claimKey{early, late, older})
	if len(got) != 1 || got[0] != late {
		t.Fatalf("unsuperseded = %+v, want only %+v", got, late)
	}
}
