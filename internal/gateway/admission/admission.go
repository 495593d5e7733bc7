// Package admission admits clients to the gateway's client device just in
// time: a configured client becomes a device peer when it sends an
// authentic handshake initiation, and stops being one when it has been
// idle longer than any session can live.
//
// An Admission receives narrow views of what it works on: the client
// index (Index), the client device's peer set (Device), its socket (Bind,
// Sender) and whoever follows client sessions (Sessions: fast recovery
// when the gateway is clustered). It knows nothing of the gateway that
// wires it.
package admission

import (
	"encoding/binary"
	"log/slog"
	"net/netip"
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
// The configured clients live in the gateway's own index (Index), not in
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
// already a device peer, from the endpoint where it was last read, may
// skip the read: fast.go.) A configured client that is not a
// peer is then added, and the initiation is released to the device, which
// completes the handshake on that very initiation. The worker then hands
// the authenticated initiation to Sessions (fast recovery), which claims
// the client once the session it completes carries data (no second
// X25519; package recovery).
//
// The work is off the receive goroutine because adding a peer configures
// the device, which waits on a lock that closing the device's socket holds
// while it waits for the receive goroutines; and so that a flood of
// initiations costs the worker's core, not the data path. When the worker
// is behind (queueLen full), initiations are dropped: the client retries.
// One that waited longer than maxWait is dropped unread when the worker
// comes to it: its client has sent a new one, or will have before the
// device's answer reaches it.
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
// The data-path probe's initiations (probe.go) skip all of this: a
// gateway whose probe waits behind a herd turns unready, and the load
// balancer moves yet more flows onto the others.
//
// The device itself must never be under load: it would demand cookies of
// its own (another secret), a client's retry with one would fail the
// gateway's check and get the gateway's cookie, and so on: nobody gets
// through. The worker is faster than the device (at most one X25519 per
// initiation, none for a live peer's, against its seven), so it paces its
// releases: at most
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

// queueLen bounds the initiations waiting for the worker.
const queueLen = 1024

// maxWait is how long an initiation may wait for the worker. A client
// that gets no answer sends a new initiation RekeyTimeout (5 s) after
// the last, with a new ephemeral key and sender index, and ignores a
// response to the old one: an initiation that waited this long, plus the
// device's queue and the way back, is answered too late. On a working
// CPU the queue is cleared in well under a second and nothing waits this
// long; on one starved by a herd (many gateways' worth of clients on few
// cores), first in, first out would otherwise spend every X25519 on
// initiations whose clients have moved on, and nobody would get in.
// Served in order, an initiation younger than this is never skipped: a
// newest-first order served fresh ones faster but starved the rest until
// their clients' retry, and idled the gateway in a handshake storm.
const maxWait = 3 * time.Second

// Under load: the queue is queueLen/8 full, or was within underLoadAfter
// (wireguard-go's QueueHandshakeSize/8 and UnderLoadAfterTime).
const (
	underLoadQueue = queueLen / 8
	underLoadAfter = wgdevice.UnderLoadAfterTime
)

// Pacing of releases to the device: at most releaseWindow unanswered; after
// waiting releaseStall for answers, the rest count as dropped by the device.
const (
	releaseWindow = 64
	releaseStall  = 50 * time.Millisecond
)

// Reason is why a peer leaves the device (anyguard_peers_removed_total).
type Reason string

// Reasons a peer leaves the device.
const (
	RemovedIdle   Reason = "idle"   // idle longer than the idle timeout
	RemovedReload Reason = "reload" // removed from the configuration
	RemovedMoved  Reason = "moved"  // another gateway owns the client now
)

// Index is the configured client set, by public key. Any goroutine may
// call it; it must not block.
type Index interface {
	Peer(k keys.Key) (config.Peer, bool)
	Len() int
}

// Device is the client device's peer set (*device.WireGuard).
type Device interface {
	AddPeer(p device.Peer) (added bool, err error)
	RemovePeers(ks []keys.Key) (int, error)
	UpdatePeers(peers []device.Peer) error
	HasPeer(k keys.Key) bool
	PeerKeys() []keys.Key
	PeerCount() int
	Status() ([]device.PeerStatus, error)
	// UnderLoad: the device demands cookies of its own (its handshake
	// queue is deep); what is released then gets the device's cookie,
	// which the gateway's own check refuses on the client's retry.
	UnderLoad() bool
}

// Bind is the client device's socket as admission uses it
// (*device.ClassifyingBind): the hook that holds initiations back, the
// hook that hears the device's handshake responses, the release that
// hands initiations to the device, and the count of its answers.
type Bind interface {
	SetInitiationHook(fn device.InitiationHook)
	SetResponseHook(fn device.ResponseHook)
	Release(msg []byte, from conn.Endpoint) bool
	Answered() uint64
}

// Sender sends a datagram past the bind's counting (the inner conn.Bind):
// admission's cookie replies are not the device's answers.
type Sender interface {
	Send(bufs [][]byte, ep conn.Endpoint) error
}

// Sessions hears about client sessions; fast recovery implements it. The
// worker calls ExpectConfirmation before it releases an authentic
// initiation, and NeedsClaim before it releases a live client's
// initiation unread (false: the initiation would need no
// ExpectConfirmation); Lost is called, with the admission lock held, for
// every client whose peer leaves the device; OnResponse is the bind's
// response hook, forwarded on the device's handshake goroutines (the
// device answered the initiation with sender index receiver). None may
// block or call back into the Admission.
type Sessions interface {
	ExpectConfirmation(sender uint32, client keys.Key, endpoint netip.AddrPort)
	NeedsClaim(client keys.Key) bool
	Lost(client keys.Key)
	OnResponse(receiver uint32)
}

// Config is what an Admission works on.
type Config struct {
	PrivateKey keys.Key // the client device's
	// ProbeEndpoint returns the data-path probe's own address and port
	// (its socket on loopback), or the zero value before it has one. An
	// initiation from there skips the queue and the cookie demand; the
	// worker releases it only if it is the Reserved key's. Nil: none.
	// Called on receive goroutines; must be cheap.
	ProbeEndpoint func() netip.AddrPort
	// IdleTimeout: zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Reserved is a device peer admission never removes nor counts as a
	// client (the data-path probe).
	Reserved keys.Key
	Index    Index
	Device   Device
	Bind     Bind
	Reply    Sender
	Sessions Sessions // nil: nobody listens, and no claim is ever needed
	Logger   *slog.Logger
}

// Admission is the just-in-time peer manager: the bind's initiation
// hook, the worker that admits clients and the idle sweep.
type Admission struct {
	logger *slog.Logger
	reader *handshake.InitiationReader
	idle   time.Duration
	queue  chan heldInitiation
	// probeEndpoint, probeHeld and probeLast: the probe's way past the
	// queue (probe.go).
	probeEndpoint func() netip.AddrPort
	probeHeld     chan heldInitiation
	probeLast     atomic.Int64 // unix ns of the last probe initiation held
	index         Index
	dev           Device
	bind          Bind
	reply         Sender
	sessions      Sessions
	reserved      keys.Key
	fast          *fastPath // live clients' endpoints (fast.go)

	// mu serialises changes of the device's client peers with the index
	// they follow: the worker's additions, the sweep, reload, takeovers
	// and the removal of moved clients. It guards seen and the catch-up's
	// scratch. Lock order: mu → fast.mu.
	mu         sync.Mutex
	seen       map[keys.Key]*clientSeen
	catchUpMsg [148]byte
	catchUpIn  handshake.Initiation

	added                           atomic.Uint64
	removedIdle, removedReload      atomic.Uint64
	removedMoved                    atomic.Uint64
	accepted, unknown, notAuthentic atomic.Uint64
	replays, unreadable, overload   atomic.Uint64
	cookiesSent, rateLimited        atomic.Uint64
	acceptedUnread                  atomic.Uint64 // released without a read (fast.go)
	probeReleased                   atomic.Uint64 // released past the queue (probe.go)
	stale                           atomic.Uint64 // waited past maxWait, dropped unread
	deviceBusy                      atomic.Uint64 // worker's polls of a device under load

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
}

type heldInitiation struct {
	msg  [148]byte
	from conn.Endpoint
	at   int64 // arrival, unix ns
}

// New makes an Admission; Start puts it to work.
func New(cfg Config) *Admission {
	idle := cfg.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Admission{
		logger:        logger,
		reader:        handshake.NewInitiationReader(cfg.PrivateKey),
		idle:          idle,
		queue:         make(chan heldInitiation, queueLen),
		probeHeld:     make(chan heldInitiation, 1),
		probeEndpoint: cfg.ProbeEndpoint,
		index:         cfg.Index,
		dev:           cfg.Device,
		bind:          cfg.Bind,
		reply:         cfg.Reply,
		sessions:      cfg.Sessions,
		reserved:      cfg.Reserved,
		fast:          newFastPath(),
		seen:          make(map[keys.Key]*clientSeen),
		stop:          make(chan struct{}),
	}
	a.cookies.Init(wgdevice.NoisePublicKey(cfg.PrivateKey.Public()))
	return a
}

func (a *Admission) isReserved(k keys.Key) bool { return k == a.reserved }

// Start installs the hooks on the client bind (initiations, and the
// device's responses, which it forwards to Sessions) and starts the worker
// and the idle sweep.
func (a *Admission) Start() {
	a.limiter.Init()
	a.wg.Add(2)
	go a.work()
	go a.sweepLoop()
	a.bind.SetResponseHook(a.onResponse)
	a.bind.SetInitiationHook(a.onInitiation)
}

// Close removes the hooks and stops the worker and the sweep. It is safe
// on a nil Admission and more than once.
func (a *Admission) Close() {
	if a == nil {
		return
	}
	a.bind.SetInitiationHook(nil)
	a.bind.SetResponseHook(nil)
	select {
	case <-a.stop:
	default:
		close(a.stop)
		a.limiter.Close()
	}
	a.wg.Wait()
}

// onInitiation runs on the client socket's receive goroutine: it queues a
// copy for the worker and holds the datagram back (the device never sees
// an initiation the worker did not release), dropping it when the queue is
// full. Under load it first demands a cookie (see the top of this file).
// The probe's initiations take their own way (probe.go).
func (a *Admission) onInitiation(msg []byte, from conn.Endpoint) bool {
	now := time.Now()
	if a.holdProbe(msg, from, now) {
		return true
	}
	if a.underLoad(now) {
		if !a.reader.CheckMAC1(msg) {
			a.unreadable.Add(1)
			return true
		}
		src := from.DstToBytes()
		if !a.cookies.CheckMAC2(msg, src) {
			a.sendCookie(msg, from, src)
			return true
		}
		if !a.limiter.Allow(from.DstIP()) {
			a.rateLimited.Add(1)
			return true
		}
	}
	h := heldInitiation{from: from, at: now.UnixNano()}
	copy(h.msg[:], msg)
	select {
	case a.queue <- h:
	default:
		a.overload.Add(1)
	}
	return true
}

// ForceUnderLoad puts the initiation check under load for d, as a
// handshake flood would: initiations need a cookie (tests, drills).
func (a *Admission) ForceUnderLoad(d time.Duration) {
	a.underLoadUntil.Store(time.Now().Add(d).UnixNano())
}

// underLoad reports whether the worker is (or was within underLoadAfter)
// so far behind that initiations must carry a cookie.
func (a *Admission) underLoad(now time.Time) bool {
	if len(a.queue) >= underLoadQueue {
		a.underLoadUntil.Store(now.Add(underLoadAfter).UnixNano())
		return true
	}
	return a.underLoadUntil.Load() > now.UnixNano()
}

// sendCookie answers the initiation msg (mac1 checked) with a cookie
// reply to its source from (src: its address as bytes): 64 bytes for 148,
// so no amplification.
func (a *Admission) sendCookie(msg []byte, from conn.Endpoint, src []byte) {
	sender := binary.LittleEndian.Uint32(msg[4:8])
	reply, err := a.cookies.CreateReply(msg, sender, src)
	if err != nil {
		return
	}
	var b [wgdevice.MessageCookieReplySize]byte
	binary.LittleEndian.PutUint32(b[0:], reply.Type)
	binary.LittleEndian.PutUint32(b[4:], reply.Receiver)
	copy(b[8:], reply.Nonce[:])
	copy(b[8+len(reply.Nonce):], reply.Cookie[:])
	// The inner bind: ClassifyingBind.Send counts the device's answers.
	if err := a.reply.Send([][]byte{b[:]}, from); err != nil {
		a.logger.Debug("cookie reply not sent", "to", from.DstToString(), "err", err)
		return
	}
	a.cookiesSent.Add(1)
}
