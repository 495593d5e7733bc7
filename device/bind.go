package device

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
)

// WireGuard message types and sizes (the protocol's wire format).
const (
	msgInitiation    = 1
	msgResponse      = 2
	msgCookieReply   = 3
	msgTransport     = 4
	sizeInitiation   = 148
	sizeResponse     = 92
	sizeCookieReply  = 64
	minSizeTransport = 32
	maxSizeWireGuard = 65535
)

// BindStats counts what a ClassifyingBind received, by message kind.
type BindStats struct {
	Initiations   uint64 // handshake initiations
	Responses     uint64 // handshake responses
	CookieReplies uint64
	Transport     uint64 // data and keepalive messages
	Junk          uint64 // datagrams that are no WireGuard message; dropped here
	// ReleaseDrops counts held initiations that Release could not hand
	// to the device (its queue was full).
	ReleaseDrops uint64
	// InjectDrops counts relayed transport datagrams that Inject could
	// not hand to the device (its queue was full, or no transport).
	InjectDrops uint64
	// Diverted counts transport messages the device sent that the divert
	// hook took (sent through another gateway instead of the socket).
	Diverted uint64
	// SentResponses and SentCookieReplies count the handshake answers the
	// device sent through the bind.
	SentResponses, SentCookieReplies uint64
}

// ClassifyingBind wraps a conn.Bind and looks at every received datagram
// before the wireguard-go device does: it counts each kind of WireGuard
// message and drops datagrams that cannot be one (wrong type or size), so a
// flood of junk costs one comparison each and is visible in metrics.
//
// An initiation hook may hold initiations back and hand them to the device
// later with Release (see InitiationHook).
type ClassifyingBind struct {
	conn.Bind
	initiations, responses, cookies, transport, junk atomic.Uint64
	onInitiation                                     atomic.Pointer[InitiationHook]
	onTransport                                      atomic.Pointer[TransportHook]
	onResponse                                       atomic.Pointer[ResponseHook]
	onReceivedResponse                               atomic.Pointer[ReceivedResponseHook]
	onSentTransport                                  atomic.Pointer[SentTransportHook]
	onRelay                                          atomic.Pointer[RelayHook]
	divert                                           atomic.Pointer[DivertHook]

	released                   chan releasedInitiation // for the device's extra receive function
	injected, injectFree       chan *injectedTransport // filled and free slots for Inject
	injectDrops, diverted      atomic.Uint64
	releaseDrops               atomic.Uint64
	sentResponses, sentCookies atomic.Uint64
	mu                         sync.Mutex
	closed                     chan struct{} // closed by Close; a new one per Open
}

// releaseQueue bounds the initiations released and not yet read by the
// device; more are dropped (the client retries).
const releaseQueue = 1024

type releasedInitiation struct {
	msg  [sizeInitiation]byte
	from conn.Endpoint
}

// TransportHook is called on the receive goroutine for every transport
// (data) message, with its sender. It runs per packet: it must be cheap,
// must not block, and must not retain anything.
type TransportHook func(from conn.Endpoint)

// SetTransportHook installs fn (nil removes it).
func (b *ClassifyingBind) SetTransportHook(fn TransportHook) {
	b.onTransport.Store(hookPtr(fn, fn == nil))
}

// ResponseHook is called for every handshake response the device sends
// through the bind, before it is sent, with the response's receiver index:
// the sender index of the initiation it answers. By then the device has
// derived the session (it confirms it at the initiator's first transport
// packet) and will not initiate a handshake of its own with that peer for
// REKEY_TIMEOUT. It runs on the device's handshake goroutines: it must be
// cheap and must not block.
type ResponseHook func(receiver uint32)

// SetResponseHook installs fn (nil removes it).
func (b *ClassifyingBind) SetResponseHook(fn ResponseHook) {
	b.onResponse.Store(hookPtr(fn, fn == nil))
}

// ReceivedResponseHook is called on the receive goroutine for every
// handshake response that arrives, before the device reads it, with the
// response's sender index and its source. Nothing of it is authenticated
// yet: the device may still refuse it. It must be cheap, must not block,
// and must not retain anything.
type ReceivedResponseHook func(sender uint32, from conn.Endpoint)

