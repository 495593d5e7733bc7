package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/wgkey"
)

// ClusterOptions configure RunCluster. Zero fields take the defaults in
// brackets.
type ClusterOptions struct {
	Sizes    []int    // gateways per cluster [3, 10, 30]
	Profiles []string // cluster profiles [lan, wan]; wan runs with the WAN delays between 3 regions
	Clients  int      // configured clients [5000]
	// Claims are the claims timed per size and profile [200], made at
	// ClaimRate per second [20] by random gateways, each for a client not
	// claimed before in that run, so that no claim overtakes another.
	Claims    int
	ClaimRate float64
	// The load phase runs on the cluster of LoadNodes gateways [30] of each
	// profile: LoadRate claims per second [100] of random clients by random
	// gateways for LoadTime [20 s], then as long without claims (idle).
	// LoadNodes < 0 skips it.
	LoadNodes int
	LoadRate  float64
	LoadTime  time.Duration
	// In the lan clusters of FailoverSizes gateways [10, 30], gateways are
	// crashed one after another, FailoverTrials times [3]; an empty but
	// non-nil FailoverSizes skips it.
	FailoverSizes  []int
	FailoverTrials int
	// FullKeys makes the gateways gossip full 32-byte client keys instead
	// of indices into the client set (to measure what the index saves).
	FullKeys bool
	Settle   time.Duration // wait after a cluster formed [2 s]
	Timeout  time.Duration // for a claim to reach every gateway [20 s]
	Progress io.Writer     // one line per measurement; nil: none
}

