package device

import (
	"os"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

// ForwardFunc takes packets out of a device: packet i is bufs[i][offset:],
// each slice ending exactly at the packet's end, with offset bytes of
// writable headroom before it. It must not retain bufs after returning.
type ForwardFunc func(bufs [][]byte, offset int)

// portBatches bounds the packets in flight from the router to a device:
// Deliver blocks (backpressure) once this many batches wait to be read.
const portBatches = 32

// Port is an in-memory tun.Device joining a wireguard-go device to the
// router. Packets the device decrypts (its Write) go straight to forward on
// the device's goroutine; packets the router delivers (Deliver) are copied
// into pooled batches that the device's reader goroutine drains (its Read).
type Port struct {
	name    string
	mtu     int
	forward ForwardFunc

	free   chan *portBatch // empty batches
	ready  chan *portBatch // filled batches, in order
	closed chan struct{}
	once   sync.Once
	events chan tun.Event

	// Owned by the single goroutine that calls Read.
	cur    *portBatch
	curIdx int

	tooBig atomic.Uint64
}

type portBatch struct {
	arena []byte
	pkts  [][]byte
}

// NewPort returns a Port whose packets toward the network go to forward.
func NewPort(name string, mtu int, forward ForwardFunc) *Port {
	p := &Port{
		name:    name,
		mtu:     mtu,
		forward: forward,
		free:    make(chan *portBatch, portBatches),
		ready:   make(chan *portBatch, portBatches),
		closed:  make(chan struct{}),
		events:  make(chan tun.Event),
	}
	// Room for a full batch of MTU-sized packets, and never less than one
	// maximum-size IP packet.
	arena := max(conn.IdealBatchSize*(mtu+32), 65535)
	for range portBatches {
		p.free <- &portBatch{arena: make([]byte, 0, arena), pkts: make([][]byte, 0, conn.IdealBatchSize)}
	}
	return p
}

// Deliver copies packets bufs[i][offset:] into the port for the device to
// read. It blocks while the device is behind (bounded memory, backpressure)
// and returns os.ErrClosed once the port is closed.
func (p *Port) Deliver(bufs [][]byte, offset int) error {
	w := batchWriter{p: p}
	for _, buf := range bufs {
		pkt := buf[offset:]
		dst, err := w.next(len(pkt))
		if err != nil {
			return err
		}
		copy(dst, pkt)
	}
	return w.flush()
}

// batchWriter fills a port's batches during one Deliver call (or one
// DeliverVia of a BackbonePort): the single copy of each packet from the
// router's buffer into the port.
type batchWriter struct {
	p *Port
	b *portBatch // being filled; nil before the first packet
}

// next reserves n bytes for the next packet in the current batch, handing
// the batch to the reader and taking a free one when it is full. The caller
// fills all n bytes. A packet that cannot fit even an empty batch is counted
// as oversized and dropped: next returns a nil slice (copying into which
// does nothing) and no error. The error is os.ErrClosed once the port is
// closed.
func (w *batchWriter) next(n int) ([]byte, error) {
	b := w.b
	if b != nil && len(b.pkts) > 0 && (len(b.pkts) == cap(b.pkts) || len(b.arena)+n > cap(b.arena)) {
		if !w.p.push(b) {
			return nil, os.ErrClosed
		}
		b, w.b = nil, nil
	}
	if b == nil {
		select {
		case <-w.p.closed: // checked first: a free batch is always ready too
			return nil, os.ErrClosed
		default:
		}
		select {
		case b = <-w.p.free:
			w.b = b
		case <-w.p.closed:
			return nil, os.ErrClosed
		}
	}
	if len(b.arena)+n > cap(b.arena) {
		w.p.tooBig.Add(1)
		return nil, nil
	}
	start := len(b.arena)
	b.arena = b.arena[:start+n]
	pkt := b.arena[start : start+n : start+n]
	b.pkts = append(b.pkts, pkt)
	return pkt, nil
}

// flush hands the last batch to the reader; an empty one goes back to the
// free list, so Read never sees a batch without packets.
func (w *batchWriter) flush() error {
	b := w.b
	w.b = nil
	if b == nil {
		return nil
	}
	if len(b.pkts) == 0 {
		w.p.recycle(b)
		return nil
	}
	if !w.p.push(b) {
		return os.ErrClosed
	}
	return nil
}

func (p *Port) push(b *portBatch) bool {
	select {
	case p.ready <- b:
		return true
	case <-p.closed:
		return false
	}
}

func (p *Port) recycle(b *portBatch) {
	b.arena = b.arena[:0]
	b.pkts = b.pkts[:0]
	p.free <- b // never blocks: at most portBatches exist
}

// Read implements tun.Device for the wireguard-go device's single reader
// goroutine: it blocks until packets are delivered, then fills as many of
// bufs as are ready.
func (p *Port) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-p.closed:
		return 0, os.ErrClosed
	default:
	}
	if p.cur == nil {
		select {
		case p.cur = <-p.ready:
			p.curIdx = 0
		case <-p.closed:
			return 0, os.ErrClosed
		}
	}
	n := 0
	for n < len(bufs) && p.cur != nil {
		pkt := p.cur.pkts[p.curIdx]
		p.curIdx++
		if len(pkt) <= len(bufs[n])-offset {
			sizes[n] = copy(bufs[n][offset:], pkt)
			n++
		} else {
			p.tooBig.Add(1)
		}
		if p.curIdx == len(p.cur.pkts) {
			p.recycle(p.cur)
			p.cur = nil
			select {
			case p.cur = <-p.ready:
				p.curIdx = 0
			default:
			}
		}
	}
	return n, nil
}

// Write implements tun.Device: the device hands over decrypted packets,
// which go to the forward function before Write returns.
func (p *Port) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case <-p.closed:
		return 0, os.ErrClosed
	default:
	}
	p.forward(bufs, offset)
	return len(bufs), nil
}

// MTU implements tun.Device.
func (p *Port) MTU() (int, error) { return p.mtu, nil }

// Name implements tun.Device.
func (p *Port) Name() (string, error) { return p.name, nil }

// File implements tun.Device; a Port has no file.
func (p *Port) File() *os.File { return nil }

// Events implements tun.Device. A Port sends no events: its owner brings
// the device up and down explicitly.
func (p *Port) Events() <-chan tun.Event { return p.events }

// BatchSize implements tun.Device.
func (p *Port) BatchSize() int { return conn.IdealBatchSize }

// Close implements tun.Device: Read and Deliver return os.ErrClosed.
func (p *Port) Close() error {
	p.once.Do(func() {
		close(p.closed)
		close(p.events)
	})
	return nil
}

// Oversized returns how many packets were dropped for not fitting a buffer.
func (p *Port) Oversized() uint64 { return p.tooBig.Load() }
