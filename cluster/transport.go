package cluster

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

// The gossip transport.
//
// memberlist's own NetTransport reads every UDP datagram into a fresh
// 64 KiB buffer and hands that buffer on, so each datagram that reaches
// the gossip port, junk included, costs 64 KiB of garbage. A flood of
// small junk datagrams (measured: 12,800 per gateway in 4 s, in the e2e
// fault suite) then allocates hundreds of megabytes a second, runs the
// garbage collector flat out and raises resident memory to whatever the
// collector's target is, round after round. This transport is
// NetTransport's twin (one TCP and one UDP socket on the same address
// and port, the same advertise rules), except that it reads datagrams
// into one buffer of its own and hands memberlist an exact-size copy:
// a junk datagram costs its own length.

// udpReadSize is the largest datagram read: a UDP payload's maximum.
const udpReadSize = 65535

// udpRecvBuffer is the socket receive buffer asked for (halved until the
// kernel accepts it), as memberlist asks: room for a burst of gossip
// while its handler is busy.
const udpRecvBuffer = 2 << 20

// gossipTransport is memberlist's transport over one TCP listener and one
// UDP socket bound to the same address and port.
type gossipTransport struct {
	bind   netip.AddrPort // as configured; the port may be 0
	tcp    *net.TCPListener
	udp    *net.UDPConn
	logger *log.Logger

	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*gossipTransport)(nil)

// newGossipTransport listens on bind (TCP and UDP, the same port; port 0
// picks one free for both) and starts reading.
func newGossipTransport(bind netip.AddrPort, logger *log.Logger) (*gossipTransport, error) {
	tcp, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(bind))
	if err != nil {
		return nil, fmt.Errorf("listen on TCP %s: %w", bind, err)
	}
	port := uint16(tcp.Addr().(*net.TCPAddr).Port)
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind.Addr(), port)))
	if err != nil {
		tcp.Close()
		return nil, fmt.Errorf("listen on UDP %s: %w", netip.AddrPortFrom(bind.Addr(), port), err)
	}
	for size := udpRecvBuffer; size > 0; size /= 2 {
		if udp.SetReadBuffer(size) == nil {
			break
		}
	}
	t := &gossipTransport{
		bind: bind, tcp: tcp, udp: udp, logger: logger,
		packets: make(chan *memberlist.Packet),
		streams: make(chan net.Conn),
		done:    make(chan struct{}),
	}
	t.wg.Add(2)
	go t.acceptLoop()
	go t.readLoop()
	return t, nil
}

// port is the port both sockets are bound to.
func (t *gossipTransport) port() int {
	return t.tcp.Addr().(*net.TCPAddr).Port
}

// FinalAdvertiseAddr implements memberlist.Transport as NetTransport
// does: the address given, else the bound address, else (bound to the
// unspecified address) the host's private address.
func (t *gossipTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		a := net.ParseIP(ip)
		if a == nil {
			return nil, 0, fmt.Errorf("failed to parse advertise address %q", ip)
		}
		if a4 := a.To4(); a4 != nil {
			a = a4
		}
		return a, port, nil
	}
	if !t.bind.Addr().IsUnspecified() {
		return net.IP(t.bind.Addr().Unmap().AsSlice()), t.port(), nil
	}
	// The rule memberlist's NetTransport applies, with the library it
	// uses (go-sockaddr, already a dependency of memberlist's).
	ip, err := sockaddr.GetPrivateIP()
	if err != nil {
		return nil, 0, fmt.Errorf("failed to get interface addresses: %v", err)
	}
	a := net.ParseIP(ip)
	if a == nil {
		return nil, 0, fmt.Errorf("no private IP address found, and explicit IP not provided")
	}
	return a, t.port(), nil
}

// WriteTo implements memberlist.Transport.
func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (t *gossipTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	ua, err := net.ResolveUDPAddr("udp", a.Addr)
	if err != nil {
		return time.Time{}, err
	}
	_, err = t.udp.WriteTo(b, ua)
	return time.Now(), err
}

// PacketCh implements memberlist.Transport.
func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// DialTimeout implements memberlist.Transport.
func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *gossipTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", a.Addr)
}

// StreamCh implements memberlist.Transport.
func (t *gossipTransport) StreamCh() <-chan net.Conn { return t.streams }

// Shutdown implements memberlist.Transport: it closes both sockets and
// waits for the goroutines reading them.
func (t *gossipTransport) Shutdown() error {
	t.once.Do(func() {
		close(t.done)
		t.tcp.Close()
		t.udp.Close()
	})
	t.wg.Wait()
	return nil
}

func (t *gossipTransport) closing() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// acceptLoop hands accepted connections to memberlist, backing off (5 ms
// doubling to 1 s) while Accept fails, as NetTransport does.
func (t *gossipTransport) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.closing() {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.logger.Printf("[ERR] memberlist: Error accepting TCP connection: %v", err)
			select {
			case <-time.After(delay):
			case <-t.done:
				return
			}
			continue
		}
		delay = 0
		select {
		case t.streams <- c:
		case <-t.done:
			c.Close()
			return
		}
	}
}

// readLoop reads datagrams into one buffer and hands memberlist a copy of
// exactly each one's length. An empty datagram is no gossip: it is
// dropped (and logged like other junk, once a minute per source).
func (t *gossipTransport) readLoop() {
	defer t.wg.Done()
	buf := make([]byte, udpReadSize)
	for {
		n, from, err := t.udp.ReadFromUDPAddrPort(buf)
		ts := time.Now()
		if err != nil {
			if t.closing() || errors.Is(err, net.ErrClosed) {
				return
			}
			t.logger.Printf("[ERR] memberlist: Error reading UDP packet: %v", err)
			continue
		}
		if n == 0 {
			t.logger.Printf("[ERR] memberlist: UDP packet too short (0 bytes) from=%s", from)
			continue
		}
		msg := make([]byte, n)
		copy(msg, buf)
		p := &memberlist.Packet{
			Buf:       msg,
			From:      net.UDPAddrFromAddrPort(netip.AddrPortFrom(from.Addr().Unmap(), from.Port())),
			Timestamp: ts,
		}
		select {
		case t.packets <- p:
		case <-t.done:
			return
		}
	}
}

// isEmptyDatagram reports whether a log line is the transport's about an
// empty datagram: junk anyone can send, logged once a minute per source.
func isEmptyDatagram(line string) bool {
	return strings.Contains(line, "UDP packet too short (0 bytes)")
}
