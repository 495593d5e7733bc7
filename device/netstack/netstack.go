package netstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyguard/anyguard/packet"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// Config configures the unprivileged egress. The zero value of every
// field but Addresses means its default.
type Config struct {
	// Addresses are the gateway's own addresses (e.g. 10.99.0.1/16 on the
	// client network): the stack answers ping and TCP RST/ICMP for them
	// itself, like a host would.
	Addresses []netip.Prefix
	// MTU is the MTU of the packets the egress emits (default 1420).
	MTU int
	// Dial opens the host-side connection for a terminated flow; network is
	// "tcp" or "udp". nil means a net.Dialer with a 5 s timeout. It is called
	// from the egress's own goroutines, one per flow, and may block until ctx
	// is done.
	Dial func(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error)
	// Ping sends one ICMP echo to dst with the given id/seq/payload and
	// returns the reply payload when it arrives. nil means the built-in: an
	// unprivileged ICMP "ping" socket, falling back to a raw ICMP socket when
	// permitted; if neither works, echo requests are dropped and counted. A
	// Ping that can never work returns an error wrapping ErrPingUnavailable.
	// It is called concurrently, one goroutine per echo request in flight.
	Ping func(ctx context.Context, dst netip.Addr, id, seq uint16, payload []byte) ([]byte, error)
	// UDPIdleTimeout closes a UDP flow that has carried nothing either way
	// for this long (default 60 s).
	UDPIdleTimeout time.Duration
	// MaxTCPInFlight bounds TCP connections whose host-side dial is still in
	// progress (default 4096); SYNs beyond it are ignored (the client
	// retransmits) and counted as refused.
	MaxTCPInFlight int
	// MaxTCPFlows bounds established TCP flows (default 16384); beyond it new
	// connections are reset and counted as refused.
	MaxTCPFlows int
	// MaxUDPFlows bounds UDP flows (default 4096); beyond it new flows' packets
	// are dropped and counted as refused.
	MaxUDPFlows int
	// MaxPingsInFlight bounds echo requests awaiting a reply (default 256).
	MaxPingsInFlight int
	// PingTimeout is how long an echo request waits for its reply (default 5 s).
	PingTimeout time.Duration
	// Logger receives flow failures (debug) and one-time warnings; nil
	// discards.
	Logger *slog.Logger
}

