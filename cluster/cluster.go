package cluster

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/anyguard/anyguard/wgkey"
)

// Profiles of gossip and failure detection timing.
const (
	ProfileLAN = "lan" // regions with low latency between them
	ProfileWAN = "wan" // regions across continents
)

// Config configures a gateway's membership.
type Config struct {
	Name      string         // node name, unique in the cluster
	Bind      netip.AddrPort // gossip listen address (TCP and UDP)
	Advertise netip.AddrPort // address the others use; zero: memberlist chooses from Bind
	Join      []string       // host:port of members to join
	// SecretKey encrypts gossip with AES-256-GCM; nil runs without
	// encryption, which the caller must have allowed explicitly.
	SecretKey []byte
	Profile   string // ProfileLAN (default) or ProfileWAN
	Meta      Meta   // this gateway's metadata
	// Clients is the client set, identical on every gateway: records
	// travel as indices into it, and records of other clients are refused
	// (nil: no client set, every client accepted).
	Clients []wgkey.Key
	Logger  *slog.Logger
	// Now is the wall clock behind the HLC (tests skew it); nil: time.Now.
	Now func() time.Time
	// OnMembers is called, one call at a time, with the current members
	// whenever membership or a member's metadata changed.
	OnMembers func([]Member)
	// OnOwner is called for every change of a client's ownership record,
	// one call at a time, in order (see TableOptions.OnChange).
	OnOwner func(old, new Record)
	// Transport replaces memberlist's network transport (fault injection).
	Transport memberlist.Transport
	// Table tunes the ownership table; OnChange is set from OnOwner.
	Table TableOptions
	// PushPullInterval overrides the profile's anti-entropy period (tests).
	PushPullInterval time.Duration
	// GossipToTheDeadTime overrides how long memberlist keeps a dead
	// member before forgetting it (tests of partitions longer than that).
	GossipToTheDeadTime time.Duration
	// ReconnectTimeout is how long a member that went missing (not one
	// that left) is looked for; zero means DefaultReconnectTimeout.
	ReconnectTimeout time.Duration
}

// Member is one gateway as this gateway sees it.
type Member struct {
	Name   string
	Addr   netip.AddrPort // gossip address
	Meta   Meta
	Alive  bool   // not gone (memberlist reports no suspicion: a suspect member is alive until declared dead)
	Status string // alive, dead, left (it announced draining before it went)
	Self   bool
}

// Stats are counters for metrics.
type Stats struct {
	MsgsReceived   uint64 // ownership records received
	MsgsBad        uint64 // messages that did not decode
	RecordsApplied uint64 // records that changed the table
	Relayed        uint64
	Broadcasts     uint64 // own claims and releases sent
	FanoutErrors   uint64 // direct sends of an own record that failed
	DecryptErrors  uint64 // gossip packets refused for a wrong key or no encryption
	BadMeta        uint64 // members whose metadata did not decode
	PushPulls      uint64
	RepairsSent    uint64 // records sent to a member whose digest differed
	CatchUps       uint64 // digest exchanges begun with a member just learned of
	ReconnectTries uint64 // rounds of joins to missing members or join addresses
	Reconnected    uint64 // members seen alive again after they went missing
	Heals          uint64 // heal lines logged: missing members came back
	Queued         int    // broadcasts waiting
}

