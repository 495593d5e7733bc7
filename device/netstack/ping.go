package netstack

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// sysPinger is the built-in Config.Ping: one ICMP socket per address
// family, opened on first use, shared by all echoes and read by one
// goroutine that hands replies to the waiting callers. It prefers an
// unprivileged ping socket (SOCK_DGRAM/IPPROTO_ICMP, allowed by
// net.ipv4.ping_group_range; the kernel sets the identifier) and falls back
// to a raw socket (CAP_NET_RAW). Replies are matched by peer address and
// sequence number, which sysPinger allocates itself, so clients that happen
// to use the same identifier and sequence do not collide.
type sysPinger struct {
	log *slog.Logger

	mu     sync.Mutex
	closed bool
	socks  [2]*pingSock // IPv4, IPv6
	errs   [2]error     // why a family's socket could not be opened (sticky)
	wg     sync.WaitGroup
}

type pingSock struct {
	conn  *icmp.PacketConn
	raw   bool
	proto int    // 1 or 58, for icmp.ParseMessage
	id    uint16 // identifier of our raw-socket echoes

	mu      sync.Mutex
	seq     uint16
	waiters map[pingKey]chan []byte
}

type pingKey struct {
	peer netip.Addr
	seq  uint16
}

func newSysPinger(log *slog.Logger) *sysPinger {
	return &sysPinger{log: log}
}

// Ping implements Config.Ping. It ignores id and seq (the caller
// puts the client's back into the reply it synthesizes).
func (p *sysPinger) Ping(ctx context.Context, dst netip.Addr, _, _ uint16, payload []byte) ([]byte, error) {
	dst = dst.Unmap().WithZone("")
	s, err := p.sock(dst.Is6())
	if err != nil {
		return nil, err
	}
	seq, ch, err := s.register(dst)
	if err != nil {
		return nil, err
	}
	defer s.unregister(pingKey{dst, seq})

	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: int(s.id), Seq: int(seq), Data: payload}}
	if dst.Is6() {
		msg.Type = ipv6.ICMPTypeEchoRequest // the kernel computes the ICMPv6 checksum
	}
	b, err := msg.Marshal(nil)
	if err != nil {
		return nil, fmt.Errorf("ping %v: %w", dst, err)
	}
	var to net.Addr = &net.UDPAddr{IP: dst.AsSlice()}
	if s.raw {
		to = &net.IPAddr{IP: dst.AsSlice()}
	}
	if _, err := s.conn.WriteTo(b, to); err != nil {
		return nil, fmt.Errorf("ping %v: %w", dst, err)
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("ping %v: %w", dst, ctx.Err())
	}
}

// sock returns the socket for a family, opening it on first use.
func (p *sysPinger) sock(v6 bool) (*pingSock, error) {
	i := 0
	if v6 {
		i = 1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return nil, ErrClosed
	case p.socks[i] != nil:
		return p.socks[i], nil
	case p.errs[i] != nil:
		return nil, p.errs[i]
	}
	s, err := openPingSock(v6)
	if err != nil {
		p.errs[i] = err
		return nil, err
	}
	kind := "ping socket"
	if s.raw {
		kind = "raw socket"
	}
	p.log.Info("netstack: ICMP echo via "+kind, "ipv6", v6)
	p.socks[i] = s
	p.wg.Add(1)
	go p.read(s)
	return s, nil
}

// openPingSock opens a ping socket, or else a raw socket, for a family.
func openPingSock(v6 bool) (*pingSock, error) {
	dgram, raw, wildcard, proto := "udp4", "ip4:icmp", "0.0.0.0", 1
	if v6 {
		dgram, raw, wildcard, proto = "udp6", "ip6:ipv6-icmp", "::", 58
	}
	c, errDgram := icmp.ListenPacket(dgram, wildcard)
	if errDgram == nil {
		return &pingSock{conn: c, proto: proto, waiters: map[pingKey]chan []byte{}}, nil
	}
	c, errRaw := icmp.ListenPacket(raw, wildcard)
	if errRaw == nil {
		var id [2]byte
		rand.Read(id[:])
		return &pingSock{conn: c, raw: true, proto: proto, id: binary.BigEndian.Uint16(id[:]), waiters: map[pingKey]chan []byte{}}, nil
	}
	return nil, fmt.Errorf("%w (ping socket: %v; raw socket: %v)", ErrPingUnavailable, errDgram, errRaw)
}

// register allocates a sequence number for an echo to peer and the channel
// its reply will arrive on.
func (s *pingSock) register(peer netip.Addr) (uint16, chan []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range 1 << 16 {
		s.seq++
		k := pingKey{peer, s.seq}
		if _, busy := s.waiters[k]; !busy {
			ch := make(chan []byte, 1)
			s.waiters[k] = ch
			return s.seq, ch, nil
		}
	}
	return 0, nil, errors.New("ping: no free sequence number")
}

func (s *pingSock) unregister(k pingKey) {
	s.mu.Lock()
	delete(s.waiters, k)
	s.mu.Unlock()
}

// read dispatches echo replies to their waiters until the socket closes.
func (p *sysPinger) read(s *pingSock) {
	defer p.wg.Done()
	buf := make([]byte, 65536)
	for {
		nr, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m, err := icmp.ParseMessage(s.proto, buf[:nr])
		if err != nil || (m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply) {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || (s.raw && uint16(echo.ID) != s.id) {
			continue
		}
		var peer netip.Addr
		switch a := from.(type) {
		case *net.UDPAddr:
			peer, _ = netip.AddrFromSlice(a.IP)
		case *net.IPAddr:
			peer, _ = netip.AddrFromSlice(a.IP)
		}
		k := pingKey{peer.Unmap(), uint16(echo.Seq)}
		s.mu.Lock()
		ch := s.waiters[k]
		delete(s.waiters, k)
		s.mu.Unlock()
		if ch != nil {
			ch <- append([]byte(nil), echo.Data...) // buffered, never blocks
		}
	}
}

// Close closes the sockets and waits for their readers.
func (p *sysPinger) Close() {
	p.mu.Lock()
	p.closed = true
	socks := p.socks
	p.mu.Unlock()
	for _, s := range socks {
		if s != nil {
			s.conn.Close()
		}
	}
	p.wg.Wait()
}