// Stack defaults.
const (
	DefaultMTU               = 1420
	DefaultUDPIdleTimeout    = 60 * time.Second
	DefaultMaxTCPInFlight    = 4096
	DefaultMaxTCPFlows       = 16384
	DefaultMaxUDPFlows       = 4096
	DefaultMaxPingsInFlight  = 256
	DefaultPingTimeout       = 5 * time.Second
	defaultDialTimeout       = 5 * time.Second
	netstackEmitOffset       = 16   // headroom before each emitted packet
	netstackEmitBatch        = 128  // packets per emit call at most
	netstackQueueLen         = 1024 // packets the stack may queue toward emit
	netstackReplyQueueLen    = 256  // synthesized echo replies waiting for emit
	netstackNIC              = tcpip.NICID(1)
	netstackMaxPacket        = 65535
	netstackTCPRecvBufMax    = 8 << 20
	netstackTCPSendBufMax    = 6 << 20
	netstackTCPKeepaliveIdle = 2 * time.Minute
	netstackTCPKeepaliveIntv = 30 * time.Second
)

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	for _, p := range c.Addresses {
		if !p.IsValid() || p.Addr().Zone() != "" {
			return fmt.Errorf("netstack: invalid address %v", p)
		}
	}
	switch {
	case c.MTU != 0 && (c.MTU < 576 || c.MTU > netstackMaxPacket):
		return fmt.Errorf("netstack: MTU %d out of range 576..65535", c.MTU)
	case c.UDPIdleTimeout < 0:
		return errors.New("netstack: negative UDPIdleTimeout")
	case c.PingTimeout < 0:
		return errors.New("netstack: negative PingTimeout")
	case c.MaxTCPInFlight < 0 || c.MaxTCPFlows < 0 || c.MaxUDPFlows < 0 || c.MaxPingsInFlight < 0:
		return errors.New("netstack: negative limit")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.UDPIdleTimeout == 0 {
		c.UDPIdleTimeout = DefaultUDPIdleTimeout
	}
	if c.MaxTCPInFlight == 0 {
		c.MaxTCPInFlight = DefaultMaxTCPInFlight
	}
	if c.MaxTCPFlows == 0 {
		c.MaxTCPFlows = DefaultMaxTCPFlows
	}
	if c.MaxUDPFlows == 0 {
		c.MaxUDPFlows = DefaultMaxUDPFlows
	}
	if c.MaxPingsInFlight == 0 {
		c.MaxPingsInFlight = DefaultMaxPingsInFlight
	}
	if c.PingTimeout == 0 {
		c.PingTimeout = DefaultPingTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Dial == nil {
		d := &net.Dialer{Timeout: defaultDialTimeout}
		c.Dial = func(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error) {
			return d.DialContext(ctx, network, dst.String())
		}
	}
	return c
}

// Errors returned by the netstack egress.
var (
	// ErrClosed is returned by Deliver after Close; the batch was dropped.
	ErrClosed = errors.New("netstack: closed")
	// ErrPingUnavailable means ICMP echo cannot be sent from this host: no
	// ping socket (net.ipv4.ping_group_range) and no raw socket (CAP_NET_RAW).
	ErrPingUnavailable = errors.New("icmp echo unavailable: no ping socket (net.ipv4.ping_group_range) and no raw socket (CAP_NET_RAW)")
)

// Drop is why the netstack egress dropped a packet. Each dropped
// packet is counted under exactly one reason.
type Drop uint8

const (
	DropMalformed       Drop = iota // truncated, bad version, header or length
	DropClosed                      // delivered after Close
	DropPingUnavailable             // echo request, but no way to send ICMP from the host
	DropPingOverload                // echo request beyond MaxPingsInFlight
	DropPingFailed                  // echo request that got no reply in time or failed
	DropEmitOverflow                // reply that found the emit queue full or exceeds the MTU
	DropStack                       // rejected by the stack (checksum, malformed L4)
	numNetstackDrops
)

var netstackDropNames = [numNetstackDrops]string{
	DropMalformed:       "malformed",
	DropClosed:          "closed",
	DropPingUnavailable: "ping_unavailable",
	DropPingOverload:    "ping_overload",
	DropPingFailed:      "ping_failed",
	DropEmitOverflow:    "emit_overflow",
	DropStack:           "stack",
}

// String returns the metric label of the reason.
func (d Drop) String() string {
	if d < numNetstackDrops {
		return netstackDropNames[d]
	}
	return "unknown"
}

// Stats is a snapshot of the egress's counters. "Active" fields are
// gauges; every other field counts since New.
type Stats struct {
	PacketsIn, BytesIn   uint64 // packets handed to Deliver (including dropped ones)
	PacketsOut, BytesOut uint64 // packets passed to emit

	TCPFlowsOpened  uint64 // client connections accepted after a successful host dial
	TCPFlowsActive  uint64 // flows dialing, handshaking or established
	TCPFlowsFailed  uint64 // host dial failed; the client got a RST
	TCPFlowsRefused uint64 // SYNs ignored over MaxTCPInFlight, connections reset over MaxTCPFlows

	UDPFlowsOpened  uint64
	UDPFlowsActive  uint64
	UDPFlowsFailed  uint64 // host socket could not be opened
	UDPFlowsRefused uint64 // datagrams of new flows dropped over MaxUDPFlows

	ICMPEchoSent     uint64 // echo requests sent from the host
	ICMPEchoAnswered uint64 // echo replies emitted toward clients
	ICMPEchoDropped  uint64 // echo requests dropped (unavailable, overload, failed, no room)

	Drops map[Drop]uint64
}

// Stack is an egress port: it terminates clients' TCP, UDP and ICMP echo
// in a gVisor network stack and re-originates them from ordinary host
// sockets, so it needs no privileges and no TUN. Deliver takes packets from
// the router; replies leave through the emit function given to New;
// Close stops it and every flow.
type Stack struct {
	cfg   Config
	log   *slog.Logger
	emit  func(bufs [][]byte, offset int)
	stack *stack.Stack
	ep    *link
	own   []netip.Addr
	ping  func(ctx context.Context, dst netip.Addr, id, seq uint16, payload []byte) ([]byte, error)
	sys   *sysPinger // built-in pinger, nil when cfg.Ping is set

	ctx     context.Context
	cancel  context.CancelFunc
	wake    chan struct{} // the stack queued a packet for emit
	replies chan []byte   // synthesized echo replies for emit
	pingSem chan struct{}

	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup
	done   atomic.Bool // set first thing in Close, read by Deliver
	once   sync.Once

	pingUnavailable atomic.Bool // Ping returned ErrPingUnavailable: drop echoes at once

	packetsIn, bytesIn, packetsOut, bytesOut    atomic.Uint64
	tcpOpened, tcpActive, tcpFailed, tcpRefused atomic.Uint64
	udpOpened, udpActive, udpFailed, udpRefused atomic.Uint64
	echoSent, echoAnswered, echoDropped         atomic.Uint64
	drops                                       [numNetstackDrops]atomic.Uint64
}

// New builds the stack and starts its emit goroutine. emit receives
// batches of IP packets toward the clients, packet i in bufs[i][offset:],
// with offset bytes of writable headroom before each; the buffers belong to
// the Stack and are reused once emit returns, so emit must copy what it
// keeps. emit is called from a single goroutine at a time.
func New(cfg Config, emit func(bufs [][]byte, offset int)) (*Stack, error) {
	if emit == nil {
		return nil, errors.New("netstack: nil emit")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := &Stack{
		cfg:     cfg,
		log:     cfg.Logger,
		emit:    emit,
		ping:    cfg.Ping,
		wake:    make(chan struct{}, 1),
		replies: make(chan []byte, netstackReplyQueueLen),
		pingSem: make(chan struct{}, cfg.MaxPingsInFlight),
	}
	if n.ping == nil {
		n.sys = newSysPinger(cfg.Logger)
		n.ping = n.sys.Ping
	}
	for _, p := range cfg.Addresses {
		n.own = append(n.own, p.Addr().Unmap())
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.initStack(); err != nil {
		n.cancel()
		if n.stack != nil {
			n.stack.Destroy()
		}
		return nil, err
	}
	n.ep.AddNotify(n)
	n.wg.Add(1)
	go n.emitLoop()
	return n, nil
}

func (n *Stack) initStack() error {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	n.stack = s
	sack := tcpip.TCPSACKEnabled(true)
	// gVisor's RACK loss detection retransmits spuriously on fast paths
	// (Tailscale issue 9707); plain SACK recovery does better.
	recovery := tcpip.TCPRecovery(0)
	reno := tcpip.CongestionControlOption("reno")
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tcp.DefaultReceiveBufferSize, Max: netstackTCPRecvBufMax}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tcp.DefaultSendBufferSize, Max: netstackTCPSendBufMax}
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sack, &recovery, &reno, &moderate, &rcv, &snd} {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			return fmt.Errorf("netstack: tcp option %T: %v", opt, err)
		}
	}
	n.ep = &link{Endpoint: channel.New(netstackQueueLen, uint32(n.cfg.MTU), "")}
	// TCP hands over super-segments; the emit loop cuts them (gso.go).
	n.ep.SupportedGSOKind = stack.HostGSOSupported
	// Deliver verifies checksums before GRO merges segments (gro.go).
	n.ep.LinkEPCapabilities = stack.CapabilityRXChecksumOffload
	if err := s.CreateNIC(netstackNIC, n.ep); err != nil {
		return fmt.Errorf("netstack: create NIC: %v", err)
	}
	// Accept packets for any destination (the served prefixes) and send
	// replies from any source address.
	if err := s.SetPromiscuousMode(netstackNIC, true); err != nil {
		return fmt.Errorf("netstack: promiscuous mode: %v", err)
	}
	if err := s.SetSpoofing(netstackNIC, true); err != nil {
		return fmt.Errorf("netstack: spoofing: %v", err)
	}
	for _, p := range n.cfg.Addresses {
		a := p.Addr().Unmap()
		proto := ipv4.ProtocolNumber
		if a.Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{
			Protocol:          proto,
			AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(a.AsSlice()), PrefixLen: p.Bits()},
		}
		if err := s.AddProtocolAddress(netstackNIC, pa, stack.AddressProperties{}); err != nil {
			return fmt.Errorf("netstack: add address %v: %v", p, err)
		}
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: netstackNIC},
		{Destination: header.IPv6EmptySubnet, NIC: netstackNIC},
	})
	tcpFwd := tcp.NewForwarder(s, 0, n.cfg.MaxTCPInFlight, n.acceptTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, func(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
		// Unhandled SYNs to the gateway's own addresses get a RST from the stack.
		if n.isOwn(id.LocalAddress) {
			return false
		}
		return tcpFwd.HandlePacket(id, pkt)
	})
	udpFwd := udp.NewForwarder(s, n.acceptUDP)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, func(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
		// Datagrams to the gateway's own addresses get ICMP port unreachable.
		if n.isOwn(id.LocalAddress) {
			return false
		}
		return udpFwd.HandlePacket(id, pkt)
	})
	return nil
}