// Cluster is a gateway's membership and its replica of client ownership.
type Cluster struct {
	cfg    Config
	logger *slog.Logger
	ml     *memberlist.Memberlist
	queue  *memberlist.TransmitLimitedQueue
	table  *Table
	hlc    *HLC
	codec  atomic.Pointer[Codec] // compact: records as indices into the client set

	meta   atomic.Pointer[[]byte]
	metaMu sync.Mutex // guards cfg.Meta

	viewMu sync.Mutex
	view   map[string]Member    // by name, from membership events
	gone   map[string]time.Time // when each member not alive went
	// peers is every other member memberlist counts as alive or suspect,
	// by name: copies taken in its event callbacks, which run under its
	// node lock. The *Node values Members and LocalNode return are
	// rewritten in place as alive messages arrive, so reading them
	// anywhere else races (go test -race caught repairLoop doing it).
	// Copy on write; replaced under viewMu.
	peers     atomic.Pointer[map[string]*memberlist.Node]
	localAddr netip.AddrPort

	msgs, bad, applied, relayed, sent, fanoutErrs, decryptErrs, badMeta, pushPulls, repairsSent, catchUps atomic.Uint64
	reconnectTries, reconnected, heals                                                                    atomic.Uint64

	rc  reconnector // members to look for after a partition (reconnect.go)
	hyg hygiene     // refused clocks and undecryptable gossip (hygiene.go)

	repairs chan repair // to repairLoop
	joining atomic.Bool // in ml.Join: members found are not asked to catch up (see NotifyJoin)

	membersChanged chan struct{}
	stop           chan struct{}
	closing        atomic.Bool // Leave or Close began: failed sends are expected
	wg             sync.WaitGroup
	closeOnce      sync.Once
}

// Message type bytes of user messages.
const (
	msgRecord = 1 // one ownership record (gossip and fan-out)
	msgBatch  = 2 // a batch of records repairing a member's digest (reliable)
	// A digest (digest.go) sent to a member this gateway just learned of,
	// asking for the records of differing buckets and for the member's
	// own digest in return (msgDigestReply), so that both end up with
	// the greater record of every client (reliable).
	msgDigestAsk   = 3
	msgDigestReply = 4 // the answer to msgDigestAsk: only repairs follow
)

// repairBatch bounds the records of one repair message.
const repairBatch = 4096

// ErrJoin is returned when none of the join addresses answered.
var ErrJoin = errors.New("could not join the cluster")

