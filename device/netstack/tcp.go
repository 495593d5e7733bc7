package netstack

import (
	"context"
	"log/slog"
	"net"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// acceptTCP handles a client's SYN toward a served prefix. The TCP forwarder
// runs it on a goroutine of its own per connection attempt; it lasts as long
// as the flow.
func (n *Stack) acceptTCP(r *tcp.ForwarderRequest) {
	if !n.startGoroutine() {
		r.Complete(true)
		return
	}
	defer n.wg.Done()
	if n.tcpActive.Add(1) > uint64(n.cfg.MaxTCPFlows) {
		n.tcpActive.Add(^uint64(0))
		n.tcpRefused.Add(1)
		r.Complete(true)
		return
	}
	defer n.tcpActive.Add(^uint64(0))

	id := r.ID()
	dst := addrPort(id.LocalAddress, id.LocalPort)
	// Dial the host before completing the client's handshake, so that a
	// refused or unreachable destination reaches the client as a RST, as if it
	// had tried the destination itself. Retransmitted SYNs are absorbed by the
	// forwarder meanwhile.
	host, err := n.cfg.Dial(n.ctx, "tcp", dst)
	if err != nil {
		n.tcpFailed.Add(1)
		if n.log.Enabled(n.ctx, slog.LevelDebug) {
			n.log.Debug("netstack: tcp dial failed", "client", addrPort(id.RemoteAddress, id.RemotePort), "endpoint", dst, "err", err)
		}
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		n.tcpFailed.Add(1)
		r.Complete(true)
		host.Close()
		return
	}
	r.Complete(false)
	n.tcpOpened.Add(1)
	// Keepalives so that flows of clients that vanished end eventually.
	ep.SocketOptions().SetKeepAlive(true)
	idle := tcpip.KeepaliveIdleOption(netstackTCPKeepaliveIdle)
	intv := tcpip.KeepaliveIntervalOption(netstackTCPKeepaliveIntv)
	ep.SetSockOpt(&idle)
	ep.SetSockOpt(&intv)
	n.proxyTCP(gonet.NewTCPConn(&wq, ep), ep, &wq, host)
}

type closeWriter interface{ CloseWrite() error }

type lingerer interface{ SetLinger(sec int) error }

// proxyTCP copies both ways between the client's terminated connection and
// the host's until both directions are done. A FIN in one direction is
// passed on as a half-close; an error (reset) aborts both sides, so a reset
// travels on as a reset.
func (n *Stack) proxyTCP(client *gonet.TCPConn, ep tcpip.Endpoint, wq *waiter.Queue, host net.Conn) {
	var abortOnce sync.Once
	abort := func() {
		abortOnce.Do(func() {
			if l, ok := host.(lingerer); ok {
				l.SetLinger(0) // close with RST
			}
			host.Close()
			ep.Abort()
		})
	}
	stop := context.AfterFunc(n.ctx, abort)
	defer stop()

	done := make(chan struct{})
	go func() { // host → client
		defer close(done)
		if err := relayStream(client, newHostReader(host)); err != nil {
			abort()
			return
		}
		client.CloseWrite()
	}()
	cr := newStackReader(ep, wq, true)
	err := relayStream(host, cr) // client → host
	cr.close()
	switch cw, ok := host.(closeWriter); {
	case err != nil:
		abort()
	case ok:
		cw.CloseWrite()
	default:
		// The host connection cannot half-close: closing it is the closest.
		host.Close()
	}
	<-done
	client.Close()
	host.Close()
}