// isOwn reports whether a is one of the gateway's own addresses.
func (n *Stack) isOwn(a tcpip.Address) bool {
	var ip netip.Addr
	switch a.Len() {
	case 4:
		ip = netip.AddrFrom4(a.As4())
	case 16:
		ip = netip.AddrFrom16(a.As16())
	default:
		return false
	}
	return n.isOwnAddr(ip)
}

func (n *Stack) isOwnAddr(ip netip.Addr) bool {
	for _, o := range n.own {
		if o == ip {
			return true
		}
	}
	return false
}

// Deliver takes IP packets bufs[i][offset:] (each slice ends exactly at the
// packet's end) destined for served prefixes or the gateway's own addresses.
// It may be called concurrently from many goroutines, does not retain bufs
// after it returns and does not block for long: packets it cannot handle are
// dropped and counted. It returns ErrClosed (the whole batch dropped)
// after Close, nil otherwise.
func (n *Stack) Deliver(bufs [][]byte, offset int) error {
	if n.done.Load() {
		n.drops[DropClosed].Add(uint64(len(bufs)))
		return ErrClosed
	}
	d := n.ep.dispatcher.Load()
	if d == nil {
		n.drops[DropClosed].Add(uint64(len(bufs)))
		return ErrClosed
	}
	g := groPool.Get().(*gro.GRO)
	g.Dispatcher = d.NetworkDispatcher
	defer func() {
		flushGRO(g)
		g.Dispatcher = nil
		groPool.Put(g)
	}()
	for _, b := range bufs {
		n.packetsIn.Add(1)
		if offset < 0 || offset >= len(b) {
			n.drops[DropMalformed].Add(1)
			continue
		}
		p := b[offset:]
		n.bytesIn.Add(uint64(len(p)))
		h, err := packet.Parse(p)
		if err != nil {
			n.drops[DropMalformed].Add(1)
			continue
		}
		p = p[:h.Length]
		proto := ipv4.ProtocolNumber
		if h.Version == 6 {
			proto = ipv6.ProtocolNumber
		}
		if e, ok := packet.ParseEcho(h); ok && !e.Reply && e.Code == 0 && !n.isOwnAddr(h.Dst) {
			n.handleEcho(h.Src, h.Dst, e)
			continue
		}
		if !checksumsValid(&h, p) {
			n.drops[DropStack].Add(1)
			continue
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(p)})
		pkt.NetworkProtocolNumber = proto
		pkt.RXChecksumValidated = true
		g.Enqueue(pkt)
		pkt.DecRef()
	}
	return nil
}

