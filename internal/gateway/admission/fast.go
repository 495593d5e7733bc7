package admission

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"

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
//   - the client is still a device peer (an endpoint entry goes when its
//     peer goes);
//   - no claim needs the initiation: nobody follows sessions (clustering
//     off), or Sessions.NeedsClaim says this gateway already owns the
//     client with a confirmed session (ExpectConfirmation would do
//     nothing);
//   - the previous initiation released this way from that endpoint was
//     answered by the device (the bind's response hook, onResponse): one
//     that was not (a retry, a forgery from a spoofed address, or another
//     client behind the same address and port) sends the next one through
//     the full read, which learns the endpoint afresh;
//   - the full read that learnt the endpoint is at most fastTTL old, which
//     bounds how long a mistaken entry (another client that is also a live
//     peer here reusing the address and port) can last.
//
// Replay safety across the peer's removal: while the fast path is used,
// the worker does not see the client's timestamps. The newest initiation
// of the client that the device answered is kept per client (148 bytes),
// whatever happens to the endpoint it came from, and is read and
// authenticated the next time the client's initiation takes the full path
// (catchUpLocked), before its timestamp is compared: one ladder after a
// run of unread releases, none per handshake while they go on.

// fastTTL is how long a full read vouches for an endpoint.
const fastTTL = 10 * time.Minute

// fastPath holds the endpoints of live clients and the initiations the
// device answered unread. Its lock is a leaf: taken under Admission.mu or
// alone (the device's handshake goroutines take it in onResponse), and no
// other lock or device method is taken while it is held.
type fastPath struct {
	mu         sync.Mutex
	byEndpoint map[netip.AddrPort]*fastEntry
	clients    map[keys.Key]*fastClient
	awaiting   map[uint32]netip.AddrPort // sender index → endpoint, one per entry at most
}

// fastEntry is an endpoint where a live client's initiations skip the read.
type fastEntry struct {
	client  keys.Key
	learnt  time.Time // the full read that named the client here
	waiting bool      // a release from here awaits the device's answer
	sender  uint32    // its sender index
	msg     [148]byte // the release awaiting its answer
}

// fastClient is what the fast path keeps per client.
type fastClient struct {
	ep netip.AddrPort // its fast endpoint; zero: none
	// answered is the newest initiation released unread that the device
	// answered (authentic, with the client's newest timestamp), until
	// the worker catches up with it.
	answered    [148]byte
	hasAnswered bool
}

func newFastPath() *fastPath {
	return &fastPath{
		byEndpoint: make(map[netip.AddrPort]*fastEntry),
		clients:    make(map[keys.Key]*fastClient),
		awaiting:   make(map[uint32]netip.AddrPort),
	}
}

// lookup returns the live client whose initiation from ep may skip the
// read, or false. It reserves nothing: take does.
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
// receiver: if it was released without a read, its endpoint stays fast
// and the initiation is kept for the catch-up. Device handshake
// goroutines; cheap.
func (f *fastPath) answer(receiver uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ep, ok := f.awaiting[receiver]
	if !ok {
		return
	}
	delete(f.awaiting, receiver)
	e := f.byEndpoint[ep]
	if e == nil || !e.waiting || e.sender != receiver {
		return
	}
	e.waiting = false
	if c := f.clients[e.client]; c != nil {
		c.answered, c.hasAnswered = e.msg, true
	}
}

// learn records that the worker read client's authentic initiation from
// ep and made the client a device peer. An earlier endpoint of the client
// is forgotten, as is another client's entry at ep (their answered
// initiations are kept). Under Admission.mu.
func (f *fastPath) learn(ep netip.AddrPort, client keys.Key, now time.Time) {
	if !ep.IsValid() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.clients[client]
	if c == nil {
		c = &fastClient{}
		f.clients[client] = c
	}
	if c.ep.IsValid() && c.ep != ep {
		f.dropLocked(c.ep)
	}
	e := f.byEndpoint[ep]
	if e != nil && e.client != client {
		f.dropLocked(ep)
		e = nil
	}
	if e == nil {
		e = &fastEntry{}
		f.byEndpoint[ep] = e
	} else if e.waiting {
		delete(f.awaiting, e.sender)
	}
	*e = fastEntry{client: client, learnt: now}
	c.ep = ep
}

// forget drops client's endpoint (its peer left the device); the
// initiation the device answered, if any, stays for the catch-up. Under
// Admission.mu.
func (f *fastPath) forget(client keys.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.clients[client]; c != nil && c.ep.IsValid() {
		f.dropLocked(c.ep)
	}
}

// remove forgets everything about client (it is no longer configured).
// Under Admission.mu.
func (f *fastPath) remove(client keys.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.clients[client]; c != nil {
		if c.ep.IsValid() {
			f.dropLocked(c.ep)
		}
		delete(f.clients, client)
	}
}

// dropLocked removes the entry at ep.
func (f *fastPath) dropLocked(ep netip.AddrPort) {
	e := f.byEndpoint[ep]
	if e == nil {
		return
	}
	if e.waiting {
		delete(f.awaiting, e.sender)
	}
	if c := f.clients[e.client]; c != nil && c.ep == ep {
		c.ep = netip.AddrPort{}
	}
	delete(f.byEndpoint, ep)
}

// takeAnswered copies into dst the initiation of client the device
// answered unread since the last catch-up, and reports whether there was
// one.
func (f *fastPath) takeAnswered(client keys.Key, dst *[148]byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.clients[client]
	if c == nil || !c.hasAnswered {
		return false
	}
	*dst, c.hasAnswered = c.answered, false
	return true
}

// endpoints reports the number of fast endpoints.
func (f *fastPath) endpoints() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.byEndpoint)
}

// catchUpLocked reads the initiation of client the device answered while
// the fast path hid its timestamps from the worker, so that s.lastTS is
// the newest one any answered initiation of the client carried. One
// X25519, only after unread releases. The caller holds a.mu.
func (a *Admission) catchUpLocked(client keys.Key, s *clientSeen) {
	if !a.fast.takeAnswered(client, &a.catchUpMsg) {
		return
	}
	if err := a.reader.Read(a.catchUpMsg[:], &a.catchUpIn); err != nil || a.catchUpIn.Static != client {
		return
	}
	if ts, err := a.catchUpIn.Authenticate(&s.secret); err == nil && ts.After(s.lastTS) {
		s.lastTS = ts
	}
}

// tryFast releases h without a read if the fast path allows it (see the
// top of this file), reporting whether it did. Worker only.
func (a *Admission) tryFast(h *heldInitiation) bool {
	ep := endpointAddr(h.from)
	now := time.Now()
	client, ok := a.fast.lookup(ep, now)
	if !ok {
		return false
	}
	if a.sessions != nil && a.sessions.NeedsClaim(client) {
		return false // the full read registers the claim
	}
	if !a.reader.CheckMAC1(h.msg[:]) {
		return false // the full read counts it
	}
	a.mu.Lock()
	s := a.seen[client]
	if s == nil || !a.fast.take(ep, client, h.msg[:]) {
		a.mu.Unlock()
		return false
	}
	s.lastInit = now
	a.mu.Unlock()
	if a.release(h) {
		a.acceptedUnread.Add(1)
	}
	return true
}

// onResponse is the client bind's response hook (device handshake
// goroutines): the fast path's answer, then Sessions'.
func (a *Admission) onResponse(receiver uint32) {
	a.fast.answer(receiver)
	if a.sessions != nil {
		a.sessions.OnResponse(receiver)
	}
}
