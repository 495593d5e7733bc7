package failover

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/anyguard/anyguard/bench"
	"github.com/anyguard/anyguard/health"
)

// Modes of the gateways, each scenario runs in both.
const (
	ModeFast  = "fast recovery"
	ModeStock = "stock (recovery off)"
)

// Run runs every scenario with fast recovery on and then off, each in a
// fresh deployment, and returns the report.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.defaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	ks, err := newKeySet(opts.Clients)
	if err != nil {
		return nil, err
	}
	rep := &Report{
		Machine: bench.DescribeMachine(), Params: opts.Params, Clients: opts.Clients,
		Regions: opts.Regions, PerRegion: opts.PerRegion, IntervalMs: ms(opts.Interval),
		DrainWindowS: opts.DrainWindow.Seconds(), LimitS: opts.Limit.Seconds(),
	}
	for _, sc := range opts.Scenarios {
		for _, fast := range []bool{true, false} {
			if (fast && opts.OnlyStock) || (!fast && opts.OnlyFast) {
				continue
			}
			res, err := runOne(ctx, opts, ks, sc, fast)
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			if err != nil {
				// Reported, not fatal: the other scenarios still run.
				res = &Result{Scenario: sc, Mode: modeName(fast), FastRecovery: fast, Clients: opts.Clients, Error: err.Error()}
				rep.Failed++
			}
			fmt.Fprintf(opts.Progress, "%s\n", res.line())
			rep.Results = append(rep.Results, *res)
		}
	}
	return rep, nil
}

func modeName(fast bool) string {
	if fast {
		return ModeFast
	}
	return ModeStock
}

// event is what a scenario did: when, to which gateways (victims), and
// when the load balancer found each of them unhealthy.
type event struct {
	at      int64
	victims []victim
	// drainEnds are the ends of drain windows (ns since epoch).
	windows [][2]int64
}

type victim struct {
	name      string
	target    int
	at        int64 // when it failed or began to drain
	detection int64 // when the load balancer marked it unhealthy; 0: never
}

// runOne deploys, records, runs one scenario and measures it.
func runOne(ctx context.Context, opts Options, ks *keySet, sc string, fast bool) (_ *Result, err error) {
	fmt.Fprintf(opts.Progress, "%s, %s: starting %d gateways and %d clients\n", sc, modeName(fast), opts.Regions*opts.PerRegion, opts.Clients)
	gBefore, rssBefore := runtime.NumGoroutine(), rssBytes()
	tStart := time.Now()
	h, err := deploy(ctx, opts, fast, ks)
	if err != nil {
		return nil, err
	}
	defer h.close()
	res := &Result{Scenario: sc, Mode: modeName(fast), FastRecovery: fast, Clients: opts.Clients,
		StartS: time.Since(tStart).Seconds()}
	if n := opts.Clients; n > 0 {
		res.GoroutinesPerClient = float64(runtime.NumGoroutine()-gBefore) / float64(n)
		res.KBPerClient = float64(rssBytes()-rssBefore) / 1024 / float64(n)
	}
	t0 := h.now()
	for _, c := range h.clients {
		c.echoes.start(t0)
		c.pings.start(t0)
	}
	samp := startSamplers(h)
	sleep(ctx, opts.Settle)
	fmt.Fprintf(opts.Progress, "%s, %s: event\n", sc, modeName(fast))
	var ev event
	switch sc {
	case ScenarioRebalance:
		ev.at = h.now()
		rng := rand.New(rand.NewPCG(uint64(ev.at), 1))
		h.lb.rebalance(opts.RebalanceFraction, rng)
	case ScenarioCrash:
		ev = h.crashAll(ctx, h.gws[:1])
	case ScenarioRegion:
		ev = h.crashAll(ctx, h.gws[:opts.PerRegion])
	case ScenarioDrain:
		ev.at = h.now()
		ev.add(h.drain(ctx, h.gws[0]))
	case ScenarioRolling:
		ev.at = h.now()
		for _, g := range append([]*gw(nil), h.gws...) {
			fmt.Fprintf(opts.Progress, "%s, %s: restarting %s\n", sc, modeName(fast), g.name)
			ev.add(h.drain(ctx, g))
			if err := h.restart(ctx, g); err != nil {
				return nil, err
			}
		}
	}
	h.awaitRecovery(ctx, ev.at)
	cutoff := h.now()
	for _, c := range h.clients {
		c.echoes.cut(cutoff)
		c.pings.cut(cutoff)
	}
	sleep(ctx, time.Second) // answers in flight
	end := h.now()
	for _, c := range h.clients {
		c.echoes.stop()
		c.pings.stop()
	}
	samp.stop()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.measure(res, ev, t0, cutoff, end, samp)
	res.MovesBy = h.moveSummary(ev.at)
	return res, nil
}