// WriteNotify implements channel.Notification: the stack queued a packet.
// It runs on stack goroutines and never blocks.
func (n *Stack) WriteNotify() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// emitLoop moves packets from the stack's queue and the echo reply queue to
// emit, batching whatever is ready without waiting for more.
func (n *Stack) emitLoop() {
	defer n.wg.Done()
	b := emitBatch{bufs: make([][]byte, netstackEmitBatch), mtu: n.cfg.MTU}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, netstackEmitOffset+n.cfg.MTU)
	}
	b.out = make([][]byte, 0, netstackEmitBatch)
	var held *stack.PacketBuffer // read but not fitting into the last batch
	defer func() {
		if held != nil {
			held.DecRef()
		}
	}()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.wake:
		case r := <-n.replies:
			b.appendCopy(r)
		}
		for {
			for len(b.out) < netstackEmitBatch {
				pkt := held
				held = nil
				if pkt == nil {
					pkt = n.ep.Read()
				}
				if pkt == nil {
					break
				}
				if len(b.out) > 0 && len(b.out)+gsoSegments(pkt) > netstackEmitBatch {
					held = pkt
					break
				}
				if !b.appendPacket(pkt) {
					n.drop(DropEmitOverflow)
				}
				pkt.DecRef()
			}
		replies:
			for len(b.out) < netstackEmitBatch {
				select {
				case r := <-n.replies:
					b.appendCopy(r)
				default:
					break replies
				}
			}
			if len(b.out) == 0 {
				break
			}
			var bytes uint64
			for _, p := range b.out {
				bytes += uint64(len(p) - netstackEmitOffset)
			}
			n.emit(b.out, netstackEmitOffset)
			n.packetsOut.Add(uint64(len(b.out)))
			n.bytesOut.Add(bytes)
			more := len(b.out) >= netstackEmitBatch || held != nil
			b.out = b.out[:0]
			if !more {
				break
			}
		}
	}
}