// New starts the gateway's membership and tries to join cfg.Join once; if
// no member answers it keeps trying in the background (the gateway works
// alone meanwhile) and logs each attempt.
func New(cfg Config) (*Cluster, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Profile == "" {
		cfg.Profile = ProfileLAN
	}
	c := &Cluster{
		cfg:            cfg,
		logger:         cfg.Logger,
		hlc:            NewHLC(cfg.Now, 0),
		membersChanged: make(chan struct{}, 1),
		view:           make(map[string]Member),
		gone:           make(map[string]time.Time),
		stop:           make(chan struct{}),
		repairs:        make(chan repair, 64),
		rc:             reconnector{known: make(map[string]*knownMember), wake: make(chan struct{}, 1), join: slices.Clone(cfg.Join)},
		hyg:            hygiene{skew: make(map[string]*skewMember), logged: make(map[string]time.Time)},
	}
	c.peers.Store(&map[string]*memberlist.Node{})
	c.codec.Store(&Codec{Clients: NewClientSet(cfg.Clients)})
	if err := c.SetMeta(cfg.Meta); err != nil {
		return nil, err
	}
	topts := cfg.Table
	topts.OnChange = cfg.OnOwner
	topts.OnRefused = c.onRefused
	t, err := NewTable(cfg.Name, c.hlc, topts)
	if err != nil {
		return nil, err
	}
	t.Retain(clientFilter(cfg.Clients, c.codec.Load().Clients))
	c.table = t
	if cfg.SecretKey == nil {
		c.logger.Warn("cluster gossip is NOT encrypted or authenticated (cluster.insecure): anyone who reaches the gossip port can join, rewrite client ownership and announce prefixes; set cluster.secret_key outside tests")
	}

	mc := profileConfig(cfg.Profile)
	if cfg.PushPullInterval > 0 {
		mc.PushPullInterval = cfg.PushPullInterval
	}
	if cfg.GossipToTheDeadTime > 0 {
		mc.GossipToTheDeadTime = cfg.GossipToTheDeadTime
	}
	mc.Name = cfg.Name
	mc.BindAddr = cfg.Bind.Addr().String()
	mc.BindPort = int(cfg.Bind.Port())
	if cfg.Advertise.IsValid() {
		mc.AdvertiseAddr = cfg.Advertise.Addr().String()
		mc.AdvertisePort = int(cfg.Advertise.Port())
	}
	mc.Label = "anyguard"
	mc.Delegate = (*delegate)(c)
	mc.Events = (*events)(c)
	mc.Logger = log.New(&logAdapter{c: c}, "", 0)
	var inner memberlist.Transport = cfg.Transport
	if inner == nil {
		nt, err := newTransport(mc)
		if err != nil {
			return nil, fmt.Errorf("cluster: start gossip on %s: %w", cfg.Bind, err)
		}
		inner = nt
	}
	mc.Transport = newCapTransport(inner, c)
	if cfg.SecretKey != nil {
		kr, err := memberlist.NewKeyring(nil, cfg.SecretKey)
		if err != nil {
			return nil, fmt.Errorf("cluster: secret key: %w", err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	c.queue = &memberlist.TransmitLimitedQueue{NumNodes: c.numMembers, RetransmitMult: recordRetransmitMult}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("cluster: start gossip on %s: %w", cfg.Bind, err)
	}
	c.ml = ml
	ln := ml.LocalNode() // nothing rewrites it before Create returns
	a, _ := netip.AddrFromSlice(ln.Addr)
	c.localAddr = netip.AddrPortFrom(a.Unmap(), ln.Port)
	c.wg.Add(3)
	go c.notifyLoop()
	go c.maintain()
	go c.repairLoop()
	if len(cfg.Join) > 0 {
		if err := c.join(); err != nil {
			c.logger.Warn("cluster join failed, running alone and retrying", "join", strings.Join(cfg.Join, ","), "err", err)
		}
	}
	c.wg.Add(1)
	go c.reconnectLoop() // after the first join: it retries what that missed
	c.logger.Info("cluster started", "node", cfg.Name, "bind", cfg.Bind, "profile", cfg.Profile, "encrypted", cfg.SecretKey != nil, "members", ml.NumMembers())
	return c, nil
}

func (c *Cluster) numMembers() int {
	if c.ml == nil {
		return 1
	}
	return c.ml.NumMembers()
}

func (c *Cluster) join() error {
	c.joining.Store(true)
	n, err := c.ml.Join(c.cfg.Join)
	c.joining.Store(false)
	if n == 0 {
		if err == nil {
			return ErrJoin
		}
		return fmt.Errorf("%w: %w", ErrJoin, err)
	}
	c.logger.Info("joined cluster", "node", c.cfg.Name, "contacted", n, "members", c.ml.NumMembers())
	return nil
}

// profileConfig returns memberlist timings for a profile: memberlist's
// presets tuned by measurement (anyguard bench cluster; the figures are in
// docs/benchmarks.md).
func profileConfig(profile string) *memberlist.Config {
	if profile == ProfileWAN {
		mc := memberlist.DefaultWANConfig()
		mc.GossipInterval = 100 * time.Millisecond
		mc.GossipNodes = 4
		mc.RetransmitMult = 5 // see the lan profile
		mc.ProbeInterval = time.Second
		mc.ProbeTimeout = 400 * time.Millisecond
		mc.SuspicionMult = 4
		mc.PushPullInterval = 10 * time.Second
		return mc
	}
	mc := memberlist.DefaultLANConfig()
	mc.GossipInterval = 50 * time.Millisecond
	mc.GossipNodes = 4
	// Every gateway relays a record RetransmitMult × ceil(log10(N+1))
	// times; a gateway that none of them reaches waits for push/pull
	// (seconds), which happens to about N·e^-(that many) of the claims: 3
	// left 1-2% of claims at 30 gateways waiting; 5 leaves ~0.1% for a
	// quarter more gossip bytes (anyguard bench cluster).
	mc.RetransmitMult = 5
	// Crash detection takes a probe to reach the dead gateway, its timeout
	// and the indirect probes (about two intervals), then the suspicion
	// timeout below; every part scales with ProbeInterval. At 400 ms a
	// crash at 30 gateways took 2.3-3.3 s (goal 3 s); 300 ms costs one
	// more probe a second per gateway (≈ 0.1 kB/s). The ack timeout stays
	// far above LAN round trips.
	mc.ProbeInterval = 300 * time.Millisecond
	mc.ProbeTimeout = 150 * time.Millisecond
	// A suspect is declared dead after SuspicionMult × log10(N) probe
	// intervals (0.9 s at 10 gateways, 1.3 s at 30) once another member
	// confirms the suspicion; memberlist waits up to 6 times that for the
	// confirmation, which made one crash in a few take 3.1 s at 10
	// gateways (with 400 ms probes). With a multiplier of 1 it never
	// waits longer: a gateway stalled beyond that is declared dead,
	// refutes when it runs again, and meanwhile only its share of region
	// traffic moves to a peer.
	mc.SuspicionMult = 3
	mc.SuspicionMaxTimeoutMult = 1
	mc.PushPullInterval = 5 * time.Second
	return mc
}

// SetClients replaces the client set (after a reload) and announces its
// tag, so that others know which compact records this gateway reads. The
// records of clients no longer in the set are forgotten, and refused from
// now on (Table.Retain); a nil set accepts every client.
func (c *Cluster) SetClients(clients []wgkey.Key) error {
	set := NewClientSet(clients)
	c.codec.Store(&Codec{Clients: set})
	if n := c.table.Retain(clientFilter(clients, set)); n > 0 {
		c.logger.Info("forgot the ownership records of clients removed from the configuration", "count", n)
	}
	return c.SetMeta(c.Meta())
}

// sendCodec is the codec for records this gateway sends: compact (4-byte
// client indices) only while every live member announces the same client
// set; during a rolling change of the client set, full keys, which every
// gateway reads.
func (c *Cluster) sendCodec() Codec {
	codec := *c.codec.Load()
	tag := codec.Clients.Tag()
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	for _, m := range c.view {
		if m.Alive && !m.Self && m.Meta.ClientTag != tag {
			return Codec{}
		}
	}
	return codec
}

// Meta returns this gateway's metadata as last set.
func (c *Cluster) Meta() Meta {
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	return c.cfg.Meta
}

// SetMeta replaces this gateway's metadata and tells the others.
func (c *Cluster) SetMeta(m Meta) error {
	m.ClientTag = c.codec.Load().Clients.Tag()
	b, err := m.Encode()
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	c.meta.Store(&b)
	c.metaMu.Lock()
	c.cfg.Meta = m
	c.metaMu.Unlock()
	if c.ml != nil {
		if err := c.ml.UpdateNode(2 * time.Second); err != nil {
			return fmt.Errorf("cluster: announce metadata: %w", err)
		}
	}
	return nil
}

// Claim records that this gateway now holds client's session, reached at
// endpoint, and broadcasts it. It returns false when nothing changed (this
// gateway already owned it there) or flap damping held the claim back.
func (c *Cluster) Claim(client wgkey.Key, endpoint netip.AddrPort, reason Reason) (Record, bool) {
	r, ok := c.table.Claim(client, endpoint, reason)
	if ok {
		c.broadcast(r)
	}
	return r, ok
}

// Release gives up this gateway's ownership of client (a tombstone).
func (c *Cluster) Release(client wgkey.Key) (Record, bool) {
	r, ok := c.table.Release(client)
	if ok {
		c.broadcast(r)
	}
	return r, ok
}

// Owner returns the current ownership record of client.
func (c *Cluster) Owner(client wgkey.Key) (Record, bool) { return c.table.Get(client) }

// Table returns the ownership replica.
func (c *Cluster) Table() *Table { return c.table }

// HLC returns the gateway's hybrid logical clock.
func (c *Cluster) HLC() *HLC { return c.hlc }

// LocalAddr returns the gossip address this gateway advertises.
func (c *Cluster) LocalAddr() netip.AddrPort { return c.localAddr }

// Name returns this gateway's node name.
func (c *Cluster) Name() string { return c.cfg.Name }

// recordRetransmitMult is how often each gateway gossips a record it
// applied, times ceil(log10(N+1)): 2 transmissions each at 10-99
// gateways. The originator sends every record to every member directly
// (fanout), so gossip is only the repair path for a lost datagram: a
// member that missed the direct one hears it from one of about 2N relays
// with probability 1 - e^-2 per missed datagram, and otherwise at the next
// push/pull. Relaying 5 times as memberlist's own broadcasts do cost 2.5×
// the bytes for latency that the fan-out already gives (anyguard bench
// cluster).
const recordRetransmitMult = 1

// broadcast sends one of this gateway's own records: straight to every
// other live member (one datagram each, so every member has it one network
// hop after the claim, whatever the cluster size), and into the gossip
// queue, from which it and every member that applies it relay it a few
// times in case a datagram was lost.
func (c *Cluster) broadcast(r Record) {
	msg, err := c.sendCodec().AppendRecord([]byte{msgRecord}, r)
	if err != nil {
		c.logger.Error("cannot encode ownership record", "err", err)
		return
	}
	c.sent.Add(1)
	c.fanout(msg)
	c.queue.QueueBroadcast(&recordBroadcast{name: string(r.Client[:]), msg: msg})
}

// fanout sends msg to every member not known dead but this one, best
// effort (UDP, encrypted like all gossip).
func (c *Cluster) fanout(msg []byte) {
	for _, n := range *c.peers.Load() {
		if err := c.ml.SendBestEffort(n, msg); err != nil {
			c.fanoutErrs.Add(1)
			c.logger.Debug("direct send of an ownership record failed", "member", n.Name, "err", err)
		}
	}
}

// ForgetGone is how long a dead or left gateway stays listed in Members
// (and in /status) before it is forgotten, so that a fleet that replaces
// its gateways does not list every one it ever had.
const ForgetGone = 30 * time.Minute

// pruneView forgets members that went before cut and returns how many.
func (c *Cluster) pruneView(cut time.Time) int {
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	n := 0
	for name, at := range c.gone {
		if at.Before(cut) {
			delete(c.gone, name)
			delete(c.view, name)
			n++
		}
	}
	return n
}

// Members returns every gateway this one knows, itself included, as the
// membership events left them (dead and left gateways stay listed, not
// alive, for ForgetGone).
func (c *Cluster) Members() []Member {
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	out := make([]Member, 0, len(c.view))
	for _, m := range c.view {
		out = append(out, m)
	}
	return out
}

// record copies a node into the view. memberlist calls the event delegate
// while it holds its own lock and mutates its nodes later, so the copy is
// taken here, never by reading memberlist's nodes at another time.
//
// memberlist v0.7.0 never fills in Node.State (its node states live in a
// private struct), so the status comes from the event alone: alive until
// NotifyLeave, then "left" when the member had announced it was draining
// (a graceful shutdown) and "dead" otherwise.
func (c *Cluster) record(n *memberlist.Node, gone bool) Meta {
	m, err := DecodeMeta(n.Meta)
	if err != nil {
		c.badMeta.Add(1)
	}
	ap, _ := netip.AddrFromSlice(n.Addr)
	mem := Member{
		Name:   n.Name,
		Addr:   netip.AddrPortFrom(ap.Unmap(), n.Port),
		Meta:   m,
		Alive:  !gone && err == nil,
		Status: "alive",
		Self:   n.Name == c.cfg.Name,
	}
	c.viewMu.Lock()
	if gone {
		mem.Status = "dead"
		if prev, ok := c.view[n.Name]; ok && prev.Meta.State == StateDraining {
			mem.Status = "left"
		}
		if err != nil { // unreadable now: keep what it announced before
			mem.Meta = c.view[n.Name].Meta
		}
	}
	c.view[n.Name] = mem
	if gone {
		c.gone[n.Name] = time.Now()
	} else {
		delete(c.gone, n.Name)
	}
	if !mem.Self {
		c.memberSeen(n.Name, mem.Addr, !gone, gone && mem.Status == "left")
		peers := maps.Clone(*c.peers.Load())
		if gone {
			delete(peers, n.Name)
		} else {
			cp := *n
			cp.Addr = slices.Clone(n.Addr)
			cp.Meta = slices.Clone(n.Meta)
			peers[n.Name] = &cp
		}
		c.peers.Store(&peers)
	}
	c.viewMu.Unlock()
	return mem.Meta
}

// Stats returns the counters.
func (c *Cluster) Stats() Stats {
	return Stats{
		MsgsReceived:   c.msgs.Load(),
		MsgsBad:        c.bad.Load(),
		RecordsApplied: c.applied.Load(),
		Relayed:        c.relayed.Load(),
		Broadcasts:     c.sent.Load(),
		DecryptErrors:  c.decryptErrs.Load(),
		BadMeta:        c.badMeta.Load(),
		PushPulls:      c.pushPulls.Load(),
		RepairsSent:    c.repairsSent.Load(),
		CatchUps:       c.catchUps.Load(),
		ReconnectTries: c.reconnectTries.Load(),
		Reconnected:    c.reconnected.Load(),
		Heals:          c.heals.Load(),
		FanoutErrors:   c.fanoutErrs.Load(),
		Queued:         c.queue.NumQueued(),
	}
}

// Leave tells the others this gateway is going (they stop routing to it
// at once instead of waiting for failure detection) and stops gossip.
//
// A gateway that leaves announces that it is draining first (unless it
// did already), so that the others record it as left, not failed: they do
// not try to reconnect to it, and they release its clients later (see
// ReleaseLeftAfter).
func (c *Cluster) Leave(timeout time.Duration) error {
	if m := c.Meta(); m.State != StateDraining {
		m.State = StateDraining
		if err := c.SetMeta(m); err != nil {
			c.logger.Debug("leaving: draining not announced", "err", err)
		}
	}
	c.closing.Store(true)
	err := c.ml.Leave(timeout)
	c.Close()
	return err
}

// Close stops gossip without telling the others (they detect the failure).
func (c *Cluster) Close() {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		close(c.stop)
		c.ml.Shutdown()
		c.wg.Wait()
	})
}

