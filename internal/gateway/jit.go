package gateway

import (
	"encoding/binary"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	wgdevice "golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ratelimiter"

	"github.com/anyguard/anyguard/device"
	"github.com/anyguard/anyguard/device/handshake"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/keys"
)

// Just-in-time peers.
//
// The configured clients live in the gateway's own index (byKey), not in
// the wireguard-go device: a device peer costs ≈ 18 KB, two goroutines and
// an X25519 to add, and a device holds at most 65,536. A client becomes a
// device peer when it sends a handshake initiation, and stops being one
// when it has been idle longer than any session can live.
//
// The client bind holds every handshake initiation back from the device
// (on its receive goroutine: a copy and a channel send). One worker reads
// it as the Noise responder would (mac1, one X25519 with the initiator's
// ephemeral key, opening the initiator's static key), authenticates it
// with the static-static secret (one X25519 per client, kept) and refuses
// timestamps not newer than the last one seen here, so a replayed
// initiation cannot re-create a peer. (An initiation of a client that is
// already a device peer, from the endpoint where it was last read, skips
// the read: jitfast.go.) A configured client that is not a
// peer is then added, and the initiation is released to the device, which
// completes the handshake on that very initiation. The worker then hands
// the authenticated initiation to the cluster, which claims the client once
// the session it completes carries data (no second X25519; recovery.go).
//
// The work is off the receive goroutine because adding a peer configures
// the device, which waits on a lock that closing the device's socket holds
// while it waits for the receive goroutines; and so that a flood of
// initiations costs the worker's core, not the data path. When the worker
// is behind (jitQueue full), initiations are dropped: the client retries.
//
// Under load the worker's X25519s are what a flood would spend, so the
// receive goroutine applies WireGuard's DoS defence itself, before
// anything is queued, as wireguard-go does before its own (which never
// sees load here: the worker feeds it at its own pace). While the queue
// is an eighth full, and for a second after, an initiation with a bad mac1
// is dropped; one without a valid mac2 gets a cookie reply (bound to its
// source address, so a spoofed source never gets one back) and is
// dropped; one with a valid mac2 is rate-limited per source IP (20/s,
// bursts of 5: wireguard-go's limiter). Real clients retry with the
// cookie after 5 s. Out of load none of this costs anything.
//
// The device itself must never be under load: it would demand cookies of
// its own (another secret), a client's retry with one would fail the
// gateway's check and get the gateway's cookie, and so on: nobody gets
// through. The worker is faster than the device (at most one X25519
// ladder per initiation, none for a live peer's, against its seven), so
// it paces its releases: at most
// releaseWindow released initiations unanswered by the device (which is
// under load at 128 queued).
//
// Unknown keys (not configured, not a device peer) are dropped and counted:
// the device would drop them too, after an X25519 of its own.

// DefaultIdleTimeout is how long a peer stays on the device after its last
// handshake, initiation or addition. WireGuard rejects a session 180 s
// (Reject-After-Time) after its handshake, and a client that keeps sending
// re-handshakes before that (after 120 s), so a peer idle for longer has
// no usable session to lose; the extra 30 s covers the rekey and keepalive
// timeouts (5 s + 10 s) and the lag of the handshake time that the
// responder records at the first data packet.
const DefaultIdleTimeout = 210 * time.Second

// jitQueue bounds the initiations waiting for the worker.
const jitQueue = 1024

// Under load: the queue is jitQueue/8 full, or was within underLoadAfter
// (wireguard-go's QueueHandshakeSize/8 and UnderLoadAfterTime).
const (
	underLoadQueue = jitQueue / 8
	underLoadAfter = wgdevice.UnderLoadAfterTime
)

// Pacing of releases to the device: at most releaseWindow unanswered; after
// waiting releaseStall for answers, the rest count as dropped by the device.
const (
	releaseWindow = 64
	releaseStall  = 50 * time.Millisecond
)

// Reasons a peer leaves the device (anyguard_peers_removed_total).
const (
	removedIdle   = "idle"   // idle longer than the idle timeout
	removedReload = "reload" // removed from the configuration
	removedMoved  = "moved"  // another gateway owns the client now
)