func (ev *event) add(o event) {
	ev.victims = append(ev.victims, o.victims...)
	ev.windows = append(ev.windows, o.windows...)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// detectionBound is how long the load balancer may take to find a failed
// target unhealthy, with a margin.
func (h *harness) detectionBound() time.Duration {
	p := h.opts.Params
	return p.Interval*time.Duration(p.UnhealthyThreshold+1) + p.Timeout + 5*time.Second
}

// crashAll crashes gws at once and waits until the load balancer has
// found each unhealthy (or the detection bound passed).
func (h *harness) crashAll(ctx context.Context, gws []*gw) event {
	ev := event{at: h.now()}
	for _, g := range gws {
		h.crash(g)
		ev.victims = append(ev.victims, victim{name: g.name, target: g.target, at: ev.at})
	}
	h.awaitDetection(ctx, ev.victims)
	return ev
}

func (h *harness) awaitDetection(ctx context.Context, vs []victim) {
	_ = waitFor(ctx, h.detectionBound(), func() bool {
		for _, v := range vs {
			if h.target(v.target).unhealthyAt.Load() < v.at {
				return false
			}
		}
		return true
	})
	for i := range vs {
		if at := h.target(vs[i].target).unhealthyAt.Load(); at >= vs[i].at {
			vs[i].detection = at
		}
	}
}

func (h *harness) target(id int) *target { return (*h.lb.targets.Load())[id] }

// drain runs the SIGTERM path on g (as anyguard run does) while the
// operator deregisters it from the load balancer; after the drain window
// and steps, g stops.
func (h *harness) drain(ctx context.Context, g *gw) event {
	at := h.now()
	g.draining.Store(true)
	g.g.BeginDrain()
	h.lb.deregister(g.target)
	_ = health.Drain(ctx, g.state, h.opts.DrainWindow, g.g.DrainSteps(), nil)
	end := h.now()
	v := victim{name: g.name, target: g.target, at: at}
	if u := h.target(g.target).unhealthyAt.Load(); u >= at {
		v.detection = u
	}
	h.stop(g)
	return event{victims: []victim{v}, windows: [][2]int64{{at, end}}}
}

// restart starts g again under its name and waits until the load
// balancer finds it healthy and the cluster has it back.
func (h *harness) restart(ctx context.Context, old *gw) error {
	g, err := h.startGateway(old.name, old.region)
	if err != nil {
		return err
	}
	h.addGateway(g, false)
	p := h.opts.Params
	bound := p.Interval*time.Duration(p.HealthyThreshold+1) + p.Timeout + 30*time.Second
	if err := waitFor(ctx, bound, func() bool { return h.target(g.target).healthy.Load() && h.clusterFormed() }); err != nil {
		return fmt.Errorf("restarted %s not healthy within %s: %w", g.name, bound, err)
	}
	return nil
}

// awaitRecovery waits until every client whose flow moved since at has
// both directions answered after its last move, or Limit after the last
// move.
func (h *harness) awaitRecovery(ctx context.Context, at int64) {
	for ctx.Err() == nil {
		lastMove, pending := int64(0), 0
		for i, c := range h.clients {
			ms := h.lb.movesOf(i)
			if len(ms) == 0 || ms[len(ms)-1].at < at {
				continue
			}
			m := ms[len(ms)-1].at
			lastMove = max(lastMove, m)
			if !c.echoes.answeredSince(m) || !c.pings.answeredSince(m) {
				pending++
			}
		}
		if pending == 0 || time.Duration(h.now()-lastMove) > h.opts.Limit {
			return
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// samplers record the survivors' readiness every 100 ms and the
// process's CPU time every second.
type samplers struct {
	stopc chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	ready map[string][2]int // gateway → samples, samples not ready
	// failing counts the checks that failed in samples not ready.
	failing map[string]int
	cpu     []cpuSample
}

type cpuSample struct{ at, cpu int64 } // ns since epoch, CPU ns

func startSamplers(h *harness) *samplers {
	s := &samplers{stopc: make(chan struct{}), ready: make(map[string][2]int), failing: make(map[string]int)}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
			for _, g := range h.running() {
				if g.draining.Load() {
					continue
				}
				ok := g.state.Ready()
				// A gateway starting up is not ready yet: count from the
				// first time it is.
				if !g.wasReady.Load() {
					if !ok {
						continue
					}
					g.wasReady.Store(true)
				}
				s.mu.Lock()
				r := s.ready[g.name]
				r[0]++
				if !ok {
					r[1]++
					for _, c := range g.state.Results() {
						if !c.OK && !c.Advisory {
							s.failing[c.Name]++
						}
					}
				}
				s.ready[g.name] = r
				s.mu.Unlock()
			}
		}
	}()
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			s.mu.Lock()
			s.cpu = append(s.cpu, cpuSample{h.now(), cpuNanos()})
			s.mu.Unlock()
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *samplers) stop() {
	close(s.stopc)
	s.wg.Wait()
}

// cpuNanos is the process's user+system CPU time.
func cpuNanos() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// moveSummary counts the flow moves since at by reason and target.
func (h *harness) moveSummary(at int64) map[string]int {
	out := map[string]int{}
	for i := range h.clients {
		for _, m := range h.lb.movesOf(i) {
			if m.at >= at {
				out[fmt.Sprintf("%s %d→%d", m.why, m.from, m.to)]++
			}
		}
	}
	return out
}