// notifyLoop calls OnMembers, coalescing bursts of membership events.
func (c *Cluster) notifyLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case <-c.membersChanged:
		}
		if c.cfg.OnMembers != nil {
			c.cfg.OnMembers(c.Members())
		}
	}
}

func (c *Cluster) signalMembers() {
	select {
	case c.membersChanged <- struct{}{}:
	default:
	}
}

// maintain collects old tombstones and forgets members gone long ago.
// (Joining again while alone or partitioned is reconnectLoop's job.)
func (c *Cluster) maintain() {
	defer c.wg.Done()
	gc := time.NewTicker(time.Minute)
	defer gc.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-gc.C:
			if n := c.table.GC(c.hlc.Now()); n > 0 {
				c.logger.Debug("ownership tombstones collected", "count", n)
			}
			c.releaseLeft(time.Now())
			if n := c.pruneView(time.Now().Add(-ForgetGone)); n > 0 {
				c.logger.Debug("forgot members gone long ago", "count", n)
				c.signalMembers()
			}
		}
	}
}

// delegate implements memberlist.Delegate; its methods run on memberlist's
// goroutines and must not block.
type delegate Cluster

func (d *delegate) NodeMeta(limit int) []byte {
	b := *(*Cluster)(d).meta.Load()
	if len(b) > limit {
		return nil
	}
	return b
}

