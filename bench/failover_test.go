package bench_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/anyguard/anyguard/bench/failover"
)

// TestFailoverQuick runs the failover harness small and short: a gateway
// of a region of two crashes under 30 real clients, with fast recovery on
// and then off. It checks outcomes, not that it ran: every moved client
// back both ways, no packet at the wrong client, and the fast mode's
// outage under 2 s where the stock mode (the client's own 15 s timers)
// needs over 5 s; broken fast recovery would fail the first, a broken
// switch the second, a broken load balancer model the move counts.
func TestFailoverQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("about 30 s")
	}
	p := failover.Presets[failover.PresetFast]
	p.Name = "test"
	p.Interval, p.Timeout = 500*time.Millisecond, 300*time.Millisecond
	opts := failover.Options{
		Clients: 30, Regions: 2, PerRegion: 2, Params: p, Scenarios: []string{failover.ScenarioCrash},
		Settle: time.Second, Limit: 40 * time.Second,
	}
	if testing.Verbose() {
		opts.Progress = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := failover.Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2 {
		t.Fatalf("%d results, want 2 (fast recovery on, off)", len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.Error != "" {
			t.Fatalf("%s: %s", r.Mode, r.Error)
		}
		if r.Moved == 0 || r.Moved == r.Clients {
			t.Errorf("%s: %d of %d clients moved; a crash of one of 4 gateways moves some, not none or all", r.Mode, r.Moved, r.Clients)
		}
		if r.NotBack != 0 || r.Up.N != r.Moves || r.Down.N != r.Moves {
			t.Errorf("%s: %d clients not back; outages measured up %d, down %d of %d moves", r.Mode, r.NotBack, r.Up.N, r.Down.N, r.Moves)
		}
		if r.Misdelivered != 0 {
			t.Errorf("%s: %d packets reached the wrong client", r.Mode, r.Misdelivered)
		}
		if len(r.DetectionMs) != 1 || r.DetectionMs[0] <= 0 || r.DetectionMs[0] > 5000 {
			t.Errorf("%s: load balancer detection %v ms, want one figure in (0, 5 s] with a 0.5 s interval", r.Mode, r.DetectionMs)
		}
		for _, o := range []failover.Outage{r.Up, r.Down} {
			if !(0 < o.P50Ms && o.P50Ms <= o.P99Ms && o.P99Ms <= o.MaxMs) {
				t.Errorf("%s: outage figures not ordered: %+v", r.Mode, o)
			}
		}
		if r.SentUp == 0 || r.SentDown == 0 || r.LostUp > r.SentUp || r.LostDown > r.SentDown {
			t.Errorf("%s: sent %d/%d, lost %d/%d", r.Mode, r.SentUp, r.SentDown, r.LostUp, r.LostDown)
		}
	}
	fast, stock := rep.Results[0], rep.Results[1]
	if !fast.FastRecovery || stock.FastRecovery {
		t.Fatalf("modes in the wrong order: %s, %s", fast.Mode, stock.Mode)
	}
	if fast.Up.P99Ms > 2000 || fast.Down.P99Ms > 2000 {
		t.Errorf("fast recovery: outage p99 up %.0f ms, down %.0f ms; want ≤ 2 s", fast.Up.P99Ms, fast.Down.P99Ms)
	}
	if stock.Up.P50Ms < 5000 {
		t.Errorf("recovery off: outage p50 up %.0f ms; a stock client waits for its own timers (≥ 5 s)", stock.Up.P50Ms)
	}
	if md := rep.Markdown(); len(md) == 0 || len(rep.SVG()) == 0 {
		t.Error("empty markdown or SVG")
	}
}