type jit struct {
	g      *Gateway
	logger *slog.Logger
	reader *handshake.InitiationReader
	fast   *fastPath // live clients' endpoints (jitfast.go)
	idle   time.Duration
	queue  chan heldInitiation

	// mu serialises changes of the device's client peers with the index
	// they follow: the worker's additions, the sweep, reload, takeovers
	// and the removal of moved clients. It guards seen.
	mu   sync.Mutex
	seen map[keys.Key]*clientSeen

	added                           atomic.Uint64
	removedIdle, removedReload      atomic.Uint64
	removedMoved                    atomic.Uint64
	accepted, unknown, notAuthentic atomic.Uint64
	replays, unreadable, overload   atomic.Uint64
	cookiesSent, rateLimited        atomic.Uint64
	fastReleased                    atomic.Uint64 // released without a read

	cookies        wgdevice.CookieChecker // mac2 and cookie replies under load
	limiter        ratelimiter.Ratelimiter
	underLoadUntil atomic.Int64 // unix ns

	// released counts the worker's releases; released + answeredBase -
	// the bind's Answered is how many the device has not answered. Worker
	// only.
	released, answeredBase uint64

	stop chan struct{}
	wg   sync.WaitGroup
}

// clientSeen is what the gateway keeps about a client that has sent it an
// authentic initiation: 32 + 12 bytes of handshake state and two times.
type clientSeen struct {
	secret   [32]byte            // DH(gateway static, client static)
	lastTS   handshake.Timestamp // newest initiation timestamp accepted
	lastInit time.Time           // when that initiation arrived
	added    time.Time           // when the peer was last added; zero: never here
	// unread is the newest initiation the device answered while the fast
	// path released the client's initiations unread (jitfast.go).
	unread    [148]byte
	hasUnread bool
}

type heldInitiation struct {
	msg  [148]byte
	from conn.Endpoint
}

func newJIT(g *Gateway, priv keys.Key, idle time.Duration) *jit {
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	j := &jit{
		g:      g,
		logger: g.logger,
		reader: handshake.NewInitiationReader(priv),
		fast:   newFastPath(),
		idle:   idle,
		queue:  make(chan heldInitiation, jitQueue),
		seen:   make(map[keys.Key]*clientSeen),
		stop:   make(chan struct{}),
	}
	j.cookies.Init(wgdevice.NoisePublicKey(priv.Public()))
	return j
}

// start installs the hook on the client bind and starts the worker and
// the idle sweep.
func (j *jit) start() {
	j.limiter.Init()
	j.wg.Add(2)
	go j.work()
	go j.sweepLoop()
	j.g.clients.Bind().SetResponseHook(j.onResponse)
	j.g.clients.Bind().SetInitiationHook(j.onInitiation)
}

func (j *jit) close() {
	if j == nil {
		return
	}
	if j.g.clients != nil {
		j.g.clients.Bind().SetInitiationHook(nil)
		j.g.clients.Bind().SetResponseHook(nil)
	}
	select {
	case <-j.stop:
	default:
		close(j.stop)
		j.limiter.Close()
	}
	j.wg.Wait()
}

// onInitiation runs on the client socket's receive goroutine: it queues a
// copy for the worker and holds the datagram back (the device never sees
// an initiation the worker did not release), dropping it when the queue is
// full. Under load it first demands a cookie (see the top of this file).
func (j *jit) onInitiation(msg []byte, from conn.Endpoint) bool {
	if j.underLoad(time.Now()) {
		if !j.reader.CheckMAC1(msg) {
			j.unreadable.Add(1)
			return true
		}
		src := from.DstToBytes()
		if !j.cookies.CheckMAC2(msg, src) {
			j.sendCookie(msg, from, src)
			return true
		}
		if !j.limiter.Allow(from.DstIP()) {
			j.rateLimited.Add(1)
			return true
		}
	}
	var h heldInitiation
	copy(h.msg[:], msg)
	h.from = from
	select {
	case j.queue <- h:
	default:
		j.overload.Add(1)
	}
	return true
}

// underLoad reports whether the worker is (or was within underLoadAfter)
// so far behind that initiations must carry a cookie.
func (j *jit) underLoad(now time.Time) bool {
	if len(j.queue) >= underLoadQueue {
		j.underLoadUntil.Store(now.Add(underLoadAfter).UnixNano())
		return true
	}
	return j.underLoadUntil.Load() > now.UnixNano()
}

// sendCookie answers the initiation msg (mac1 checked) with a cookie
// reply to its source from (src: its address as bytes): 64 bytes for 148,
// so no amplification.
func (j *jit) sendCookie(msg []byte, from conn.Endpoint, src []byte) {
	sender := binary.LittleEndian.Uint32(msg[4:8])
	reply, err := j.cookies.CreateReply(msg, sender, src)
	if err != nil {
		return
	}
	var b [wgdevice.MessageCookieReplySize]byte
	binary.LittleEndian.PutUint32(b[0:], reply.Type)
	binary.LittleEndian.PutUint32(b[4:], reply.Receiver)
	copy(b[8:], reply.Nonce[:])
	copy(b[8+len(reply.Nonce):], reply.Cookie[:])
	// The inner bind: ClassifyingBind.Send counts the device's answers.
	if err := j.g.clients.Bind().Bind.Send([][]byte{b[:]}, from); err != nil {
		j.logger.Debug("cookie reply not sent", "to", from.DstToString(), "err", err)
		return
	}
	j.cookiesSent.Add(1)
}

