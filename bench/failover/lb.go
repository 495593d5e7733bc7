package failover

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// lb is the load balancer model: every client's UDP flow pinned to one
// target, health checks with Params' interval, timeout and thresholds,
// flows of unhealthy targets moved (or kept), idle flows forgotten, and
// deregistration with a delay. Clients hand it datagrams in memory
// (fromClient); each flow has its own UDP socket toward the gateways, so
// a gateway sees one stable source address per client, whichever target
// the flow goes to (like NLB's and GA's client IP preservation).
//
// Lock order: lb.mu, then nothing. Per-packet paths take no lock: a
// flow's target is an atomic, targets are an immutable slice swapped
// under mu.
type lb struct {
	p       Params
	epoch   time.Time
	deliver func(client int, pkt []byte) // to the client's bind

	mu      sync.Mutex
	targets atomic.Pointer[[]*target]
	flows   []*flow
	closed  bool
	wg      sync.WaitGroup
	stop    chan struct{}

	// trace, when set, sees every datagram relayed (tests' timelines).
	trace atomic.Pointer[traceFunc]

	// handshakes[s] counts handshake responses that crossed the load
	// balancer in second s since epoch (either direction: a gateway's
	// answer to a client's initiation, or a client's answer to a
	// gateway's), by target.
	handshakes *hsCounter
}

type target struct {
	id        int
	addr      netip.AddrPort // the gateway's client-facing UDP address
	healthURL string         // http://…/readyz
	tcpAddr   string         // TCP health port
	client    *http.Client

	healthy      atomic.Bool // the load balancer's view
	dead         atomic.Bool // blackholed: a crashed gateway
	registered   atomic.Bool
	deregistered time.Time // under lb.mu
	removed      atomic.Bool
	okRun, bad   int // consecutive results; checker goroutine only
	// unhealthyAt is when the load balancer last marked it unhealthy
	// (ns since epoch; 0: never).
	unhealthyAt atomic.Int64
	checks      atomic.Uint64
	failed      atomic.Uint64 // failed checks since it first turned healthy
	wasHealthy  atomic.Bool
	stopCheck   chan struct{}
}

type flow struct {
	client int
	sock   *net.UDPConn
	tgt    atomic.Int32 // target id, -1: none (new flow on the next packet)
	last   atomic.Int64 // ns since epoch of the last packet
	// moves logs when the flow changed target (ns since epoch); under
	// lb.mu.
	moves []move
}

type move struct {
	at       int64
	from, to int
	why      string
}

// Reasons a flow moved.
const (
	whyRebalance  = "rebalance"
	whyUnhealthy  = "unhealthy"
	whyDeregister = "deregistered"
	whyIdle       = "idle"
)

func newLB(p Params, epoch time.Time, clients int, deliver func(int, []byte)) *lb {
	l := &lb{p: p, epoch: epoch, deliver: deliver, flows: make([]*flow, clients), stop: make(chan struct{}),
		handshakes: newHSCounter()}
	empty := []*target{}
	l.targets.Store(&empty)
	l.wg.Add(1)
	go l.sweep()
	return l
}

func (l *lb) now() int64 { return int64(time.Since(l.epoch)) }

// addTarget registers a gateway; it takes flows once its health checks
// pass HealthyThreshold times (initially healthy: at start-up).
func (l *lb) addTarget(addr netip.AddrPort, healthHTTP, healthTCP string, healthyNow bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.targets.Load()
	t := &target{id: len(old), addr: addr, healthURL: "http://" + healthHTTP + "/readyz", tcpAddr: healthTCP,
		client: &http.Client{Timeout: l.p.Timeout, Transport: &http.Transport{DisableKeepAlives: true}}, stopCheck: make(chan struct{})}
	t.healthy.Store(healthyNow)
	if healthyNow {
		t.okRun = l.p.HealthyThreshold
	}
	t.registered.Store(true)
	next := append(append([]*target(nil), old...), t)
	l.targets.Store(&next)
	l.wg.Add(1)
	go l.check(t)
	return t.id
}

// check runs target t's health checks, starting at a random phase as
// independent health checkers do.
func (l *lb) check(t *target) {
	defer l.wg.Done()
	first := time.Duration(rand.Int64N(int64(l.p.Interval)))
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.stopCheck:
			return
		case <-timer.C:
		}
		timer.Reset(l.p.Interval)
		ok := l.probe(t)
		t.checks.Add(1)
		if !ok && t.wasHealthy.Load() {
			t.failed.Add(1)
		}
		l.result(t, ok)
	}
}