// SetReceivedResponseHook installs fn (nil removes it).
func (b *ClassifyingBind) SetReceivedResponseHook(fn ReceivedResponseHook) {
	b.onReceivedResponse.Store(hookPtr(fn, fn == nil))
}

// SentTransportHook is called for every transport (data or keepalive)
// message the device sends through the bind, before it is sent, with its
// receiver index (the peer's index of the session that encrypted it) and
// its destination. The device encrypts only with a session it has
// derived: a handshake response it accepted (it initiated), or an
// initiation it answered whose session the peer then confirmed. It runs
// per packet on the device's send goroutines: it must be cheap, must not
// block, and must not retain anything.
type SentTransportHook func(receiver uint32, to conn.Endpoint)

// SetSentTransportHook installs fn (nil removes it).
func (b *ClassifyingBind) SetSentTransportHook(fn SentTransportHook) {
	b.onSentTransport.Store(hookPtr(fn, fn == nil))
}

// InitiationHook is called on the receive goroutine for every datagram
// shaped like a handshake initiation, before the device sees it. It must
// not block or retain msg (copy it), and should hand real work to another
// goroutine. It returns whether it holds the initiation back: then the
// device does not see it now, and the hook's owner hands it over later
// with Release (or drops it).
type InitiationHook func(msg []byte, from conn.Endpoint) (hold bool)

// SetInitiationHook installs fn (nil removes it).
func (b *ClassifyingBind) SetInitiationHook(fn InitiationHook) {
	b.onInitiation.Store(hookPtr(fn, fn == nil))
}

// hookPtr is what a hook setter stores: fn's address, or nil (no hook)
// when fn is nil (a generic func value cannot be compared with nil, so
// the caller says).
func hookPtr[F any](fn F, isNil bool) *F {
	if isNil {
		return nil
	}
	return &fn
}

// NewClassifyingBind wraps b.
func NewClassifyingBind(b conn.Bind) *ClassifyingBind {
	c := &ClassifyingBind{
		Bind: b, released: make(chan releasedInitiation, releaseQueue),
		injected: make(chan *injectedTransport, injectQueue), injectFree: make(chan *injectedTransport, injectQueue),
	}
	for range injectQueue {
		c.injectFree <- new(injectedTransport) // its buffer is allocated at first use
	}
	return c
}

// Open implements conn.Bind, wrapping each receive function, and adds one
// that delivers the initiations released by Release.
func (b *ClassifyingBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	wrapped := make([]conn.ReceiveFunc, len(fns), len(fns)+1)
	for i, fn := range fns {
		wrapped[i] = func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			n, err := fn(packets, sizes, eps)
			b.classify(packets, sizes[:n], eps)
			return n, err
		}
	}
	closed := make(chan struct{})
	b.mu.Lock()
	b.closed = closed
	b.mu.Unlock()
	wrapped = append(wrapped, func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		return b.receiveReleased(closed, packets, sizes, eps)
	})
	return wrapped, actual, nil
}

// Close implements conn.Bind: it also ends the receive function of
// released initiations.
func (b *ClassifyingBind) Close() error {
	b.mu.Lock()
	if b.closed != nil {
		close(b.closed)
		b.closed = nil
	}
	b.mu.Unlock()
	return b.Bind.Close()
}

// Send implements conn.Bind, counting the handshake responses and cookie
// replies among bufs (one length comparison per datagram) and telling the
// response hook of each response and the transport hook of each
// transport message.
func (b *ClassifyingBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	thook := b.onSentTransport.Load()
	if dhook := b.divert.Load(); dhook != nil {
		return b.sendDiverting(bufs, ep, *dhook, thook)
	}
	for _, p := range bufs {
		if thook != nil && len(p) >= minSizeTransport && p[0] == msgTransport {
			(*thook)(binary.LittleEndian.Uint32(p[4:8]), ep)
		} else {
			b.sentHandshake(p)
		}
	}
	return b.Bind.Send(bufs, ep)
}

// sentHandshake counts p if it is a handshake response or cookie reply
// the device sends, and tells the response hook of a response.
func (b *ClassifyingBind) sentHandshake(p []byte) {
	switch {
	case len(p) == sizeResponse && p[0] == msgResponse:
		b.sentResponses.Add(1)
		if hook := b.onResponse.Load(); hook != nil {
			(*hook)(binary.LittleEndian.Uint32(p[8:12]))
		}
	case len(p) == sizeCookieReply && p[0] == msgCookieReply:
		b.sentCookies.Add(1)
	}
}