func (j *jit) work() {
	defer j.wg.Done()
	var in handshake.Initiation
	for {
		select {
		case <-j.stop:
			return
		case h := <-j.queue:
			j.handle(&h, &in)
		}
	}
}

// handle decides one held initiation: release it to the device (adding
// the client's peer first if need be) or drop it.
func (j *jit) handle(h *heldInitiation, in *handshake.Initiation) {
	if j.tryFast(h) {
		return
	}
	if err := j.reader.Read(h.msg[:], in); err != nil {
		// Not for this key, or not decryptable: the device would drop it.
		j.unreadable.Add(1)
		return
	}
	client := in.Static
	j.mu.Lock()
	peer, configured := j.g.peer(client)
	if !configured {
		live := j.g.clients.HasPeer(client) // the probe, or one set with wg(8)
		j.mu.Unlock()
		if live {
			j.release(h)
			return
		}
		j.unknown.Add(1)
		return
	}
	s, err := j.seenLocked(client)
	if err != nil {
		j.mu.Unlock()
		j.notAuthentic.Add(1)
		return
	}
	j.catchUpLocked(s)
	ts, err := in.Authenticate(&s.secret)
	if err != nil {
		j.mu.Unlock()
		j.notAuthentic.Add(1)
		return
	}
	if !ts.After(s.lastTS) {
		j.mu.Unlock()
		j.replays.Add(1)
		return
	}
	s.lastTS = ts
	now := time.Now()
	s.lastInit = now
	err = j.addLocked(peer, s, now)
	j.mu.Unlock()
	if err != nil {
		j.logger.Error("cannot add a connecting client to the device", "client", peer.Name, "err", err)
		return
	}
	j.fast.learn(endpointAddr(h.from), client, now)
	if cp := j.g.clusterHot.Load(); cp != nil {
		// Not a claim yet: the client must first prove its session with
		// data (recovery.go). Registered before the release, which the
		// device may answer at once.
		cp.expectConfirmation(in.Sender, client, endpointAddr(h.from))
	}
	j.release(h)
}

func (j *jit) release(h *heldInitiation) {
	j.pace()
	if j.g.clients.Bind().Release(h.msg[:], h.from) {
		j.accepted.Add(1)
		j.released++
	}
}