// probe runs one health check. A dead target answers nothing: the check
// fails when its timeout ends.
func (l *lb) probe(t *target) bool {
	if t.dead.Load() {
		select {
		case <-time.After(l.p.Timeout):
		case <-l.stop:
		}
		return false
	}
	if l.p.HealthProtocol == HealthTCP {
		c, err := net.DialTimeout("tcp", t.tcpAddr, l.p.Timeout)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.p.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.healthURL, nil)
	if err != nil {
		return false
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// result applies one health check result with the thresholds.
func (l *lb) result(t *target, ok bool) {
	if ok {
		t.okRun, t.bad = t.okRun+1, 0
		if !t.healthy.Load() && t.okRun >= l.p.HealthyThreshold {
			t.healthy.Store(true)
			t.wasHealthy.Store(true)
		}
		return
	}
	t.okRun, t.bad = 0, t.bad+1
	if t.healthy.Load() && t.bad >= l.p.UnhealthyThreshold {
		at := l.now()
		t.healthy.Store(false)
		if l.p.UnhealthyFlows == FlowsReroute {
			l.moveAll(t.id, whyUnhealthy)
		}
		// Set once the flows moved: whoever sees it sees the moves.
		t.unhealthyAt.Store(at)
	}
}

// eligible reports whether new flows may go to t.
func eligible(t *target) bool {
	return t.healthy.Load() && t.registered.Load() && !t.removed.Load()
}

// pick hashes the client over the eligible targets (rendezvous hashing:
// a target's failure moves only its own flows). When no target is
// healthy the load balancer fails open, as NLB and Global Accelerator do:
// it picks among every registered target. -1: none at all.
func (l *lb) pick(client int, not int) int {
	if t := l.pickAmong(client, not, eligible); t >= 0 {
		return t
	}
	return l.pickAmong(client, not, func(t *target) bool { return t.registered.Load() && !t.removed.Load() })
}

func (l *lb) pickAmong(client, not int, ok func(*target) bool) int {
	best, bestScore := -1, uint64(0)
	for _, t := range *l.targets.Load() {
		if t.id == not || !ok(t) {
			continue
		}
		if s := mix(uint64(client)<<32 | uint64(t.id)); best < 0 || s > bestScore {
			best, bestScore = t.id, s
		}
	}
	return best
}

// moveAll moves every flow of target from to another eligible target.
// With none healthy left (fail open), flows of an unhealthy target that
// is still registered stay where they are.
func (l *lb) moveAll(from int, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	ft := (*l.targets.Load())[from]
	for _, f := range l.flows {
		if f != nil && int(f.tgt.Load()) == from {
			to := l.pickAmong(f.client, from, eligible)
			if to < 0 && ft.registered.Load() && !ft.removed.Load() {
				continue
			}
			if to < 0 {
				to = l.pick(f.client, from)
			}
			f.tgt.Store(int32(to))
			f.moves = append(f.moves, move{at: now, from: from, to: to, why: why})
		}
	}
}

// rebalance moves a fraction of all flows, chosen at random, each to
// another eligible target; it returns how many moved.
func (l *lb) rebalance(frac float64, rng *rand.Rand) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var ids []int
	for _, t := range *l.targets.Load() {
		if eligible(t) {
			ids = append(ids, t.id)
		}
	}
	n := 0
	for _, f := range l.flows {
		if f == nil || len(ids) < 2 || rng.Float64() >= frac {
			continue
		}
		from := int(f.tgt.Load())
		to := ids[rng.IntN(len(ids))]
		for to == from {
			to = ids[rng.IntN(len(ids))]
		}
		f.tgt.Store(int32(to))
		f.moves = append(f.moves, move{at: now, from: from, to: to, why: whyRebalance})
		n++
	}
	return n
}

// deregister takes target id out: no new flows; its flows move after the
// deregistration delay (sweep), or earlier if it turns unhealthy.
func (l *lb) deregister(id int) {
	l.mu.Lock()
	t := (*l.targets.Load())[id]
	t.registered.Store(false)
	t.deregistered = time.Now()
	l.mu.Unlock()
	if l.p.DeregistrationDelay == 0 {
		l.moveAll(id, whyDeregister)
	}
}

// kill blackholes target id at once, as a crash does: nothing reaches it,
// nothing it sends gets through, its health checks time out.
func (l *lb) kill(id int) { (*l.targets.Load())[id].dead.Store(true) }

// remove forgets target id for good (a stopped gateway); its flows, if
// any are left, move.
func (l *lb) remove(id int) {
	t := (*l.targets.Load())[id]
	t.removed.Store(true)
	t.dead.Store(true)
	close(t.stopCheck)
	l.moveAll(id, whyDeregister)
}

// sweep forgets idle flows and ends deregistration delays, once a second.
func (l *lb) sweep() {
	defer l.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		now := l.now()
		l.mu.Lock()
		for _, f := range l.flows {
			if f != nil && f.tgt.Load() >= 0 && time.Duration(now-f.last.Load()) > l.p.IdleTimeout {
				f.moves = append(f.moves, move{at: now, from: int(f.tgt.Load()), to: -1, why: whyIdle})
				f.tgt.Store(-1)
			}
		}
		var due []int
		for _, t := range *l.targets.Load() {
			if !t.registered.Load() && !t.removed.Load() && !t.deregistered.IsZero() && time.Since(t.deregistered) >= l.p.DeregistrationDelay {
				due = append(due, t.id)
			}
		}
		l.mu.Unlock()
		for _, id := range due {
			l.moveAll(id, whyDeregister)
		}
	}
}

