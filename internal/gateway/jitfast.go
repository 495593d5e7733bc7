package gateway

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"

	"github.com/anyguard/anyguard/device/handshake"
	"github.com/anyguard/anyguard/internal/keys"
)

// The live-peer fast path.
//
// Reading an initiation costs an X25519 ladder, and wireguard-go does the
// same one again when the initiation is released to it (it has no API to
// take the result). For a client that is not a device peer the read is
// needed: it names the client to add, and its timestamp is what keeps a
// replay from re-creating the peer. For a client that is already a device
// peer, wireguard-go's own checks suffice: it authenticates the initiation
// and refuses a timestamp not newer than the last it accepted from that
// peer (the device keeps that while the peer lives). So an initiation from
// the endpoint where the worker last read that client's authentic
// initiation is released without a read, when:
//
//   - the client is still a device peer (an entry goes when its peer goes);
//   - no claim needs the initiation: clustering is off, or this gateway
//     already owns the client with a confirmed session (expectConfirmation
//     would do nothing);
//   - the previous initiation released this way from that endpoint was
//     answered by the device (its response hook): one that was not (a
//     retry, a forgery from a spoofed address, or another client behind the
//     same address and port) sends the next one through the full read,
//     which learns the endpoint afresh;
//   - the full read that learnt the endpoint is at most fastTTL old, which
//     bounds how long a mistaken entry (another client that is also a live
//     peer here reusing the address and port) can last.
//
// Replay safety across the peer's removal: while the fast path is used,
// the worker does not see the client's timestamps. The newest initiation
// the device answered is kept (148 bytes), and read and authenticated the
// next time the client's initiation takes the full path (the peer is gone
// by then), before its timestamp is compared: one ladder when the client
// comes back, none per handshake while it stays.

// fastTTL is how long a full read vouches for an endpoint.
const fastTTL = 10 * time.Minute

// fastPath holds the endpoints of live clients. Its lock is a leaf: no
// device method is called while it is held (the device's handshake
// goroutines take it in onResponse).
type fastPath struct {
	mu         sync.Mutex
	byEndpoint map[netip.AddrPort]*fastEntry
	byClient   map[keys.Key]netip.AddrPort
	awaiting   map[uint32]netip.AddrPort // sender index → endpoint, one per entry at most
}

type fastEntry struct {
	client  keys.Key
	learnt  time.Time // the full read that named the client here
	waiting bool      // a release from here awaits the device's answer
	sender  uint32    // its sender index
	msg     [148]byte // the release awaiting its answer
	// answered is the newest initiation released from here that the
	// device answered: authentic, with the client's newest timestamp.
	answered    [148]byte
	hasAnswered bool
}

func newFastPath() *fastPath {
	return &fastPath{
		byEndpoint: make(map[netip.AddrPort]*fastEntry),
		byClient:   make(map[keys.Key]netip.AddrPort),
		awaiting:   make(map[uint32]netip.AddrPort),
	}
}

// lookup returns the live client whose initiation from ep may skip the
// read, or false. It does not reserve anything: take does.
func (f *fastPath) lookup(ep netip.AddrPort, now time.Time) (keys.Key, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.byEndpoint[ep]
	if e == nil || e.waiting || now.Sub(e.learnt) > fastTTL {
		return keys.Key{}, false
	}
	return e.client, true
}

// take records that msg from ep is released without a read, so that the
// device's answer (answer) lets the next one through too. It reports false
// if the entry changed since lookup.
func (f *fastPath) take(ep netip.AddrPort, client keys.Key, msg []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.byEndpoint[ep]
	if e == nil || e.client != client || e.waiting {
		return false
	}
	e.waiting = true
	e.sender = binary.LittleEndian.Uint32(msg[4:8])
	copy(e.msg[:], msg)
	f.awaiting[e.sender] = ep
	return true
}

// answer is the device's response to the initiation with sender index
// receiver: if it was released without a read, its endpoint stays fast.
// Device handshake goroutines; cheap.
func (f *fastPath) answer(receiver uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ep, ok := f.awaiting[receiver]
	if !ok {
		return
	}
	delete(f.awaiting, receiver)
	if e := f.byEndpoint[ep]; e != nil && e.waiting && e.sender == receiver {
		e.waiting = false
		e.answered, e.hasAnswered = e.msg, true
	}
}

// learn records that the worker read client's authentic initiation from
// ep and made the client a device peer. An earlier endpoint of the client
// is forgotten, as is another client's entry at ep.
func (f *fastPath) learn(ep netip.AddrPort, client keys.Key, now time.Time) {
	if !ep.IsValid() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.byClient[client]; ok && old != ep {
		f.dropLocked(old)
	}
	if e := f.byEndpoint[ep]; e != nil {
		if e.client != client {
			delete(f.byClient, e.client)
		}
		if e.waiting {
			delete(f.awaiting, e.sender)
		}
	}
	f.byEndpoint[ep] = &fastEntry{client: client, learnt: now}
	f.byClient[client] = ep
}

// forget drops client's entry (its peer left the device) and returns the
// newest initiation of it the device answered from there, if any.
func (f *fastPath) forget(client keys.Key) (msg [148]byte, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ep, found := f.byClient[client]
	if !found {
		return msg, false
	}
	e := f.byEndpoint[ep]
	f.dropLocked(ep)
	if e == nil || e.client != client {
		return msg, false
	}
	return e.answered, e.hasAnswered
}

func (f *fastPath) dropLocked(ep netip.AddrPort) {
	e := f.byEndpoint[ep]
	if e == nil {
		return
	}
	if e.waiting {
		delete(f.awaiting, e.sender)
	}
	delete(f.byClient, e.client)
	delete(f.byEndpoint, ep)
}

// len reports the number of fast endpoints.
func (f *fastPath) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.byEndpoint)
}

// catchUpLocked reads the initiation the device answered while the fast
// path hid the client's timestamps from the worker, so that lastTS is the
// newest one any answered initiation of the client carried. One X25519.
// The caller holds j.mu.
func (j *jit) catchUpLocked(s *clientSeen) {
	if !s.hasUnread {
		return
	}
	s.hasUnread = false
	var in handshake.Initiation
	if err := j.reader.Read(s.unread[:], &in); err != nil {
		return
	}
	if ts, err := in.Authenticate(&s.secret); err == nil && ts.After(s.lastTS) {
		s.lastTS = ts
	}
}

// tryFast releases h without a read if the fast path allows it (see the
// top of this file), reporting whether it did.
func (j *jit) tryFast(h *heldInitiation) bool {
	ep := endpointAddr(h.from)
	now := time.Now()
	client, ok := j.fast.lookup(ep, now)
	if !ok {
		return false
	}
	if cp := j.g.clusterHot.Load(); cp != nil && !cp.ownsLive(client) {
		return false // the full read registers the claim
	}
	if !j.reader.CheckMAC1(h.msg[:]) {
		return false // the full read counts it
	}
	j.mu.Lock()
	s := j.seen[client]
	if s == nil || !j.fast.take(ep, client, h.msg[:]) {
		j.mu.Unlock()
		return false
	}
	s.lastInit = now
	j.mu.Unlock()
	j.fastReleased.Add(1)
	j.release(h)
	return true
}

// onResponse is the client bind's response hook: the fast path's answer,
// then the claim protocol's (recovery.go).
func (j *jit) onResponse(receiver uint32) {
	j.fast.answer(receiver)
	if cp := j.g.clusterHot.Load(); cp != nil {
		cp.onResponse(receiver)
	}
}
