package failover

import (
	"net/netip"
	"testing"
	"time"
)

// newTestLB is a load balancer model with n targets that health checks
// never reach (interval 10 min): tests drive result() by hand.
func newTestLB(t *testing.T, p Params, n, clients int) *lb {
	t.Helper()
	p.Interval, p.Timeout = 10*time.Minute, time.Second
	l := newLB(p, time.Now(), clients, func(int, []byte) {})
	t.Cleanup(l.close)
	for i := range n {
		l.addTarget(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(40000+i)), "127.0.0.1:1", "127.0.0.1:1", true)
	}
	for i := range clients {
		if _, err := l.newFlow(i); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func TestLBUnhealthyThresholdAndReroute(t *testing.T) {
	p := Presets[PresetNLB] // unhealthy after 2
	l := newTestLB(t, p, 3, 300)
	on := l.flowsOn(0)
	if on == 0 || on == 300 {
		t.Fatalf("%d of 300 flows on target 0: hashing does not spread", on)
	}
	tg := l.target(0)
	l.result(tg, false)
	if !tg.healthy.Load() || l.flowsOn(0) != on {
		t.Fatal("one failed check turned the target unhealthy; the threshold is 2")
	}
	l.result(tg, false)
	if tg.healthy.Load() || l.flowsOn(0) != 0 || tg.unhealthyAt.Load() == 0 {
		t.Fatalf("after 2 failed checks: healthy %v, %d flows left", tg.healthy.Load(), l.flowsOn(0))
	}
	moved := 0
	for i := range 300 {
		for _, m := range l.movesOf(i) {
			if m.from != 0 || m.to == 0 || m.why != whyUnhealthy {
				t.Fatalf("move %+v", m)
			}
			moved++
		}
	}
	if moved != on {
		t.Fatalf("%d moves logged, want %d", moved, on)
	}
	// Healthy again after 5 good checks (NLB's healthy threshold); the
	// flows stay where they went (stickiness).
	for range 4 {
		l.result(tg, true)
	}
	if tg.healthy.Load() {
		t.Fatal("healthy after 4 of 5 checks")
	}
	l.result(tg, true)
	if !tg.healthy.Load() || l.flowsOn(0) != 0 {
		t.Fatalf("healthy %v, %d flows back on it", tg.healthy.Load(), l.flowsOn(0))
	}
}

func TestLBKeepFlowsAndFailOpen(t *testing.T) {
	p := Presets[PresetFast]
	p.UnhealthyFlows = FlowsKeep
	l := newTestLB(t, p, 2, 100)
	on := l.flowsOn(0)
	l.result(l.target(0), false)
	if l.flowsOn(0) != on {
		t.Fatalf("keep: %d flows left of %d", l.flowsOn(0), on)
	}
	// New flows avoid it...
	if got := l.pick(1000, -1); got != 1 {
		t.Fatalf("new flow picked target %d, want the healthy 1", got)
	}
	// ...until no target is healthy: then the model fails open.
	l.result(l.target(1), false)
	if got := l.pick(1000, -1); got < 0 {
		t.Fatal("no target picked with all unhealthy; NLB and GA fail open")
	}
}

func TestLBDeregistrationDelay(t *testing.T) {
	p := Presets[PresetFast]
	p.DeregistrationDelay = time.Second
	l := newTestLB(t, p, 2, 100)
	on := l.flowsOn(0)
	l.deregister(0)
	if l.flowsOn(0) != on {
		t.Fatal("flows left a deregistered target before its delay")
	}
	if got := l.pick(1000, -1); got != 1 {
		t.Fatalf("new flow picked target %d, not the registered one", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.flowsOn(0) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d flows still on target 0 after the 1 s delay", l.flowsOn(0))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLBRebalanceMovesAFraction(t *testing.T) {
	l := newTestLB(t, Presets[PresetFast], 4, 2000)
	n := l.rebalance(0.1, newRand(1))
	if n < 120 || n > 280 {
		t.Fatalf("rebalance of 10%% moved %d of 2000", n)
	}
	for i := range 2000 {
		for _, m := range l.movesOf(i) {
			if m.from == m.to {
				t.Fatalf("move to the same target: %+v", m)
			}
		}
	}
}

func TestParamsValidate(t *testing.T) {
	for name, p := range Presets {
		if err := p.Validate(); err != nil {
			t.Errorf("preset %s: %v", name, err)
		}
	}
	bad := []func(*Params){
		func(p *Params) { p.HealthProtocol = "udp" },
		func(p *Params) { p.Interval = 0 },
		func(p *Params) { p.Timeout = p.Interval + 1 },
		func(p *Params) { p.HealthyThreshold = 0 },
		func(p *Params) { p.UnhealthyThreshold = 11 },
		func(p *Params) { p.Stickiness = "cookie" },
		func(p *Params) { p.UnhealthyFlows = "" },
		func(p *Params) { p.IdleTimeout = 0 },
		func(p *Params) { p.DeregistrationDelay = -time.Second },
	}
	for i, f := range bad {
		p := Presets[PresetNLB]
		f(&p)
		if err := p.Validate(); err == nil {
			t.Errorf("case %d: %+v accepted", i, p)
		}
	}
}

func TestRecovery(t *testing.T) {
	ms := int64(time.Millisecond)
	as := []answer{{0, 10 * ms}, {100 * ms, 110 * ms}, {500 * ms, 900 * ms}, {600 * ms, 620 * ms}}
	// Moved at 300 ms: the first request sent after it answered at 620 ms
	// (the one sent at 500 ms came back later); the last answer before,
	// at 110 ms.
	since, gap, ok := recovery(as, 300*ms, int64(time.Minute))
	if !ok || since != 320 || gap != 510 {
		t.Fatalf("recovery = %v, %v, %v; want 320, 510, true", since, gap, ok)
	}
	if _, _, ok := recovery(as, 700*ms, int64(time.Minute)); ok {
		t.Fatal("recovered with no request sent after the move answered")
	}
	if _, _, ok := recovery(as, 300*ms, 100*ms); ok {
		t.Fatal("recovered beyond the limit")
	}
	if got := pct([]float64{5, 1, 4, 2, 3}, 50); got != 3 {
		t.Fatalf("p50 = %v", got)
	}
	if got := pct(nil, 99); got != 0 {
		t.Fatalf("p99 of nothing = %v", got)
	}
}

// TestAppendRTTs: round trips are receive minus send, in ms.
func TestAppendRTTs(t *testing.T) {
	got := appendRTTs([]float64{1}, []answer{{sent: 1e6, recv: 3e6}, {sent: 5e6, recv: 5e6}})
	if len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 0 {
		t.Fatalf("appendRTTs: %v", got)
	}
}