func (o *ClusterOptions) defaults() {
	if len(o.Sizes) == 0 {
		o.Sizes = []int{3, 10, 30}
	}
	if len(o.Profiles) == 0 {
		o.Profiles = []string{cluster.ProfileLAN, cluster.ProfileWAN}
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Clients, 5000)
	def(&o.Claims, 200)
	def(&o.LoadNodes, 30)
	if o.FailoverSizes == nil {
		o.FailoverSizes = []int{10, 30}
	}
	def(&o.FailoverTrials, 3)
	if o.ClaimRate == 0 {
		o.ClaimRate = 20
	}
	if o.LoadRate == 0 {
		o.LoadRate = 100
	}
	if o.LoadTime == 0 {
		o.LoadTime = 20 * time.Second
	}
	if o.Settle == 0 {
		o.Settle = 2 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 20 * time.Second
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// ConvergencePoint is the time from a claim until the last gateway applied
// it, over the claims of one run.
type ConvergencePoint struct {
	Profile   string  `json:"profile"`
	WAN       bool    `json:"wan_delays"`
	Nodes     int     `json:"nodes"`
	Rate      float64 `json:"claims_per_s"`
	Claims    int     `json:"claims"`
	Converged int     `json:"converged"` // claims every gateway applied within the timeout
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
}

// GossipPoint is what each gateway sends with and without claims: gossip
// packets (claims, relays, probes) and push/pull streams, whose size
// follows the ownership table rather than the rate of claims.
type GossipPoint struct {
	Profile string  `json:"profile"`
	WAN     bool    `json:"wan_delays"`
	Nodes   int     `json:"nodes"`
	Rate    float64 `json:"claims_per_s"` // claims made per second, whole cluster
	Seconds float64 `json:"seconds"`      // length of each window
	Records int     `json:"records"`      // ownership records in the table at the end
	// Bytes per second sent per gateway (mean over gateways) as they leave
	// the transport, encrypted: during the claims, and in as long a window
	// without claims afterwards (same cluster, same table).
	LoadPacketBps float64 `json:"load_packet_bytes_per_s"`
	LoadStreamBps float64 `json:"load_stream_bytes_per_s"`
	IdlePacketBps float64 `json:"idle_packet_bytes_per_s"`
	IdleStreamBps float64 `json:"idle_stream_bytes_per_s"`
	// ClaimsBps is the gossip the claims cost each gateway: packets during
	// the claims minus packets idle.
	ClaimsBps float64 `json:"claims_bytes_per_s"`
	// BytesPerClaim is ClaimsBps for the whole cluster, per claim.
	BytesPerClaim float64 `json:"bytes_per_claim"`
	// Convergence of the load's claims (those no later claim overtook).
	Convergence ConvergencePoint `json:"convergence"`
}

// FailoverPoint is one crash: the time from a gateway's abrupt stop (no
// leave) until every other gateway's member view shows it not alive (the
// prefixes it served move to another gateway then) and until every one has
// dropped it as dead.
type FailoverPoint struct {
	Profile   string  `json:"profile"`
	Nodes     int     `json:"nodes"`
	Trial     int     `json:"trial"`
	NotAliveS float64 `json:"not_alive_s"`
	DeadS     float64 `json:"dead_s"`
}

// ClusterReport is the result of RunCluster.
type ClusterReport struct {
	Machine     Machine            `json:"machine"`
	LoadAvg     [2]float64         `json:"load_avg"` // 1-minute load average at the start and the end
	Clients     int                `json:"clients"`
	FullKeys    bool               `json:"full_keys"`
	RecordBytes int                `json:"record_bytes"` // one encoded claim as gossiped, without memberlist framing
	Convergence []ConvergencePoint `json:"convergence"`
	Gossip      []GossipPoint      `json:"gossip"`
	Failover    []FailoverPoint    `json:"failover"`
}

var nopLogger = log.New(io.Discard, "", 0)

// loadAvg returns the machine's 1-minute load average: the figures here are
// latencies, which other work on the machine stretches.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	fmt.Sscan(string(b), &l)
	return l
}

// RunCluster measures client ownership over real memberlist gossip (UDP and
// TCP on 127.0.0.1, encrypted) between cluster.Cluster gateways in this
// process: for every profile and size, the time from a claim until the
// last gateway applied it (each gateway's OnOwner time on the process's one
// monotonic clock); on the largest cluster the bytes each gateway sends at
// a steady rate of claims; and on the lan profile the time until a crashed
// gateway is seen down everywhere.
func RunCluster(ctx context.Context, opts ClusterOptions) (*ClusterReport, error) {
	opts.defaults()
	clients := make([]wgkey.Key, opts.Clients)
	for i := range clients {
		rand.Read(clients[i][:]) // stand-ins for public keys, as in RunScale
	}
	rep := &ClusterReport{Machine: DescribeMachine(), Clients: len(clients), FullKeys: opts.FullKeys}
	rep.LoadAvg[0] = loadAvg()
	defer func() { rep.LoadAvg[1] = loadAvg() }()
	codec := cluster.Codec{}
	if !opts.FullKeys {
		codec.Clients = cluster.NewClientSet(clients)
	}
	if b, err := codec.AppendRecord(nil, cluster.Record{
		Client: clients[0], Owner: "gw-00-r1", Version: 3, Time: cluster.Timestamp(time.Now().UnixMilli() << 16),
		Endpoint: netip.MustParseAddrPort("198.51.100.7:51820"), Reason: cluster.ReasonHandshake,
	}); err == nil {
		rep.RecordBytes = len(b) + 1 // and the message type byte
	}
	for _, profile := range opts.Profiles {
		for _, n := range opts.Sizes {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			err := func() error {
				c, err := startBenchCluster(ctx, n, profile, clients, opts)
				if err != nil {
					return err
				}
				defer c.close()
				time.Sleep(opts.Settle)
				p := c.convergence(ctx, opts.Claims, opts.ClaimRate, opts.Timeout)
				fmt.Fprintf(opts.Progress, "%s, %2d gateways: claim to last gateway p50 %.0f ms, p99 %.0f ms, max %.0f ms (%d of %d converged)\n",
					c.label(), n, p.P50Ms, p.P99Ms, p.MaxMs, p.Converged, p.Claims)
				rep.Convergence = append(rep.Convergence, p)
				if n == opts.LoadNodes {
					g := c.load(ctx, opts.LoadRate, opts.LoadTime, opts.Timeout)
					fmt.Fprintf(opts.Progress, "%s, %2d gateways, %.0f claims/s: gossip for the claims %.1f kB/s per gateway (%.0f B per claim), idle %.1f kB/s, push/pull %.1f kB/s (%d records); under load p50 %.0f ms, p99 %.0f ms\n",
						c.label(), n, g.Rate, g.ClaimsBps/1e3, g.BytesPerClaim, g.IdlePacketBps/1e3, g.IdleStreamBps/1e3, g.Records, g.Convergence.P50Ms, g.Convergence.P99Ms)
					rep.Gossip = append(rep.Gossip, g)
				}
				if slices.Contains(opts.FailoverSizes, n) && profile == cluster.ProfileLAN {
					for trial := range opts.FailoverTrials {
						if trial > 0 {
							time.Sleep(time.Second) // let the survivors settle
						}
						f, err := c.failover(ctx, trial, opts.Timeout)
						if err != nil {
							return err
						}
						fmt.Fprintf(opts.Progress, "%s, %2d gateways, crash %d: not alive everywhere after %.2f s, dead after %.2f s\n",
							c.label(), n, trial+1, f.NotAliveS, f.DeadS)
						rep.Failover = append(rep.Failover, f)
					}
				}
				return nil
			}()
			if err != nil {
				return nil, fmt.Errorf("%s, %d gateways: %w", profile, n, err)
			}
		}
	}
	return rep, nil
}

// claimKey names one record: a claim is applied when a gateway's table
// takes exactly this record.
type claimKey struct {
	client  wgkey.Key
	version uint64
	time    cluster.Timestamp
	owner   string
}

// record is the part of the claim's record that orders it.
func (k claimKey) record() cluster.Record {
	return cluster.Record{Client: k.client, Version: k.version, Time: k.time, Owner: k.owner}
}

type claimTrack struct {
	start   time.Time // zero: not a timed claim
	applied int
	last    time.Time
}

// benchCluster is n gateways with their transports and the observations
// their callbacks make.
type benchCluster struct {
	profile string
	wan     bool
	clients []wgkey.Key
	nodes   []*benchNode

	mu     sync.Mutex
	claims map[claimKey]*claimTrack
}

type benchNode struct {
	*cluster.Cluster
	t    *delayTransport
	dead bool // crashed by failover

	mu       sync.Mutex
	members  map[string]bool      // every member ever seen
	notAlive map[string]time.Time // first time a member was seen suspect or gone
	gone     map[string]time.Time // first time a member was seen dead, left or gone
}

func (c *benchCluster) label() string {
	if c.wan {
		return c.profile + " + WAN delays"
	}
	return c.profile
}

func startBenchCluster(ctx context.Context, n int, profile string, clients []wgkey.Key, opts ClusterOptions) (_ *benchCluster, err error) {
	c := &benchCluster{profile: profile, wan: profile == cluster.ProfileWAN, clients: clients, claims: make(map[claimKey]*claimTrack)}
	var delays [][]time.Duration
	if c.wan {
		delays = wanDelays
	}
	w := newWANNet(delays)
	secret := make([]byte, 32)
	rand.Read(secret)
	var set []wgkey.Key
	if !opts.FullKeys {
		set = clients // as internal/gateway passes its whole client set
	}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	for i := range n {
		region := i % 3
		t, err := newDelayTransport(w, region)
		if err != nil {
			return nil, err
		}
		node := &benchNode{t: t, members: make(map[string]bool), notAlive: make(map[string]time.Time), gone: make(map[string]time.Time)}
		var join []string
		if i > 0 {
			join = []string{c.nodes[0].t.addr}
		}
		cl, err := cluster.New(cluster.Config{
			Name:      fmt.Sprintf("gw-%02d-r%d", i, region+1),
			Bind:      netip.MustParseAddrPort(t.addr),
			Join:      join,
			SecretKey: secret,
			Profile:   profile,
			Meta: cluster.Meta{
				Region:       fmt.Sprintf("r%d", region+1),
				State:        cluster.StateReady,
				BackboneAddr: netip.AddrFrom4([4]byte{100, 64, 0, byte(i + 1)}),
			},
			Clients:   set,
			Transport: t,
			OnOwner:   c.onOwner,
			OnMembers: node.onMembers,
		})
		if err != nil {
			t.Shutdown()
			return nil, err
		}
		node.Cluster = cl
		c.nodes = append(c.nodes, node)
	}
	// Every gateway must see every other alive before anything is timed.
	deadline := time.Now().Add(30*time.Second + time.Duration(n)*time.Second)
	for {
		all := true
		for _, node := range c.nodes {
			if alive(node.Members()) < n {
				all = false
				break
			}
		}
		if all {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("cluster of %d did not form", n)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func alive(ms []cluster.Member) int {
	k := 0
	for _, m := range ms {
		if m.Alive {
			k++
		}
	}
	return k
}

func (c *benchCluster) close() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if n.Cluster == nil || n.dead {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); n.Close() }()
	}
	wg.Wait()
}

// onOwner runs on every gateway's table callback.
func (c *benchCluster) onOwner(_, r cluster.Record) {
	now := time.Now()
	k := claimKey{r.Client, r.Version, r.Time, r.Owner}
	c.mu.Lock()
	t := c.claims[k]
	if t == nil {
		t = &claimTrack{}
		c.claims[k] = t
	}
	t.applied++
	t.last = now
	c.mu.Unlock()
}

func (n *benchNode) onMembers(ms []cluster.Member) {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	seen := make(map[string]bool, len(ms))
	for _, m := range ms {
		seen[m.Name] = true
		n.members[m.Name] = true
		if _, ok := n.notAlive[m.Name]; !ok && !m.Alive {
			n.notAlive[m.Name] = now
		}
		if _, ok := n.gone[m.Name]; !ok && (m.Status == "dead" || m.Status == "left") {
			n.gone[m.Name] = now
		}
	}
	// A member missing from the view is dead or left (memberlist drops
	// them from the view some time after).
	for name := range n.members {
		if seen[name] {
			continue
		}
		if _, ok := n.notAlive[name]; !ok {
			n.notAlive[name] = now
		}
		if _, ok := n.gone[name]; !ok {
			n.gone[name] = now
		}
	}
}

// claim makes node i claim client at a random endpoint and returns the
// record key, or false when the claim changed nothing.
func (c *benchCluster) claim(i int, client wgkey.Key, timed bool) (claimKey, bool) {
	ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(mrand.IntN(250) + 1)}), uint16(1024+mrand.IntN(60000)))
	start := time.Now()
	r, ok := c.nodes[i].Claim(client, ep, cluster.ReasonHandshake)
	if !ok {
		return claimKey{}, false
	}
	k := claimKey{r.Client, r.Version, r.Time, r.Owner}
	if timed {
		c.mu.Lock()
		t := c.claims[k]
		if t == nil {
			t = &claimTrack{}
			c.claims[k] = t
		}
		t.start = start
		c.mu.Unlock()
	}
	return k, true
}

