package failover

import (
	"net/netip"
	"sync"

	"github.com/anyguard/anyguard/router"
)

// The private side, in the last region's private network: an echo
// service at .0.1 answering every client's echo, and a pinger at .0.2
// sending each client a request that the client answers. Both sit behind
// each gateway's egress port (Options.WrapEgress) and send into the
// gateway's router from the egress port, as hosts of the private network
// would.
func serviceAddr(regions int) netip.Addr { return regionPrefix(regions - 1).Addr().Next() }
func pingerAddr(regions int) netip.Addr  { return serviceAddr(regions).Next() }

// headroom before packets handed to the router.
const headroom = 16

// privatePort wraps a gateway's egress: the harness's traffic is answered
// here, everything else goes to the real egress.
type privatePort struct {
	h     *harness
	inner router.Port
	gw    *gw
	out   chan []byte
	done  chan struct{}
	wg    sync.WaitGroup
}

func newPrivatePort(h *harness, g *gw, inner router.Port) *privatePort {
	p := &privatePort{h: h, inner: inner, gw: g, out: make(chan []byte, 4096), done: make(chan struct{})}
	p.wg.Add(1)
	go p.send()
	return p
}

// Deliver implements router.Port.
func (p *privatePort) Deliver(bufs [][]byte, offset int) error {
	var rest [][]byte
	for _, b := range bufs {
		pkt := b[offset:]
		m, err := parseMsg(pkt)
		if err != nil || (m.dst != p.h.service && m.dst != p.h.pinger) {
			rest = append(rest, b)
			continue
		}
		if int(m.client) >= len(p.h.clients) || m.src != clientAddr(int(m.client)) {
			p.h.misdelivered.Add(1)
			continue
		}
		switch {
		case m.kind == kindEcho && m.dst == p.h.service:
			r := msg{src: p.h.service, dst: m.src, kind: kindReply, client: m.client, seq: m.seq, sent: m.sent}
			p.inject(r)
		case m.kind == kindPong && m.dst == p.h.pinger:
			p.h.clients[m.client].pings.answered(m.sent, p.h.now())
		default:
			p.h.misdelivered.Add(1)
		}
	}
	if len(rest) > 0 {
		return p.inner.Deliver(rest, offset)
	}
	return nil
}

// inject queues a packet from the private network into the gateway.
func (p *privatePort) inject(m msg) {
	b := make([]byte, headroom+packetLen)
	putMsg(b[headroom:], m)
	select {
	case p.out <- b:
	default:
		p.h.dropsQueue.Add(1)
	}
}

// send forwards injected packets into the router from the egress port,
// on its own goroutine (never from inside Deliver), in batches of what
// has queued up, as a host's NIC hands the gateway a burst.
func (p *privatePort) send() {
	defer p.wg.Done()
	batch := make([][]byte, 0, 128)
	for {
		select {
		case b := <-p.out:
			batch = append(batch[:0], b)
		case <-p.done:
			return
		}
	more:
		for len(batch) < cap(batch) {
			select {
			case b := <-p.out:
				batch = append(batch, b)
			default:
				break more
			}
		}
		if id, ok := p.gw.egressID(); ok {
			p.gw.g.Router().Forward(id, batch, headroom)
		}
	}
}

func (p *privatePort) close() {
	close(p.done)
	p.wg.Wait()
}