// pace waits while the device has releaseWindow released initiations it
// has not answered, at most releaseStall.
func (j *jit) pace() {
	b := j.g.clients.Bind()
	var since time.Time
	for {
		waiting := int64(j.released + j.answeredBase - b.Answered())
		if waiting < releaseWindow {
			if waiting < 0 { // answers to initiations not released here
				j.answeredBase = b.Answered() - j.released
			}
			return
		}
		now := time.Now()
		if since.IsZero() {
			since = now
		} else if now.Sub(since) >= releaseStall {
			j.answeredBase = b.Answered() - j.released // dropped by the device
			return
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// seenLocked returns the client's record, computing its static-static
// secret the first time (one X25519).
func (j *jit) seenLocked(client keys.Key) (*clientSeen, error) {
	if s, ok := j.seen[client]; ok {
		return s, nil
	}
	secret, err := j.reader.SharedSecret(client)
	if err != nil {
		return nil, err
	}
	s := &clientSeen{secret: secret}
	j.seen[client] = s
	return s, nil
}

// addLocked makes the configured client a device peer if it is not one.
func (j *jit) addLocked(peer config.Peer, s *clientSeen, now time.Time) error {
	added, err := j.g.clients.AddPeer(clientPeer(peer))
	if err != nil {
		return err
	}
	if added {
		j.added.Add(1)
		if s != nil {
			s.added = now
		}
	}
	return nil
}

// ensureLive makes a configured client a device peer (for a takeover,
// which sends to the client). It reports false for an unknown client.
func (j *jit) ensureLive(client keys.Key) (config.Peer, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	peer, ok := j.g.peer(client)
	if !ok {
		return peer, false, nil
	}
	s := j.seen[client]
	if s == nil {
		// Keep the addition time, so the sweep leaves the peer alone
		// until the client had time to answer.
		s = &clientSeen{}
		if secret, err := j.reader.SharedSecret(client); err == nil {
			s.secret = secret
			j.seen[client] = s
		}
	}
	return peer, true, j.addLocked(peer, s, time.Now())
}

// remove takes clients off the device, counting them under reason.
func (j *jit) remove(ks []keys.Key, reason string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.removeLocked(ks, reason)
}

func (j *jit) removeLocked(ks []keys.Key, reason string) {
	ks = slices.DeleteFunc(ks, j.g.probe.isProbe) // never the probe
	n, err := j.g.clients.RemovePeers(ks)
	for _, k := range ks {
		// Even on error: a fast entry of a peer that may be gone is unsafe.
		if msg, ok := j.fast.forget(k); ok {
			if s := j.seen[k]; s != nil {
				s.unread, s.hasUnread = msg, true
			}
		}
	}
	if err != nil {
		j.logger.Error("cannot remove peers from the client device", "reason", reason, "err", err)
		return
	}
	if cp := j.g.clusterHot.Load(); cp != nil {
		for _, k := range ks {
			cp.lost(k)
		}
	}
	switch reason {
	case removedIdle:
		j.removedIdle.Add(uint64(n))
	case removedReload:
		j.removedReload.Add(uint64(n))
	case removedMoved:
		j.removedMoved.Add(uint64(n))
	}
}

func (j *jit) sweepLoop() {
	defer j.wg.Done()
	every := min(max(j.idle/4, 10*time.Millisecond), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case now := <-t.C:
			j.sweep(now)
		}
	}
}

// sweep removes the peers idle for longer than the idle timeout: no
// handshake, initiation or addition since. The device's status costs time
// in proportion to the live peers only.
func (j *jit) sweep(now time.Time) {
	st, err := j.g.clients.Status()
	if err != nil {
		return
	}
	var idle []keys.Key
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, p := range st {
		if j.g.probe.isProbe(p.PublicKey) {
			continue
		}
		last := p.LastHandshake
		if s := j.seen[p.PublicKey]; s != nil {
			last = latest(last, s.lastInit, s.added)
		}
		if now.Sub(last) > j.idle {
			idle = append(idle, p.PublicKey)
		}
	}
	if len(idle) > 0 {
		j.removeLocked(idle, removedIdle)
		j.logger.Debug("removed idle peers", "peers", len(idle))
	}
}

// reload brings the device's live client peers in line with the index
// after it changed: peers of clients no longer configured go, peers whose
// configuration changed are updated in place. The caller holds j.mu and
// has installed the new index.
func (j *jit) reloadLocked() error {
	var gone []keys.Key
	var changed []device.Peer
	for _, k := range j.g.clients.PeerKeys() {
		if j.g.probe.isProbe(k) {
			continue
		}
		p, ok := j.g.peer(k)
		if !ok {
			gone = append(gone, k)
			continue
		}
		changed = append(changed, clientPeer(p))
	}
	for k := range j.seen {
		if _, ok := j.g.peer(k); !ok {
			delete(j.seen, k)
		}
	}
	j.removeLocked(gone, removedReload)
	return j.g.clients.UpdatePeers(changed)
}

// clientPeer is the device peer of a configured client.
func clientPeer(p config.Peer) device.Peer {
	return device.Peer{PublicKey: p.PublicKey, PresharedKey: p.PresharedKey, AllowedIPs: p.AllowedIPs}
}

func latest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}

// endpointAddr returns the address and port of a bind endpoint.
func endpointAddr(from conn.Endpoint) netip.AddrPort {
	if ep, ok := from.(*conn.StdNetEndpoint); ok {
		return ep.AddrPort
	}
	if from == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(from.DstToString())
	return ap
}

// PeerStats returns the counts of configured clients and live peers and
// the just-in-time counters.
func (g *Gateway) PeerStats() JITStats { return g.jit.stats() }

// JITStats are the just-in-time peer counters.
type JITStats struct {
	Configured, Live int
	Added            uint64
	Removed          map[string]uint64 // by reason: idle, reload, moved
	Initiations      map[string]uint64 // by result
	// AcceptedUnread counts the accepted initiations of live peers that
	// were released without a read (jitfast.go); they are in
	// Initiations["accepted"] too.
	AcceptedUnread uint64
}

func (j *jit) probeLive() int {
	if j.g.clients.HasPeer(j.g.probe.public) {
		return 1
	}
	return 0
}

func (j *jit) stats() JITStats {
	return JITStats{
		Configured: len(*j.g.byKey.Load()),
		Live:       j.g.clients.PeerCount() - j.probeLive(),
		Added:      j.added.Load(),
		Removed: map[string]uint64{
			removedIdle: j.removedIdle.Load(), removedReload: j.removedReload.Load(), removedMoved: j.removedMoved.Load(),
		},
		AcceptedUnread: j.fastReleased.Load(),
		Initiations: map[string]uint64{
			"accepted": j.accepted.Load(), "unknown_key": j.unknown.Load(), "not_authentic": j.notAuthentic.Load(),
			"replay": j.replays.Load(), "unreadable": j.unreadable.Load(), "overload": j.overload.Load(),
			"cookie_sent": j.cookiesSent.Load(), "rate_limited": j.rateLimited.Load(),
		},
	}
}