// pace calls f every 1/rate seconds (catching up after a late tick) until
// it has been called count times or for d, whichever bound is set.
func pace(ctx context.Context, rate float64, count int, d time.Duration, f func(i int)) int {
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	i := 0
	for ; count <= 0 || i < count; i++ {
		at := start.Add(time.Duration(i) * interval)
		if d > 0 && at.Sub(start) >= d {
			break
		}
		if wait := time.Until(at); wait > 0 {
			select {
			case <-ctx.Done():
				return i
			case <-time.After(wait):
			}
		}
		f(i)
	}
	return i
}

// wait returns when every key in ks was applied by every live gateway, or
// after timeout.
func (c *benchCluster) wait(ctx context.Context, ks []claimKey, timeout time.Duration) {
	live := c.live()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		done := true
		c.mu.Lock()
		for _, k := range ks {
			if c.claims[k].applied < live {
				done = false
				break
			}
		}
		c.mu.Unlock()
		if done {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *benchCluster) live() int {
	k := 0
	for _, n := range c.nodes {
		if !n.dead {
			k++
		}
	}
	return k
}

// result summarises the timed claims among ks.
func (c *benchCluster) result(ks []claimKey, rate float64) ConvergencePoint {
	p := ConvergencePoint{Profile: c.profile, WAN: c.wan, Nodes: c.live(), Rate: rate, Claims: len(ks)}
	var ds []time.Duration
	c.mu.Lock()
	for _, k := range ks {
		t := c.claims[k]
		if t.applied >= p.Nodes && !t.start.IsZero() {
			ds = append(ds, t.last.Sub(t.start))
		}
	}
	c.mu.Unlock()
	p.Converged = len(ds)
	p.P50Ms = ms(quantile(ds, 0.50))
	p.P99Ms = ms(quantile(ds, 0.99))
	p.MaxMs = ms(quantile(ds, 1))
	return p
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e5) / 10 }