// emitBatch is the emit loop's batch: packets out[i] live in bufs[i] after
// netstackEmitOffset bytes of headroom. The buffers are reused from batch to
// batch; there are more than netstackEmitBatch only after one super-segment
// was cut into more packets than that.
type emitBatch struct {
	bufs [][]byte
	out  [][]byte
	mtu  int
}

// next returns the next buffer, with room for size bytes after the
// headroom, growing it if a packet exceeds the MTU.
func (b *emitBatch) next(size int) []byte {
	i := len(b.out)
	if i == len(b.bufs) {
		b.bufs = append(b.bufs, make([]byte, netstackEmitOffset+max(size, b.mtu)))
	}
	if cap(b.bufs[i]) < netstackEmitOffset+size {
		b.bufs[i] = make([]byte, netstackEmitOffset+size)
	}
	return b.bufs[i][:netstackEmitOffset+size]
}

// appendCopy appends a copy of packet p.
func (b *emitBatch) appendCopy(p []byte) {
	buf := b.next(len(p))
	copy(buf[netstackEmitOffset:], p)
	b.out = append(b.out, buf)
}

// appendPacket appends the packet the stack sent, cut into MSS-sized
// packets if it is a TCP super-segment (gso.go). It reports false, having
// appended nothing, for a super-segment whose headers it cannot cut.
func (b *emitBatch) appendPacket(pkt *stack.PacketBuffer) bool {
	g := pkt.GSOOptions
	if g.Type != stack.GSOTCPv4 && g.Type != stack.GSOTCPv6 {
		buf := b.next(pkt.Size())
		c := newPacketCursor(pkt)
		b.out = append(b.out, buf[:netstackEmitOffset+c.read(buf[netstackEmitOffset:])])
		return true
	}
	ip, tcp := pkt.NetworkHeader().Slice(), pkt.TransportHeader().Slice()
	if !gsoHeadersOK(ip, tcp) {
		return false
	}
	payload := pkt.Data().Size()
	mss := int(g.MSS)
	if mss <= 0 || mss > payload {
		mss = max(payload, 1)
	}
	c := newPayloadCursor(pkt)
	for seg, off := 0, 0; seg == 0 || off < payload; seg, off = seg+1, off+mss {
		size := min(mss, payload-off)
		buf := b.next(len(ip) + len(tcp) + size)
		w := tcpSegment(buf[netstackEmitOffset:], ip, tcp, &c, size, seg, off, off+size == payload)
		b.out = append(b.out, buf[:netstackEmitOffset+w])
	}
	return true
}