func (d *delegate) NotifyMsg(b []byte) {
	c := (*Cluster)(d)
	if len(b) > 0 && b[0] == msgBatch {
		c.mergeBatch(b[1:], "repair")
		return
	}
	if len(b) > 0 && (b[0] == msgDigestAsk || b[0] == msgDigestReply) {
		c.digestMsg(b[1:], b[0] == msgDigestAsk)
		return
	}
	if len(b) == 0 || b[0] != msgRecord {
		c.bad.Add(1)
		return
	}
	c.msgs.Add(1)
	r, _, err := c.codec.Load().DecodeRecord(b[1:])
	if err != nil {
		c.bad.Add(1)
		return
	}
	applied, err := c.table.Apply(r)
	if err != nil {
		c.bad.Add(1)
		return
	}
	if applied {
		// memberlist never relays user messages: relay each record the
		// first time it changes this replica.
		// Re-encoded, not copied: the sender's encoding may be compact
		// for a client set that not every member shares.
		c.applied.Add(1)
		c.relayed.Add(1)
		msg, err := c.sendCodec().AppendRecord([]byte{msgRecord}, r)
		if err != nil {
			return
		}
		c.queue.QueueBroadcast(&recordBroadcast{name: string(r.Client[:]), msg: msg})
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return (*Cluster)(d).queue.GetBroadcasts(overhead, limit)
}

// LocalState is this gateway's side of a push/pull: the whole table when
// either side is joining, otherwise a digest of it (see digest.go).
func (d *delegate) LocalState(join bool) []byte {
	c := (*Cluster)(d)
	if !join {
		bits := digestBits(c.table.Stats().Clients)
		return appendDigest(nil, c.cfg.Name, bits, c.table.Digest(bits))
	}
	b, err := c.sendCodec().AppendBatch(nil, c.table.Snapshot())
	if err != nil {
		c.logger.Error("cannot encode ownership state for push/pull", "err", err)
		return nil
	}
	return b
}

// MergeRemoteState takes the other side of a push/pull: a whole table is
// merged; a digest is compared, and the records of every bucket that
// differs are sent back to its sender (by repairLoop, off memberlist's
// goroutine).
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	c := (*Cluster)(d)
	c.pushPulls.Add(1)
	if len(buf) > 0 && buf[0] == stateDigest {
		c.digestMsg(buf, false)
		return
	}
	c.mergeBatch(buf, "push/pull")
}