// fromClient takes a datagram from client i to the anycast address.
func (l *lb) fromClient(i int, pkt []byte) {
	f := l.flows[i]
	if f == nil {
		var err error
		if f, err = l.newFlow(i); err != nil {
			return
		}
	}
	f.last.Store(l.now())
	ti := f.tgt.Load()
	if ti < 0 {
		l.mu.Lock()
		if ti = f.tgt.Load(); ti < 0 {
			ti = int32(l.pick(i, -1))
			f.tgt.Store(ti)
		}
		l.mu.Unlock()
		if ti < 0 {
			return
		}
	}
	t := (*l.targets.Load())[ti]
	if t.dead.Load() {
		return
	}
	if isResponse(pkt) {
		l.handshakes.add(l.now(), int(ti))
	}
	if fn := l.trace.Load(); fn != nil && len(pkt) > 0 {
		(*fn)(i, 'u', pkt[0], int(ti), l.now())
	}
	f.sock.WriteToUDPAddrPort(pkt, t.addr)
}

func (l *lb) newFlow(i int) (*flow, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.flows[i]; f != nil {
		return f, nil
	}
	if l.closed {
		return nil, net.ErrClosed
	}
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: flowIP(i)})
	if err != nil {
		return nil, err
	}
	f := &flow{client: i, sock: sock}
	f.tgt.Store(int32(l.pick(i, -1)))
	f.last.Store(l.now())
	l.flows[i] = f
	l.wg.Add(1)
	go l.serveFlow(f)
	return f, nil
}

func (l *lb) target(id int) *target { return (*l.targets.Load())[id] }

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 1)) }

// flowIP is the source address of client i's flow: its own address in
// 127/8 (all of it is loopback on Linux), as NLB and GA preserve each
// client's IP; gateways rate-limit handshakes per source IP.
func flowIP(i int) net.IP {
	return net.IPv4(127, byte(100+i>>16), byte(i>>8), byte(i))
}

// serveFlow relays what gateways send on a flow's socket to its client:
// only from the flow's current target (a flow that moved no longer
// matches the old target's packets) and never from a dead one.
func (l *lb) serveFlow(f *flow) {
	defer l.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := f.sock.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		ti := f.tgt.Load()
		if ti < 0 {
			continue
		}
		t := (*l.targets.Load())[ti]
		if t.dead.Load() || t.addr != from {
			continue
		}
		f.last.Store(l.now())
		if fn := l.trace.Load(); fn != nil && n > 0 {
			(*fn)(f.client, 'd', buf[0], int(ti), l.now())
		}
		if isResponse(buf[:n]) {
			l.handshakes.add(l.now(), int(ti))
		}
		l.deliver(f.client, append([]byte(nil), buf[:n]...))
	}
}

// isResponse reports whether a WireGuard datagram is a handshake response
// (message type 2, 92 bytes).
func isResponse(p []byte) bool {
	return len(p) == 92 && p[0] == 2 && p[1] == 0 && p[2] == 0 && p[3] == 0
}

// target returns client i's current target, or -1.
func (l *lb) targetOf(i int) int {
	if f := l.flows[i]; f != nil {
		return int(f.tgt.Load())
	}
	return -1
}

// movesOf returns client i's flow moves.
func (l *lb) movesOf(i int) []move {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.flows[i]; f != nil {
		return append([]move(nil), f.moves...)
	}
	return nil
}

// flowsOn counts the flows on target id.
func (l *lb) flowsOn(id int) int {
	n := 0
	for i := range l.flows {
		if l.targetOf(i) == id {
			n++
		}
	}
	return n
}

func (l *lb) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.stop)
	for _, f := range l.flows {
		if f != nil {
			f.sock.Close()
		}
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// hsCounter counts events per second since the epoch and per target.
type hsCounter struct {
	mu  sync.Mutex
	per map[int64]map[int]int
}

func newHSCounter() *hsCounter { return &hsCounter{per: make(map[int64]map[int]int)} }

func (c *hsCounter) add(ns int64, target int) {
	s := ns / int64(time.Second)
	c.mu.Lock()
	m := c.per[s]
	if m == nil {
		m = make(map[int]int)
		c.per[s] = m
	}
	m[target]++
	c.mu.Unlock()
}

// between returns per-second totals over targets accepted by keep, for
// seconds [from, to).
func (c *hsCounter) between(from, to int64, keep func(int) bool) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for s := from / int64(time.Second); s < to/int64(time.Second); s++ {
		n := 0
		for t, v := range c.per[s] {
			if keep(t) {
				n += v
			}
		}
		out = append(out, n)
	}
	return out
}

// mix is splitmix64's finaliser: every input bit moves every output bit,
// so rendezvous scores of one client over targets are independent.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// traceFunc sees a datagram the load balancer relays: client i's flow,
// dir 'u' (client to gateway) or 'd', the WireGuard message type (first
// byte), the target, and when (ns since epoch). It must not block.
type traceFunc func(client int, dir, typ byte, target int, at int64)
