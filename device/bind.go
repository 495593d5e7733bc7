package device

import (
	"encoding/binary"
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
}

// ClassifyingBind wraps a conn.Bind and looks at every received datagram
// before the wireguard-go device does: it counts each kind of WireGuard
// message and drops datagrams that cannot be one (wrong type or size), so a
// flood of junk costs one comparison each and is visible in metrics.
type ClassifyingBind struct {
	conn.Bind
	initiations, responses, cookies, transport, junk atomic.Uint64
	onInitiation                                     atomic.Pointer[InitiationHook]
	onTransport                                      atomic.Pointer[TransportHook]
}

// TransportHook is called on the receive goroutine for every transport
// (data) message, with its sender. It runs per packet: it must be cheap,
// must not block, and must not retain anything.
type TransportHook func(from conn.Endpoint)

// SetTransportHook installs fn (nil removes it).
func (b *ClassifyingBind) SetTransportHook(fn TransportHook) {
	if fn == nil {
		b.onTransport.Store(nil)
		return
	}
	b.onTransport.Store(&fn)
}

// InitiationHook is called on the receive goroutine for every datagram
// shaped like a handshake initiation, before the device sees it. It must
// not block or retain msg (copy it), and should hand real work to another
// goroutine.
type InitiationHook func(msg []byte, from conn.Endpoint)

// SetInitiationHook installs fn (nil removes it).
func (b *ClassifyingBind) SetInitiationHook(fn InitiationHook) {
	if fn == nil {
		b.onInitiation.Store(nil)
		return
	}
	b.onInitiation.Store(&fn)
}

// NewClassifyingBind wraps b.
func NewClassifyingBind(b conn.Bind) *ClassifyingBind { return &ClassifyingBind{Bind: b} }

// Open implements conn.Bind, wrapping each receive function.
func (b *ClassifyingBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	wrapped := make([]conn.ReceiveFunc, len(fns))
	for i, fn := range fns {
		wrapped[i] = func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			n, err := fn(packets, sizes, eps)
			b.classify(packets, sizes[:n], eps)
			return n, err
		}
	}
	return wrapped, actual, nil
}

// classify counts each datagram and zeroes the size of junk, which the
// device then skips.
func (b *ClassifyingBind) classify(packets [][]byte, sizes []int, eps []conn.Endpoint) {
	var ini, resp, cookie, data, junk uint64
	hook := b.onInitiation.Load()
	thook := b.onTransport.Load()
	for i, size := range sizes {
		switch Classify(packets[i][:size]) {
		case msgInitiation:
			ini++
			if hook != nil && i < len(eps) {
				(*hook)(packets[i][:size], eps[i])
			}
		case msgResponse:
			resp++
		case msgCookieReply:
			cookie++
		case msgTransport:
			data++
			if thook != nil && i < len(eps) {
				(*thook)(eps[i])
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
	}
}