// startGoroutine registers a goroutine that Close waits for, or reports
// false once Close has begun.
func (n *Stack) startGoroutine() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.wg.Add(1)
	return true
}

// Close stops the egress: it aborts every flow and pending echo, stops the
// stack and waits for all of its goroutines. It is safe to call more than
// once and concurrently with Deliver.
func (n *Stack) Close() error {
	n.once.Do(func() {
		n.done.Store(true)
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		n.cancel() // aborts flows and pending dials and pings
		n.stack.Close()
		n.wg.Wait()
		n.ep.Close()
		n.stack.Wait()
		if n.sys != nil {
			n.sys.Close()
		}
	})
	return nil
}

// Stats returns a snapshot of the counters.
func (n *Stack) Stats() Stats {
	st := Stats{
		PacketsIn: n.packetsIn.Load(), BytesIn: n.bytesIn.Load(),
		PacketsOut: n.packetsOut.Load(), BytesOut: n.bytesOut.Load(),
		TCPFlowsOpened: n.tcpOpened.Load(), TCPFlowsActive: n.tcpActive.Load(),
		TCPFlowsFailed: n.tcpFailed.Load(), TCPFlowsRefused: n.tcpRefused.Load(),
		UDPFlowsOpened: n.udpOpened.Load(), UDPFlowsActive: n.udpActive.Load(),
		UDPFlowsFailed: n.udpFailed.Load(), UDPFlowsRefused: n.udpRefused.Load(),
		ICMPEchoSent: n.echoSent.Load(), ICMPEchoAnswered: n.echoAnswered.Load(),
		ICMPEchoDropped: n.echoDropped.Load(),
		Drops:           make(map[Drop]uint64, numNetstackDrops),
	}
	ss := n.stack.Stats()
	st.TCPFlowsRefused += ss.TCP.ForwardMaxInFlightDrop.Value()
	for i := range n.drops {
		st.Drops[Drop(i)] = n.drops[i].Load()
	}
	st.Drops[DropStack] += ss.IP.MalformedPacketsReceived.Value() +
		ss.TCP.ChecksumErrors.Value() + ss.TCP.InvalidSegmentsReceived.Value() +
		ss.UDP.ChecksumErrors.Value() + ss.UDP.MalformedPacketsReceived.Value() +
		ss.ICMP.V4.PacketsReceived.Invalid.Value() + ss.ICMP.V6.PacketsReceived.Invalid.Value()
	return st
}

// drop counts a dropped packet.
func (n *Stack) drop(d Drop) { n.drops[d].Add(1) }

// addrPort converts a stack address and port.
func addrPort(a tcpip.Address, port uint16) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return netip.AddrPortFrom(ip.Unmap(), port)
}