// Answered returns how many handshake responses and cookie replies the
// device has sent: each answers one initiation (or response) it took off
// its handshake queue, so a hook's owner can tell how many initiations it
// released are still waiting there.
func (b *ClassifyingBind) Answered() uint64 {
	return b.sentResponses.Load() + b.sentCookies.Load()
}

// Release hands an initiation that the hook held back to the device, as
// if it had just arrived from from. It does not block: when the device is
// behind (or the bind is closed for long) the initiation is dropped and
// counted, and Release returns false.
func (b *ClassifyingBind) Release(msg []byte, from conn.Endpoint) bool {
	if len(msg) != sizeInitiation {
		return false
	}
	r := releasedInitiation{from: from}
	copy(r.msg[:], msg)
	select {
	case b.released <- r:
		return true
	default:
		b.releaseDrops.Add(1)
		return false
	}
}

// receiveReleased is the device's receive function for released
// initiations: it blocks until there is at least one or the bind closes.
func (b *ClassifyingBind) receiveReleased(closed chan struct{}, packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	var r releasedInitiation
	select {
	case r = <-b.released:
	case t := <-b.injected:
		return b.receiveInjected(t, packets, sizes, eps), nil
	case <-closed:
		return 0, net.ErrClosed
	}
	n := 0
	for {
		sizes[n] = copy(packets[n], r.msg[:])
		eps[n] = r.from
		n++
		if n == len(packets) {
			return n, nil
		}
		select {
		case r = <-b.released:
		default:
			return n, nil
		}
	}
}

// classify counts each datagram and zeroes the size of junk, which the
// device then skips.
func (b *ClassifyingBind) classify(packets [][]byte, sizes []int, eps []conn.Endpoint) {
	var ini, resp, cookie, data, junk uint64
	hook := b.onInitiation.Load()
	thook := b.onTransport.Load()
	rhook := b.onReceivedResponse.Load()
	relay := b.onRelay.Load()
	for i, size := range sizes {
		switch Classify(packets[i][:size]) {
		case msgInitiation:
			ini++
			if hook != nil && i < len(eps) && (*hook)(packets[i][:size], eps[i]) {
				sizes[i] = 0 // held back; the device skips it
			}
		case msgResponse:
			resp++
			if rhook != nil && i < len(eps) {
				(*rhook)(binary.LittleEndian.Uint32(packets[i][4:8]), eps[i])
			}
		case msgCookieReply:
			cookie++
		case msgTransport:
			data++
			if thook != nil && i < len(eps) {
				(*thook)(eps[i])
			}
			if relay != nil && i < len(eps) {
				(*relay)(packets[i][:size], eps[i])
			}
		default:
			junk++
			sizes[i] = 0
		}
	}
	if ini != 0 {
		b.initiations.Add(ini)
	}
	if resp != 0 {
		b.responses.Add(resp)
	}
	if cookie != 0 {
		b.cookies.Add(cookie)
	}
	if data != 0 {
		b.transport.Add(data)
	}
	if junk != 0 {
		b.junk.Add(junk)
	}
}

// Classify returns the WireGuard message type of a datagram (1 initiation,
// 2 response, 3 cookie reply, 4 transport), or 0 if its type and size do
// not fit any message.
func Classify(p []byte) int {
	if len(p) < 4 {
		return 0
	}
	switch t := binary.LittleEndian.Uint32(p); t {
	case msgInitiation:
		if len(p) == sizeInitiation {
			return msgInitiation
		}
	case msgResponse:
		if len(p) == sizeResponse {
			return msgResponse
		}
	case msgCookieReply:
		if len(p) == sizeCookieReply {
			return msgCookieReply
		}
	case msgTransport:
		if len(p) >= minSizeTransport && len(p) <= maxSizeWireGuard {
			return msgTransport
		}
	}
	return 0
}

// Stats returns the counters so far.
func (b *ClassifyingBind) Stats() BindStats {
	return BindStats{
		Initiations:   b.initiations.Load(),
		Responses:     b.responses.Load(),
		CookieReplies: b.cookies.Load(),
		Transport:     b.transport.Load(),
		Junk:          b.junk.Load(),
		ReleaseDrops:  b.releaseDrops.Load(),
		InjectDrops:   b.injectDrops.Load(),
		Diverted:      b.diverted.Load(),

		SentResponses:     b.sentResponses.Load(),
		SentCookieReplies: b.sentCookies.Load(),
	}
}