// quantile returns the nearest-rank q-quantile of ds (0 for none).
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// convergence times count claims, each of a client not claimed before, by
// random gateways at rate per second.
func (c *benchCluster) convergence(ctx context.Context, count int, rate float64, timeout time.Duration) ConvergencePoint {
	count = min(count, len(c.clients))
	perm := mrand.Perm(len(c.clients))
	var ks []claimKey
	pace(ctx, rate, count, 0, func(i int) {
		if k, ok := c.claim(mrand.IntN(len(c.nodes)), c.clients[perm[i]], true); ok {
			ks = append(ks, k)
		}
	})
	c.wait(ctx, ks, timeout)
	return c.result(ks, rate)
}

func (c *benchCluster) traffic() trafficSnapshot {
	var s trafficSnapshot
	for _, n := range c.nodes {
		t := n.t.sent.snapshot()
		s.PacketBytes += t.PacketBytes
		s.Packets += t.Packets
		s.StreamBytes += t.StreamBytes
	}
	return s
}

// load makes rate claims per second of random clients by random gateways
// for d, then measures the same cluster idle for as long.
func (c *benchCluster) load(ctx context.Context, rate float64, d, timeout time.Duration) GossipPoint {
	g := GossipPoint{Profile: c.profile, WAN: c.wan, Nodes: len(c.nodes), Seconds: d.Seconds()}
	var ks []claimKey
	before, start := c.traffic(), time.Now()
	made := pace(ctx, rate, 0, d, func(int) {
		if k, ok := c.claim(mrand.IntN(len(c.nodes)), c.clients[mrand.IntN(len(c.clients))], true); ok {
			ks = append(ks, k)
		}
	})
	loadSec := time.Since(start).Seconds()
	after := c.traffic()
	g.Rate = float64(made) / loadSec
	// Let the last claims finish spreading before the idle window.
	ks = c.unsuperseded(ks)
	c.wait(ctx, ks, timeout)
	g.Convergence = c.result(ks, g.Rate)
	time.Sleep(min(d, time.Second))
	idle0, idleStart := c.traffic(), time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	idle1 := c.traffic()
	idleSec := time.Since(idleStart).Seconds()

	n := float64(len(c.nodes))
	per := func(a, b trafficSnapshot, sec float64) (packets, streams float64) {
		return float64(b.PacketBytes-a.PacketBytes) / sec / n, float64(b.StreamBytes-a.StreamBytes) / sec / n
	}
	g.LoadPacketBps, g.LoadStreamBps = per(before, after, loadSec)
	g.IdlePacketBps, g.IdleStreamBps = per(idle0, idle1, idleSec)
	g.ClaimsBps = g.LoadPacketBps - g.IdlePacketBps
	if g.Rate > 0 {
		g.BytesPerClaim = g.ClaimsBps * n / g.Rate
	}
	g.Records = len(c.nodes[0].Table().Snapshot())
	return g
}

