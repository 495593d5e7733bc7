package netstack

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"

	"github.com/anyguard/anyguard/packet"
)

// ICMP echo toward served prefixes is not left to the stack, which would
// either ignore it or answer for hosts it knows nothing about. Deliver
// intercepts echo requests, a goroutine per request performs the echo from
// the host (cfg.Ping), and the reply is synthesized as an IP packet and
// handed to the emit goroutine.

// handleEcho starts the host-side echo for a request that Deliver
// intercepted, or drops it. It copies what it keeps of e.
func (n *Stack) handleEcho(src, dst netip.Addr, e packet.Echo) {
	switch {
	case !e.ChecksumOK || !src.IsValid() || src.IsUnspecified() || src.IsMulticast():
		n.drop(DropMalformed)
		return
	case n.pingUnavailable.Load():
		n.echoDropped.Add(1)
		n.drop(DropPingUnavailable)
		return
	}
	select {
	case n.pingSem <- struct{}{}:
	default:
		n.echoDropped.Add(1)
		n.drop(DropPingOverload)
		return
	}
	if !n.startGoroutine() {
		<-n.pingSem
		n.drop(DropClosed)
		return
	}
	payload := append([]byte(nil), e.Data...)
	go n.echo(src, dst, e.ID, e.Seq, payload)
}

// echo performs one echo from the host and queues the reply for emit.
func (n *Stack) echo(src, dst netip.Addr, id, seq uint16, payload []byte) {
	defer n.wg.Done()
	defer func() { <-n.pingSem }()
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.PingTimeout)
	defer cancel()
	reply, err := n.ping(ctx, dst, id, seq, payload)
	if err != nil {
		n.echoDropped.Add(1)
		if errors.Is(err, ErrPingUnavailable) {
			n.drop(DropPingUnavailable)
			if !n.pingUnavailable.Swap(true) {
				n.log.Warn("netstack: ICMP echo toward served prefixes is unavailable; echo requests will be dropped", "err", err)
			}
			return
		}
		n.echoSent.Add(1)
		n.drop(DropPingFailed)
		if n.log.Enabled(ctx, slog.LevelDebug) {
			n.log.Debug("netstack: echo failed", "client", src, "endpoint", dst, "err", err)
		}
		return
	}
	n.echoSent.Add(1)
	hdr := 20
	if dst.Is6() {
		hdr = 40
	}
	if hdr+packet.EchoHeaderLen+len(reply) > n.cfg.MTU {
		n.echoDropped.Add(1)
		n.drop(DropEmitOverflow)
		return
	}
	pkt := packet.AppendEcho(make([]byte, 0, hdr+packet.EchoHeaderLen+len(reply)), dst, src,
		packet.Echo{Reply: true, ID: id, Seq: seq, Data: reply})
	select {
	case n.replies <- pkt:
		n.echoAnswered.Add(1)
	default:
		n.echoDropped.Add(1)
		n.drop(DropEmitOverflow)
	}
}
