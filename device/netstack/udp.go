package netstack

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// acceptUDP handles the first datagram of a new UDP flow toward a served
// prefix. It runs on the packet path (inside Deliver), so it only creates
// the stack-side endpoint, which queues the datagram, and leaves the host
// side to a goroutine.
func (n *Stack) acceptUDP(r *udp.ForwarderRequest) {
	if n.udpActive.Add(1) > uint64(n.cfg.MaxUDPFlows) {
		n.udpActive.Add(^uint64(0))
		n.udpRefused.Add(1)
		return
	}
	if !n.startGoroutine() {
		n.udpActive.Add(^uint64(0))
		return
	}
	var wq waiter.Queue
	ep, err := r.CreateEndpoint(&wq)
	if err != nil {
		n.udpActive.Add(^uint64(0))
		n.udpFailed.Add(1)
		n.wg.Done()
		return
	}
	id := r.ID()
	go n.proxyUDP(gonet.NewUDPConn(&wq, ep), newStackReader(ep, &wq, false), addrPort(id.RemoteAddress, id.RemotePort), addrPort(id.LocalAddress, id.LocalPort))
}

// proxyUDP opens the host socket for a UDP flow and copies datagrams both
// ways until the flow has been idle for UDPIdleTimeout or the Stack
// closes.
func (n *Stack) proxyUDP(client *gonet.UDPConn, cr *stackReader, src, dst netip.AddrPort) {
	defer n.wg.Done()
	defer n.udpActive.Add(^uint64(0))
	defer client.Close()
	defer cr.close()
	host, err := n.cfg.Dial(n.ctx, "udp", dst)
	if err != nil {
		n.udpFailed.Add(1)
		if n.log.Enabled(n.ctx, slog.LevelDebug) {
			n.log.Debug("netstack: udp dial failed", "client", src, "endpoint", dst, "err", err)
		}
		return
	}
	defer host.Close()
	n.udpOpened.Add(1)
	closeBoth := func() {
		client.Close()
		host.Close()
	}
	stop := context.AfterFunc(n.ctx, closeBoth)
	defer stop()

	f := udpFlow{idle: n.cfg.UDPIdleTimeout, start: time.Now()}
	done := make(chan struct{})
	go func() { // host → client
		defer close(done)
		f.relay(client, newHostReader(host))
		closeBoth()
	}()
	f.relay(host, cr) // client → host
	closeBoth()
	<-done
}

// udpFlow tracks the last activity of a UDP flow in either direction.
type udpFlow struct {
	idle  time.Duration
	start time.Time
	last  atomic.Int64 // time.Since(start) of the last datagram
}

// relay moves datagrams from src to dst until the flow has been idle in both
// directions for f.idle or src fails or closes.
func (f *udpFlow) relay(dst io.Writer, src flowReader) {
	deadline := time.Now().Add(f.idle)
	for {
		err := src.waitReadable(deadline)
		if err == nil {
			bp := udpBufPool.Get().(*[]byte)
			var nr int
			nr, err = src.Read(*bp)
			if err == nil {
				// A failed write loses one datagram, as UDP may.
				dst.Write((*bp)[:nr])
				now := time.Now()
				f.last.Store(int64(now.Sub(f.start)))
				deadline = now.Add(f.idle)
			}
			udpBufPool.Put(bp)
		}
		switch {
		case err == nil, errors.Is(err, errNotReady):
		case errors.Is(err, errIdle):
			// Idle in this direction; the flow lives on while the other
			// direction carries traffic.
			last := f.start.Add(time.Duration(f.last.Load()))
			if time.Since(last) >= f.idle {
				return
			}
			deadline = last.Add(f.idle)
		case errors.Is(err, syscall.ECONNREFUSED):
			// ICMP port unreachable for an earlier datagram; like a
			// client's own socket, keep the flow.
		default:
			return
		}
	}
}