// unsuperseded returns the keys of ks that no other claim of the same
// client beat (in the table's order: version, then HLC time, then owner,
// so of two concurrent claims the later one): only those can reach every
// gateway.
func (c *benchCluster) unsuperseded(ks []claimKey) []claimKey {
	latest := make(map[wgkey.Key]claimKey)
	for _, k := range ks {
		if l, ok := latest[k.client]; !ok || k.record().Newer(l.record()) {
			latest[k.client] = k
		}
	}
	out := make([]claimKey, 0, len(latest))
	for _, k := range ks {
		if latest[k.client] == k {
			out = append(out, k)
		}
	}
	return out
}

// failover crashes one live gateway (no leave: its transport just stops)
// and times how long until every other gateway sees it not alive, then
// gone.
func (c *benchCluster) failover(ctx context.Context, trial int, timeout time.Duration) (FailoverPoint, error) {
	// Crash a different gateway each trial, never the one others joined.
	if len(c.nodes) < 3 {
		return FailoverPoint{}, errors.New("crashes need at least 3 gateways")
	}
	victim := c.nodes[1+trial*len(c.nodes)/7%(len(c.nodes)-1)]
	if victim.dead {
		return FailoverPoint{}, errors.New("not enough gateways for another crash")
	}
	name := victim.Name()
	start := time.Now()
	victim.dead = true
	victim.Close()
	f := FailoverPoint{Profile: c.profile, Nodes: len(c.nodes), Trial: trial + 1}
	deadline := start.Add(timeout)
	for {
		var notAlive, gone time.Time
		all := true
		for _, n := range c.nodes {
			if n.dead {
				continue
			}
			n.mu.Lock()
			na, ok1 := n.notAlive[name]
			g, ok2 := n.gone[name]
			n.mu.Unlock()
			if !ok1 || !ok2 {
				all = false
				break
			}
			if na.After(notAlive) {
				notAlive = na
			}
			if g.After(gone) {
				gone = g
			}
		}
		if all {
			f.NotAliveS = notAlive.Sub(start).Seconds()
			f.DeadS = gone.Sub(start).Seconds()
			return f, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return f, fmt.Errorf("crash of %s not seen by every gateway within %s", name, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Markdown renders the cluster report.
func (r *ClusterReport) Markdown() string {
	var b strings.Builder
	m := r.Machine
	keys := fmt.Sprintf("client indices (%d B per record)", r.RecordBytes)
	if r.FullKeys {
		keys = fmt.Sprintf("full client keys (%d B per record)", r.RecordBytes)
	}
	fmt.Fprintf(&b, "Client ownership over gossip (`anyguard bench cluster`), %s, %s, %d cores: real `cluster.Cluster` gateways\n", m.Date[:10], m.CPU, m.Cores)
	fmt.Fprintf(&b, "in one process, memberlist over UDP/TCP on 127.0.0.1, encrypted; %d configured clients gossiped as %s;\n", r.Clients, keys)
	fmt.Fprintf(&b, "machine load average %.1f at the start, %.1f at the end (other work stretches the tails).\n", r.LoadAvg[0], r.LoadAvg[1])
	b.WriteString("\"WAN delays\": gateways in 3 regions, round trips of 50, 100 and 150 ms between regions, injected in the transport.\n\n")
	b.WriteString("| profile | gateways | claims/s | claim → last gateway p50 | p99 | max | converged |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	row := func(label string, p ConvergencePoint) {
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f ms | %.0f ms | %.0f ms | %d/%d |\n",
			label, p.Nodes, p.Rate, p.P50Ms, p.P99Ms, p.MaxMs, p.Converged, p.Claims)
	}
	for _, p := range r.Convergence {
		row(profileLabel(p.Profile, p.WAN), p)
	}
	for _, g := range r.Gossip {
		row(profileLabel(g.Profile, g.WAN)+", under load", g.Convergence)
	}
	if len(r.Gossip) > 0 {
		b.WriteString("\n| profile | gateways | claims/s | all gossip under load, per gateway | of which for the claims | per claim, whole cluster | idle UDP | idle push/pull |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, g := range r.Gossip {
			fmt.Fprintf(&b, "| %s | %d | %.0f | %.1f kB/s | %.1f kB/s | %.0f B | %.1f kB/s | %.1f kB/s (%d records) |\n",
				profileLabel(g.Profile, g.WAN), g.Nodes, g.Rate, (g.LoadPacketBps+g.LoadStreamBps)/1e3, g.ClaimsBps/1e3, g.BytesPerClaim,
				g.IdlePacketBps/1e3, g.IdleStreamBps/1e3, g.Records)
		}
	}
	if len(r.Failover) > 0 {
		b.WriteString("\n| crashed gateway (closed, no leave) | gateways | crashes | every other gateway's view drops it: median | max |\n")
		b.WriteString("|---|---:|---:|---:|---:|\n")
	}
	for i := 0; i < len(r.Failover); {
		f := r.Failover[i]
		var ds []time.Duration
		for ; i < len(r.Failover) && r.Failover[i].Nodes == f.Nodes; i++ {
			ds = append(ds, time.Duration(r.Failover[i].NotAliveS*float64(time.Second)))
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %.2f s | %.2f s |\n", f.Profile, f.Nodes, len(ds), quantile(ds, 0.5).Seconds(), quantile(ds, 1).Seconds())
	}
	b.WriteString("\nClaim → last gateway: from the call to Claim until the last gateway's OnOwner for that record (one process, one clock).\n")
	b.WriteString("Crashed gateway: until every other gateway's OnMembers view shows it dead, which is what moves its prefixes to\n")
	b.WriteString("another gateway of its region (memberlist announces no suspicion, so the view changes at dead).\n")
	b.WriteString("Bytes: sent per gateway as they leave the transport (encrypted), mean over gateways. All gossip: UDP and TCP during\n")
	b.WriteString("the claims (direct sends, relays, probes, push/pull digests and repairs). For the claims: UDP during the claims minus\n")
	b.WriteString("UDP in as long a window without claims. Idle push/pull: TCP anti-entropy without claims, a digest of the table\n")
	b.WriteString("(4 B per 32 records) plus the records of buckets that differ.\n")
	return b.String()
}

func profileLabel(profile string, wan bool) string {
	if wan {
		return profile + " + WAN delays"
	}
	return profile
}
