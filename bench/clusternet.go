package bench

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// wanNet is a set of gossip transports in one process that delay what
// crosses regions, standing in for the links between regions, and count
// what every node sends. Nodes of one region reach each other at loopback
// speed.
type wanNet struct {
	oneWay [][]time.Duration // one-way delay [from region][to region]

	mu      sync.RWMutex
	regions map[string]int // "127.0.0.1:port" → region
}

// wanDelays are the one-way delays between 3 regions: round trips of 50,
// 100 and 150 ms (A–B, B–C, A–C), as between neighbouring continents.
var wanDelays = [][]time.Duration{
	{0, 25 * time.Millisecond, 75 * time.Millisecond},
	{25 * time.Millisecond, 0, 50 * time.Millisecond},
	{75 * time.Millisecond, 50 * time.Millisecond, 0},
}

func newWANNet(oneWay [][]time.Duration) *wanNet {
	return &wanNet{oneWay: oneWay, regions: make(map[string]int)}
}

func (w *wanNet) delay(from int, addr string) time.Duration {
	if w.oneWay == nil {
		return 0
	}
	w.mu.RLock()
	to, ok := w.regions[addr]
	w.mu.RUnlock()
	if !ok {
		return 0
	}
	return w.oneWay[from%len(w.oneWay)][to%len(w.oneWay)]
}

// traffic counts the bytes one node sends.
type traffic struct {
	packetBytes, packets, streamBytes atomic.Uint64
}

type trafficSnapshot struct {
	PacketBytes, Packets, StreamBytes uint64
}

func (t *traffic) snapshot() trafficSnapshot {
	return trafficSnapshot{t.packetBytes.Load(), t.packets.Load(), t.streamBytes.Load()}
}

// delayTransport is a memberlist.NodeAwareTransport around memberlist's own
// NetTransport on 127.0.0.1: it counts the bytes its node sends (gossip
// packets as they leave, after the label and encryption; stream bytes
// written in either direction) and delays packets and streams toward other
// regions by the one-way delay of wanNet.
type delayTransport struct {
	inner  *memberlist.NetTransport
	net    *wanNet
	region int
	addr   string
	sent   traffic

	streams chan net.Conn
	closed  chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*delayTransport)(nil)

// newDelayTransport binds a NetTransport to a free port of 127.0.0.1 and
// registers it in w as a node of region.
func newDelayTransport(w *wanNet, region int) (*delayTransport, error) {
	inner, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		BindPort:  0,
		Logger:    nopLogger,
	})
	if err != nil {
		return nil, fmt.Errorf("gossip transport: %w", err)
	}
	t := &delayTransport{
		inner:   inner,
		net:     w,
		region:  region,
		addr:    fmt.Sprintf("127.0.0.1:%d", inner.GetAutoBindPort()),
		streams: make(chan net.Conn),
		closed:  make(chan struct{}),
	}
	w.mu.Lock()
	w.regions[t.addr] = region
	w.mu.Unlock()
	t.wg.Add(1)
	go t.acceptStreams()
	return t, nil
}

// acceptStreams passes the inner transport's accepted streams on, counting
// what this node writes to them.
func (t *delayTransport) acceptStreams() {
	defer t.wg.Done()
	for {
		select {
		case <-t.closed:
			return
		case c := <-t.inner.StreamCh():
			select {
			case t.streams <- &benchConn{Conn: c, sent: &t.sent}:
			case <-t.closed:
				c.Close()
				return
			}
		}
	}
}

func (t *delayTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

func (t *delayTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *delayTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	t.sent.packetBytes.Add(uint64(len(b)))
	t.sent.packets.Add(1)
	d := t.net.delay(t.region, a.Addr)
	if d == 0 {
		return t.inner.WriteToAddress(b, a)
	}
	p := append([]byte(nil), b...)
	time.AfterFunc(d, func() {
		select {
		case <-t.closed:
		default:
			_, _ = t.inner.WriteToAddress(p, a) // a failure is a lost datagram, as on a real link
		}
	})
	return time.Now(), nil
}

func (t *delayTransport) PacketCh() <-chan *memberlist.Packet { return t.inner.PacketCh() }

func (t *delayTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *delayTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := t.net.delay(t.region, a.Addr)
	if d > 0 {
		time.Sleep(2 * d) // TCP's handshake takes a round trip
	}
	c, err := t.inner.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return &benchConn{Conn: c, sent: &t.sent, delay: d}, nil
}

func (t *delayTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *delayTransport) Shutdown() error {
	t.once.Do(func() { close(t.closed) })
	err := t.inner.Shutdown()
	t.wg.Wait()
	return err
}

// benchConn counts the bytes written to a stream and, on the dialling side
// of a stream between regions, delays each write by the one-way delay and
// the first read after a write (the answer) by another: a request and its
// answer cost one round trip.
type benchConn struct {
	net.Conn
	sent  *traffic
	delay time.Duration

	wrote atomic.Bool
}

func (c *benchConn) Write(b []byte) (int, error) {
	if c.delay > 0 {
		time.Sleep(c.delay)
		c.wrote.Store(true)
	}
	n, err := c.Conn.Write(b)
	c.sent.streamBytes.Add(uint64(n))
	return n, err
}

func (c *benchConn) Read(b []byte) (int, error) {
	if c.delay > 0 && c.wrote.Swap(false) {
		time.Sleep(c.delay)
	}
	return c.Conn.Read(b)
}