func (c *Cluster) mergeBatch(buf []byte, via string) {
	rs, err := c.codec.Load().DecodeBatch(buf)
	if err != nil {
		c.bad.Add(1)
		c.logger.Warn("refused ownership records from a member", "via", via, "err", err)
		return
	}
	changed, err := c.table.Merge(rs)
	if err != nil {
		c.bad.Add(1)
	}
	if len(changed) > 0 {
		c.applied.Add(uint64(len(changed)))
		c.logger.Debug("ownership records merged", "via", via, "changed", len(changed))
	}
}

// digestMsg takes a member's digest (from push/pull, a msgDigestAsk or a
// msgDigestReply): the records of the buckets that differ go back to it,
// and for an ask this gateway's own digest too.
func (c *Cluster) digestMsg(b []byte, ask bool) {
	dg, err := decodeDigest(b)
	if err != nil {
		c.bad.Add(1)
		c.logger.Warn("refused ownership digest from a member", "err", err)
		return
	}
	if dg.from == c.cfg.Name {
		return
	}
	c.queueRepair(repair{to: dg.from, bits: dg.bits, hashes: dg.hashes, answer: ask})
}

// queueRepair hands rp to repairLoop unless it is busy; the next periodic
// push/pull compares the tables again.
func (c *Cluster) queueRepair(rp repair) {
	select {
	case c.repairs <- rp:
	default:
		c.logger.Debug("ownership repair skipped: repairs busy", "member", rp.to)
	}
}

