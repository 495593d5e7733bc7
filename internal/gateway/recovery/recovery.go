// Package recovery is the gateway's claims and fast recovery: a gateway
// claims a client only once the client's data decrypted here, and wins a
// moved client's flow back at its first packet instead of waiting for the
// client to re-handshake.
//
// A Recovery receives narrow views of what it works on: the ownership
// table (Claimer), the client index (Index), admission (Admitter), the
// client device (Device) and the port into it (Port). It knows nothing of
// the gateway that wires it.
package recovery

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/keys"
)

// Claims need a live session, and fast recovery when a load balancer moves
// a client's flow.
//
// A gateway claims a client only once the client has proven, with data
// that decrypted here, that it holds a session with this gateway: the
// first packet from the client's address that the client device delivers
// (wireguard-go checked it against the client's AllowedIPs, so it came
// from that client's peer). A handshake initiation alone proves nothing:
// it can be captured and replayed to another gateway of the fleet, whose
// device has never seen it and answers it. Its answer goes to the replayer,
// who cannot derive the session, so nothing decrypts, nothing is claimed,
// and the owner keeps the client and its session. A replay costs the
// receiving gateway one handshake response and a pending entry that
// expires after pendingTTL.
//
// After the client's own initiation: the admission worker registers the
// authenticated initiation by its sender index (ExpectConfirmation); when
// the device sends its response (the bind's response hook, OnResponse), the
// client's tunnel address becomes pending and the claim worker queues an
// ICMP echo request to it. The device sends that request once the client
// confirms the session (wireguard-go holds it until then, and will not
// initiate a handshake of its own for REKEY_TIMEOUT after a response), so
// a client that has nothing to send still answers and is claimed; one with
// traffic is claimed on its first packet.
//
// After a move: the gateway that starts receiving a client's transport
// packets has no session to decrypt them, and a stock client would only
// re-handshake after 15 s or more. But the ownership record names the
// client's endpoint, so the new gateway knows at the first packet whose
// flow it is: it initiates a handshake to the client at once (with the
// shared identity the client accepts from any gateway), and claims the
// client as soon as the device accepts the client's handshake response.
// That response answers the gateway's fresh ephemeral key and needs the
// client's static private key, so it proves the session as well as the
// client's data would, one round trip earlier: the device shows it has
// accepted it by sending the client its first transport packet with the
// response's sender index as receiver (the takeover's echo request;
// OnSentTransport). The client's first packet that decrypts over the new
// session claims it too (CheckPending), whichever comes first. A spoofed
// packet from a client's address can make a gateway send a handshake,
// but cannot move the client; a spoofed response is refused by the
// device, which then sends nothing on it.
//
// Under load a handshake round trip can outlast takeoverRetry. A retry
// that forgot the handshake whose response the device is about to read
// would throw that response away and start over, again and again: a
// takeover whose response arrived within takeoverRetry is left to finish.
//
// A gateway that restarts under its old name finds records naming itself
// for clients it holds no session with. Only clients whose session this
// process confirmed count as its own (live): the others' endpoints are
// recognised for fast recovery like any other gateway's clients, so a flow
// that comes back to the restarted gateway recovers as fast as any move.

// takeoverRetry is how soon a gateway asks a client it is winning back
// again. A retry within pendingTTL of the takeover's start only resends
// the echo request: the handshake in flight is never restarted
// (retryInFlight), however slow the machine.
const takeoverRetry = time.Second

// pendingTTL is how long a takeover waits for the client's first packet
// over the new session; a client that sends none by then has gone
// elsewhere, and its next packet here starts a new takeover.
const pendingTTL = 10 * time.Second

// awaitingMax bounds the authenticated initiations waiting for the
// device's response; beyond it (an insider with one client key sending
// fresh initiations as fast as the worker reads them) the oldest wait
// their turn to expire and new ones are not registered: their clients are
// claimed on their next initiation.
const awaitingMax = 1 << 16

// Claimer is the ownership table (the cluster). Any goroutine may call it.
type Claimer interface {
	Owner(client keys.Key) (cluster.Record, bool)
	Claim(client keys.Key, endpoint netip.AddrPort, reason cluster.Reason) (cluster.Record, bool)
}

// Index is the configured client set, by public key.
type Index interface {
	Peer(k keys.Key) (config.Peer, bool)
}

// Admitter makes a configured client a device peer for a takeover; it
// reports false for a client not configured.
type Admitter interface {
	EnsureLive(client keys.Key) (config.Peer, bool, error)
}

// Device is what a takeover does to a client's peer on the client device
// (*device.WireGuard).
type Device interface {
	ForgetHandshake(k keys.Key)
	SetEndpoint(k keys.Key, endpoint netip.AddrPort) error
	Initiate(k keys.Key, endpoint netip.AddrPort) error
}

// Port takes packets for the client device to encrypt and send
// (*device.Port); Deliver does not retain bufs.
type Port interface {
	Deliver(bufs [][]byte, offset int) error
}

// Config is what a Recovery works on.
type Config struct {
	Self string // this gateway's node name
	// Addresses are the gateway's own client-network addresses (the
	// source of its echo requests).
	Addresses []netip.Prefix
	Claimer   Claimer
	Index     Index
	Admitter  Admitter
	Device    Device
	Port      Port
	Logger    *slog.Logger
}

