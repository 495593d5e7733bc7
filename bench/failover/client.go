package failover

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// A client is one real wireguard-go device on a cheap in-memory TUN and
// bind: no sockets, no netstack, batch size 1 (so the device holds two
// packet buffers, not 128), about a dozen goroutines (wireguard-go's
// per-CPU workers and per-peer queues).
type client struct {
	id   int
	addr netip.Addr
	dev  *device.Device
	tun  *memTUN
	bind *memBind
	h    *harness
	seq  atomic.Uint32
	// echoes: this client's echoes to the service and their answers
	// (client → private side); pings: the pinger's requests to this client
	// and their answers (private side → client).
	echoes, pings recorder
}

// memTUN is the client's TUN: packets the harness queues for the device
// to encrypt (out), and the device's decrypted packets handled inline by
// the client (Write).
type memTUN struct {
	c      *client
	out    chan []byte
	events chan tun.Event
	closed chan struct{}
	once   sync.Once
}

func (t *memTUN) File() *os.File { return nil }

func (t *memTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case p := <-t.out:
		sizes[0] = copy(bufs[0][offset:], p)
		return 1, nil
	case <-t.closed:
		return 0, os.ErrClosed
	}
}

func (t *memTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		t.c.receive(b[offset:])
	}
	return len(bufs), nil
}

func (t *memTUN) MTU() (int, error)        { return 1420, nil }
func (t *memTUN) Name() (string, error)    { return "failover", nil }
func (t *memTUN) Events() <-chan tun.Event { return t.events }
func (t *memTUN) BatchSize() int           { return 1 }
func (t *memTUN) Close() error             { t.once.Do(func() { close(t.closed) }); return nil }
func (t *memTUN) queue(p []byte) (queued bool) {
	select {
	case t.out <- p:
		return true
	default:
		return false
	}
}

// memBind is the client's bind: datagrams to the anycast address go to
// the load balancer model in memory; its answers arrive on in.
type memBind struct {
	c  *client
	in chan []byte
	mu sync.Mutex
	// done is closed by Close; Open makes a new one (the device closes
	// and reopens its bind on updates).
	done chan struct{}
}

// lbEndpoint is the only endpoint a client has: the anycast address.
type lbEndpoint struct{}

var anycast = netip.MustParseAddrPort("192.0.2.1:51820")

func (lbEndpoint) ClearSrc()           {}
func (lbEndpoint) SrcToString() string { return "" }
func (lbEndpoint) DstToString() string { return anycast.String() }
func (lbEndpoint) DstToBytes() []byte  { b, _ := anycast.MarshalBinary(); return b }
func (lbEndpoint) DstIP() netip.Addr   { return anycast.Addr() }
func (lbEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }

func (b *memBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	done := make(chan struct{})
	b.done = done
	b.mu.Unlock()
	recv := func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		select {
		case p := <-b.in:
			sizes[0] = copy(packets[0], p)
			eps[0] = lbEndpoint{}
			return 1, nil
		case <-done:
			return 0, net.ErrClosed
		}
	}
	return []conn.ReceiveFunc{recv}, anycast.Port(), nil
}

func (b *memBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done != nil {
		select {
		case <-b.done:
		default:
			close(b.done)
		}
	}
	return nil
}

func (b *memBind) SetMark(uint32) error { return nil }
func (b *memBind) BatchSize() int       { return 1 }

func (b *memBind) ParseEndpoint(string) (conn.Endpoint, error) { return lbEndpoint{}, nil }

func (b *memBind) Send(bufs [][]byte, _ conn.Endpoint) error {
	for _, p := range bufs {
		b.c.h.lb.fromClient(b.c.id, p)
	}
	return nil
}

// fromLB queues a datagram from the load balancer; a full queue drops it
// as a socket buffer would.
func (b *memBind) fromLB(p []byte) {
	select {
	case b.in <- p:
	default:
		b.c.h.dropsQueue.Add(1)
	}
}

// sendEcho queues the client's next echo to the private service.
func (c *client) sendEcho(now int64) {
	m := msg{src: c.addr, dst: c.h.service, kind: kindEcho, client: uint32(c.id), seq: c.seq.Add(1), sent: now}
	p := putMsg(make([]byte, packetLen), m)
	c.echoes.sent(now)
	if !c.tun.queue(p) {
		c.h.dropsQueue.Add(1)
	}
}

// receive handles a packet the device decrypted for this client: an
// answer to its echo, or the pinger's request, which it answers. A packet
// naming another client is misdelivered.
func (c *client) receive(p []byte) {
	m, err := parseMsg(p)
	if err != nil {
		c.h.foreign.Add(1)
		return
	}
	if m.dst != c.addr || m.client != uint32(c.id) {
		c.h.misdelivered.Add(1)
		return
	}
	now := c.h.now()
	switch m.kind {
	case kindReply:
		c.echoes.answered(m.sent, now)
	case kindPing:
		r := msg{src: c.addr, dst: m.src, kind: kindPong, client: m.client, seq: m.seq, sent: m.sent}
		if !c.tun.queue(putMsg(make([]byte, packetLen), r)) {
			c.h.dropsQueue.Add(1)
		}
	default:
		c.h.misdelivered.Add(1)
	}
}

// recorder keeps one direction's requests and answers of one client while
// the harness records.
type recorder struct {
	mu      sync.Mutex
	on      bool
	from    int64 // requests sent at or after from count…
	cutoff  int64 // …and up to cutoff (0: no cutoff yet)
	nSent   int
	answers []answer
}

type answer struct{ sent, recv int64 } // ns since epoch

func (r *recorder) start(from int64) {
	r.mu.Lock()
	r.on, r.from, r.cutoff, r.nSent, r.answers = true, from, 0, 0, make([]answer, 0, 256)
	r.mu.Unlock()
}

func (r *recorder) stop() {
	r.mu.Lock()
	r.on = false
	r.mu.Unlock()
}

// cut stops counting requests sent after at; answers to earlier ones
// still count.
func (r *recorder) cut(at int64) {
	r.mu.Lock()
	r.cutoff = at
	r.mu.Unlock()
}

func (r *recorder) counts(at int64) bool {
	return r.on && at >= r.from && (r.cutoff == 0 || at <= r.cutoff)
}

func (r *recorder) sent(at int64) {
	r.mu.Lock()
	if r.counts(at) {
		r.nSent++
	}
	r.mu.Unlock()
}

func (r *recorder) answered(sent, recv int64) {
	r.mu.Lock()
	if r.counts(sent) {
		r.answers = append(r.answers, answer{sent, recv})
	}
	r.mu.Unlock()
}

func (r *recorder) snapshot() (int, []answer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nSent, append([]answer(nil), r.answers...)
}

// answeredSince reports whether a request sent at or after t has been
// answered.
func (r *recorder) answeredSince(t int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.answers) - 1; i >= 0; i-- {
		if r.answers[i].sent >= t {
			return true
		}
		if r.answers[i].recv < t {
			return false
		}
	}
	return false
}

// lastAnswer returns the receive time of the latest answer (0: none).
func (r *recorder) lastAnswer() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.answers) == 0 {
		return 0
	}
	return r.answers[len(r.answers)-1].recv
}