// repair is work for repairLoop about the member named to: send it the
// records of the buckets where its digest (bits, hashes) differs from this
// table, preceded, when answer is set, by this table's digest in a
// msgDigestReply; or, when ask is set, begin a catch-up: send it this
// table's digest in a msgDigestAsk.
type repair struct {
	to     string
	bits   uint8
	hashes []uint32
	answer bool
	ask    bool
	tries  int // lookups of to that found no such member
}

// A member that sent a digest may not be in this gateway's view yet (the
// member this gateway joined through asks it before its join's push/pull
// is merged): repairLoop looks it up again every repairRetry, repairTries
// times.
const (
	repairRetry = 100 * time.Millisecond
	repairTries = 10
)

// repairLoop sends members the records of the buckets where their digest
// differs from this table.
func (c *Cluster) repairLoop() {
	defer c.wg.Done()
	for {
		var rp repair
		select {
		case <-c.stop:
			return
		case rp = <-c.repairs:
		}
		to := (*c.peers.Load())[rp.to]
		if to == nil {
			if rp.tries++; rp.tries < repairTries {
				time.AfterFunc(repairRetry, func() { c.queueRepair(rp) })
			}
			continue
		}
		if rp.ask || rp.answer {
			typ := byte(msgDigestReply)
			if rp.ask {
				typ = msgDigestAsk
				c.catchUps.Add(1)
			}
			bits := digestBits(c.table.Stats().Clients)
			msg := appendDigest([]byte{typ}, c.cfg.Name, bits, c.table.Digest(bits))
			if err := c.ml.SendReliable(to, msg); err != nil {
				c.logger.Debug("ownership digest not sent", "member", rp.to, "err", err)
				continue
			}
			if rp.ask {
				continue
			}
		}
		rs := c.table.Differing(rp.bits, rp.hashes)
		if len(rs) == 0 {
			continue
		}
		codec := c.sendCodec()
		for len(rs) > 0 {
			chunk := rs[:min(len(rs), repairBatch)]
			rs = rs[len(chunk):]
			msg, err := codec.AppendBatch([]byte{msgBatch}, chunk)
			if err == nil {
				err = c.ml.SendReliable(to, msg)
			}
			if err != nil {
				c.logger.Debug("ownership repair not sent", "member", rp.to, "err", err)
				break
			}
			c.repairsSent.Add(uint64(len(chunk)))
		}
	}
}

