package relay

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyguard/anyguard/device"
)

// What a draining owner sent in the moment before a flow moved.
//
// The load balancer moves a flow between two of the client's datagrams.
// Whatever the owner sends the client after the move and before the
// client's next datagram arrives through the relaying gateway (up to one
// client send interval, plus a round trip) still leaves by the owner's own
// socket, and the load balancer drops it: the answers to requests that
// were in flight. So while draining, the owner keeps a copy of the
// transport datagrams it sends directly, in a ring of recentSlots, and
// when a client endpoint's first relayed datagram arrives it sends that
// endpoint's copies from the last recentAge through the relaying gateway
// too. The client's WireGuard replay filter drops the copies of datagrams
// it did receive; the others arrive late instead of never.
const (
	recentSlots = 4096
	recentSize  = 1600 // datagrams bigger than this are not kept
	recentAge   = 500 * time.Millisecond
)

// recentRing holds the latest transport datagrams sent directly while
// draining. Writers take a slot each (one atomic add) and lock only it.
type recentRing struct {
	next  atomic.Uint64
	slots []recentSlot
}

type recentSlot struct {
	mu  sync.Mutex
	ep  netip.AddrPort
	at  int64 // unix ns
	n   int
	buf [recentSize]byte
}

func newRecentRing() *recentRing { return &recentRing{slots: make([]recentSlot, recentSlots)} }

// record keeps a copy of msg, sent to ep at now.
func (q *recentRing) record(ep netip.AddrPort, msg []byte, now int64) {
	if len(msg) > recentSize {
		return
	}
	s := &q.slots[(q.next.Add(1)-1)%recentSlots]
	s.mu.Lock()
	s.ep, s.at = ep, now
	s.n = copy(s.buf[:], msg)
	s.mu.Unlock()
}

// replay sends the copies of datagrams to ep recorded after since, oldest
// first, to via over backbone, and returns how many it sent.
func (q *recentRing) replay(backbone Backbone, via netip.Addr, ep netip.AddrPort, since int64) (n uint64) {
	start := q.next.Load()
	for i := range uint64(recentSlots) {
		s := &q.slots[(start+i)%recentSlots]
		s.mu.Lock()
		if s.n != 0 && s.ep == ep && s.at > since {
			if backbone.SendRelay(via, device.RelayToClient, ep, s.buf[:s.n]) == nil {
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}