// RelayHook is called on the receive goroutine for every transport
// message, with its bytes and sender, before the device sees it (which it
// still does). It runs per packet: it must be cheap, must not block for
// long, and must not retain msg.
type RelayHook func(msg []byte, from conn.Endpoint)

// SetRelayHook installs fn (nil removes it).
func (b *ClassifyingBind) SetRelayHook(fn RelayHook) {
	b.onRelay.Store(hookPtr(fn, fn == nil))
}

// DivertHook is called for every transport message the device sends,
// with its destination, before the socket sees it: it returns whether it
// took the message (sent it another way), which the socket then does not
// send. It runs per packet on the device's send goroutines: it must be
// cheap, must not retain msg, and blocks the device's sending while it
// blocks.
type DivertHook func(msg []byte, to conn.Endpoint) (taken bool)

// SetDivertHook installs fn (nil removes it).
func (b *ClassifyingBind) SetDivertHook(fn DivertHook) {
	b.divert.Store(hookPtr(fn, fn == nil))
}

// sendDiverting is Send with a divert hook: transport messages the hook
// takes are not sent; the others are, in order, in runs between them.
func (b *ClassifyingBind) sendDiverting(bufs [][]byte, ep conn.Endpoint, divert DivertHook, thook *SentTransportHook) error {
	var err error
	start := 0 // first message not yet sent or taken
	var taken uint64
	for i, p := range bufs {
		switch {
		case len(p) >= minSizeTransport && p[0] == msgTransport:
			if thook != nil {
				(*thook)(binary.LittleEndian.Uint32(p[4:8]), ep)
			}
			if !divert(p, ep) {
				continue
			}
			taken++
			if start < i {
				if e := b.Bind.Send(bufs[start:i], ep); e != nil && err == nil {
					err = e
				}
			}
			start = i + 1
		default:
			b.sentHandshake(p)
		}
	}
	if taken != 0 {
		b.diverted.Add(taken)
	}
	if start < len(bufs) {
		if e := b.Bind.Send(bufs[start:], ep); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// injectQueue bounds the relayed transport datagrams injected and not yet
// read by the device; more are dropped and counted.
const injectQueue = 256

type injectedTransport struct {
	buf  []byte // MaxRelayed bytes once used
	n    int
	from conn.Endpoint
}

// Inject hands the device a transport datagram that another gateway
// received from a client and relayed here, as if it had arrived from
// from (which the device then takes as the peer's endpoint, as for any
// packet). Inject copies msg and does not block: when the device is
// behind, or msg is no transport message, it drops it, counts it
// (InjectDrops) and returns false. It does not run the relay hook: an
// injected datagram is never relayed again.
func (b *ClassifyingBind) Inject(msg []byte, from conn.Endpoint) bool {
	if Classify(msg) != msgTransport || len(msg) > MaxRelayed {
		b.injectDrops.Add(1)
		return false
	}
	var t *injectedTransport
	select {
	case t = <-b.injectFree:
	default:
		b.injectDrops.Add(1)
		return false
	}
	if t.buf == nil {
		t.buf = make([]byte, MaxRelayed)
	}
	t.n = copy(t.buf, msg)
	t.from = from
	select {
	case b.injected <- t:
		return true
	default: // cannot happen: at most injectQueue slots exist
		t.from = nil
		b.injectFree <- t
		b.injectDrops.Add(1)
		return false
	}
}

// receiveInjected fills packets with t and the injected datagrams queued
// behind it, returning their slots to the free list.
func (b *ClassifyingBind) receiveInjected(t *injectedTransport, packets [][]byte, sizes []int, eps []conn.Endpoint) int {
	n := 0
	for {
		if t.n <= len(packets[n]) {
			sizes[n] = copy(packets[n], t.buf[:t.n])
			eps[n] = t.from
			n++
		} else {
			b.injectDrops.Add(1)
		}
		t.from = nil
		b.injectFree <- t
		if n == len(packets) {
			return n
		}
		select {
		case t = <-b.injected:
		default:
			return n
		}
	}
}