// Recovery is claims and fast recovery: the bind hooks (OnTransport,
// OnResponse), the data-path check (CheckPending) and the claim worker.
type Recovery struct {
	self     string
	addrs    []netip.Prefix
	claimer  Claimer
	index    Index
	admitter Admitter
	dev      Device
	port     Port
	logger   *slog.Logger

	// foreign maps the endpoints of clients whose session is not here
	// (owned by another gateway, or by this one before a restart) to the
	// client.
	foreign  sync.Map // netip.AddrPort → keys.Key
	requests chan takeoverRequest
	// awaiting holds authenticated client initiations released to the
	// device until its response: initiation sender index → pendingClaim.
	awaiting  sync.Map
	awaitingN atomic.Int32
	// confirms carries the clients the device has answered to the claim
	// worker, which asks them to answer in turn.
	confirms chan pendingClaim
	pending  sync.Map // netip.Addr (client tunnel address) → pendingClaim
	pendingN atomic.Int32
	// handshakes holds the takeovers whose handshake the gateway
	// initiated: client endpoint (netip.AddrPort) → *takeoverHandshake.
	handshakes  sync.Map
	handshakesN atomic.Int32
	// live holds the clients whose session this process has seen
	// confirmed: keys.Key → struct{}.
	live    sync.Map
	lastTry map[keys.Key]time.Time // claim worker only
	seq     uint16                 // claim worker only

	initiated   atomic.Uint64 // takeovers begun
	retried     atomic.Uint64 // requests for a takeover under way
	taken       atomic.Uint64 // claims written after a takeover
	confirmed   atomic.Uint64 // claims written after the client's own handshake
	unconfirmed atomic.Uint64 // answered initiations whose session never confirmed

	stop chan struct{}
	wg   sync.WaitGroup
}

// takeoverRequest asks the claim worker to win back a client whose
// transport packets arrive here.
type takeoverRequest struct {
	client   keys.Key
	endpoint netip.AddrPort
}

// pendingClaim is a claim that waits for the client's first packet over a
// session with this gateway.
type pendingClaim struct {
	client   keys.Key
	endpoint netip.AddrPort
	reason   cluster.Reason // cluster.ReasonHandshake or cluster.ReasonTakeover
	at       time.Time      // when the wait began
}

// expire forgets claims that have waited longer than pendingTTL for the
// client's first packet (or the device's response), so CheckPending's
// per-batch work stops once nothing is pending, and retry times that no
// longer hold anything back. Claim worker only.
func (r *Recovery) expire(now time.Time) {
	r.pending.Range(func(k, v any) bool {
		p := v.(pendingClaim)
		if now.Sub(p.at) > pendingTTL && r.pending.CompareAndDelete(k, v) {
			r.pendingN.Add(-1)
			if p.reason == cluster.ReasonHandshake {
				r.unconfirmed.Add(1)
			}
		}
		return true
	})
	r.awaiting.Range(func(k, v any) bool {
		if now.Sub(v.(pendingClaim).at) > pendingTTL && r.awaiting.CompareAndDelete(k, v) {
			r.awaitingN.Add(-1)
		}
		return true
	})
	r.handshakes.Range(func(k, v any) bool {
		if now.Sub(v.(*takeoverHandshake).at) > pendingTTL && r.handshakes.CompareAndDelete(k, v) {
			r.handshakesN.Add(-1)
		}
		return true
	})
	for k, t := range r.lastTry {
		if now.Sub(t) > takeoverRetry {
			delete(r.lastTry, k)
		}
	}
}

// New makes a Recovery; Start starts its claim worker.
func New(cfg Config) *Recovery {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Recovery{
		self: cfg.Self, addrs: cfg.Addresses, claimer: cfg.Claimer, index: cfg.Index,
		admitter: cfg.Admitter, dev: cfg.Device, port: cfg.Port, logger: logger,
		requests: make(chan takeoverRequest, 256),
		confirms: make(chan pendingClaim, 256),
		lastTry:  make(map[keys.Key]time.Time),
		stop:     make(chan struct{}),
	}
}

// Start starts the claim worker.
func (r *Recovery) Start() {
	r.wg.Add(1)
	go r.claimLoop()
}

// Close stops the claim worker and waits for it. It is safe on a nil
// Recovery and more than once.
func (r *Recovery) Close() {
	if r == nil {
		return
	}
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.wg.Wait()
}

// claimLoop runs takeovers and asks clients that handshook here to
// confirm their sessions; the claims themselves follow the clients'
// first packets (CheckPending).
func (r *Recovery) claimLoop() {
	defer r.wg.Done()
	expire := time.NewTicker(pendingTTL)
	defer expire.Stop()
	for {
		select {
		case <-r.stop:
			return
		case req := <-r.requests:
			r.takeover(req)
		case p := <-r.confirms:
			r.askConfirmation(p)
		case now := <-expire.C:
			r.expire(now)
		}
	}
}

// Stats returns the claim counters (anyguard_claims_total).
func (r *Recovery) Stats() map[string]uint64 {
	return map[string]uint64{
		"confirmed": r.confirmed.Load(), "unconfirmed": r.unconfirmed.Load(),
		"takeover_started": r.initiated.Load(), "takeover_claimed": r.taken.Load(),
		"takeover_retried": r.retried.Load(),
	}
}