// events implements memberlist.EventDelegate.
type events Cluster

// NotifyJoin records a member this gateway just learned of and begins a
// catch-up with it. Until this gateway knew the member, its own claims went
// to every other member but that one, and gossip reaches any one member
// only with some probability: without the catch-up, the member could hold
// a stale owner until the next periodic push/pull picked this pair (seconds
// to a minute). The members a gateway finds while joining are skipped:
// its join took a whole table, and each of them begins a catch-up with it.
func (e *events) NotifyJoin(n *memberlist.Node) {
	c := (*Cluster)(e)
	m := c.record(n, false)
	c.logger.Info("member joined", "node", n.Name, "region", m.Region, "addr", n.Address())
	c.signalMembers()
	if n.Name != c.cfg.Name && !c.joining.Load() {
		c.queueRepair(repair{to: n.Name, ask: true})
	}
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	c := (*Cluster)(e)
	m := c.record(n, true)
	how := "failed"
	if m.State == StateDraining {
		how = "left"
	}
	c.logger.Info("member "+how, "node", n.Name, "region", m.Region, "addr", n.Address())
	c.signalMembers()
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	c := (*Cluster)(e)
	m := c.record(n, false)
	c.logger.Info("member updated", "node", n.Name, "region", m.Region, "state", m.State)
	c.signalMembers()
}

type recordBroadcast struct {
	name string
	msg  []byte
}

func (b *recordBroadcast) Invalidates(o memberlist.Broadcast) bool {
	nb, ok := o.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.name
}
func (b *recordBroadcast) Name() string    { return b.name }
func (b *recordBroadcast) Message() []byte { return b.msg }
func (b *recordBroadcast) Finished()       {}

// logAdapter turns memberlist's log lines ("[LEVEL] memberlist: ...")
// into structured logs and counts refused (undecryptable) packets.
type logAdapter struct{ c *Cluster }

func (l *logAdapter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	if i := strings.Index(line, "["); i >= 0 {
		line = line[i:]
	}
	level := slog.LevelInfo
	switch {
	case strings.HasPrefix(line, "[ERR]"):
		level = slog.LevelWarn
	case strings.HasPrefix(line, "[WARN]"):
		level = slog.LevelWarn
	case strings.HasPrefix(line, "[DEBUG]"):
		level = slog.LevelDebug
	}
	if isUndecryptable(line) {
		// Anyone can send these: count every one, log one per source a
		// minute.
		l.c.decryptErrs.Add(1)
		if !l.c.logUndecryptable(line) {
			level = slog.LevelDebug
		}
	} else if (isUnlabeled(line) || isEmptyDatagram(line)) && !l.c.logUndecryptable(line) {
		level = slog.LevelDebug
	} else if strings.Contains(line, "failed to resolve") && !l.c.logOnce(line) {
		// A join address that does not resolve is tried again every
		// few seconds while a member is missing: once a minute is enough.
		level = slog.LevelDebug
	}
	if _, msg, ok := strings.Cut(line, "memberlist: "); ok {
		line = msg
	}
	if l.c.closing.Load() {
		// Leaving: probes and sends fail on this gateway's own closing
		// sockets, which says nothing about the network.
		level = min(level, slog.LevelDebug)
	}
	l.c.logger.Log(context.Background(), level, "gossip: "+line, "node", l.c.cfg.Name)
	return len(p), nil
}
