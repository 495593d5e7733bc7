// Package probe is the gateway's data-path probe: an internal WireGuard
// peer that sends an ICMP echo through everything a client's packet
// crosses, so readiness is proven with traffic rather than flags.
package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	wgdevice "golang.zx2c4.com/wireguard/device"

	"github.com/anyguard/anyguard/device"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/keys"
)

// The data-path probe proves readiness with traffic rather than flags. An
// internal WireGuard peer (its own wireguard-go device with a key made at
// start that never leaves memory, added to the client device with only the
// probe address as allowed IP) sends an ICMP echo every interval over
// loopback UDP to the client port, to the gateway's own address on the
// client network. The echo crosses everything a client's packet crosses:
// the client UDP socket and classifying bind, the client device's
// handshake and decryption, the Port, the router (source check, route,
// TTL) and the egress — in tun mode the kernel TUN, where the kernel itself
// answers an echo to the interface's address; in netstack mode gVisor —
// and the reply comes back the same way and is encrypted to the probe peer.
//
// It proves the gateway's own data path works end to end. It does not
// prove that the private networks beyond the egress answer (that is the
// host's routing in tun mode, remote services in netstack mode).
//
// Only the probe peer may send from, and only it receives packets for, the
// probe address, so probe packets never reach a real client. They are
// counted separately (anyguard_probes_total) but also in the router's
// counters for the client and egress paths: about 2 packets per interval.
const (
	DefaultInterval = 2 * time.Second
	probeRetransmit = 500 * time.Millisecond // resend once if no reply yet
	probePayload    = "anyguard readiness probe"
)

// Probe source addresses: outside any address a client or private network
// is likely to use. 192.0.0.0/24 is the IETF protocol assignments block
// (RFC 6890) and 100::/64 the IPv6 discard prefix (RFC 6666).
var (
	Source4 = netip.MustParseAddr("192.0.0.254")
	Source6 = netip.MustParseAddr("100::fe")
)

// addrs returns the probe's source and its target, the gateway's own
// address in the same family (IPv4 preferred).
func addrs(cfg *config.Config) (src, dst netip.Addr) {
	for _, a := range cfg.Clients.Address {
		if a.Addr().Is4() {
			return Source4, a.Addr()
		}
	}
	if len(cfg.Clients.Address) > 0 {
		return Source6, cfg.Clients.Address[0].Addr()
	}
	return Source4, netip.Addr{}
}

// Prefix is the probe's source address as a prefix: routed to the client
// port like a client's allowed IPs.
func Prefix(cfg *config.Config) netip.Prefix {
	src, _ := addrs(cfg)
	return netip.PrefixFrom(src, src.BitLen())
}

// ClientPrefixes are the prefixes routed to the client device: every
// configured client's allowed IPs and the probe's source (Prefix), routed
// like a client's.
func ClientPrefixes(cfg *config.Config) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range cfg.Clients.Peers {
		out = append(out, p.AllowedIPs...)
	}
	return append(out, Prefix(cfg))
}

// Probe is the internal peer and its schedule.
type Probe struct {
	key      keys.Key // private; never logged or exported
	public   keys.Key // key's public key, derived once (an X25519)
	src, dst netip.Addr
	target   string
	interval time.Duration
	timeout  time.Duration
	id       uint16

	port     *device.Port
	dev      *wgdevice.Device
	loopback netip.Addr // of the target's family
	// localPort is the probe socket's UDP port, once up.
	localPort atomic.Uint32

	seq     atomic.Uint32
	replies chan uint16

	mu      sync.Mutex
	lastErr error
	failed  int       // rounds failed in a row
	lastAt  time.Time // last completed round
	lastOK  time.Time
	lastRTT time.Duration

	successes, failures atomic.Uint64

	stop chan struct{}
	wg   sync.WaitGroup
}

// New makes the probe's identity; start brings it up.
func New(cfg *config.Config, interval time.Duration) (*Probe, error) {
	k, err := keys.Generate()
	if err != nil {
		return nil, fmt.Errorf("probe key: %w", err)
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	src, dst := addrs(cfg)
	target := dst.String() + " via " + cfg.Egress.Mode
	if cfg.Egress.Mode == config.ModeTUN {
		target += " " + cfg.Egress.TunName
	}
	var id [2]byte
	copy(id[:], k[:2])
	return &Probe{
		key: k, public: k.Public(), src: src, dst: dst, target: target,
		interval: interval, timeout: max(interval*3/4, time.Second),
		id:      binary.BigEndian.Uint16(id[:]),
		replies: make(chan uint16, 16),
		stop:    make(chan struct{}),
	}, nil
}

// Peer is the probe's entry on the client device.
func (p *Probe) Peer() device.Peer {
	return device.Peer{PublicKey: p.public, AllowedIPs: []netip.Prefix{netip.PrefixFrom(p.src, p.src.BitLen())}}
}

// IsProbe reports whether k is the probe peer's public key.
// The idle sweep asks for every live peer: it must not derive the key.
func (p *Probe) IsProbe(k keys.Key) bool { return p != nil && k == p.public }

// Start brings up the probe's device toward the client device's UDP port
// on loopback and starts probing.
func (p *Probe) Start(gateway keys.Key, listenPort uint16, mtu int) error {
	p.port = device.NewPort("probe", mtu, p.receive)
	p.dev = wgdevice.NewDevice(p.port, conn.NewDefaultBind(), wgdevice.NewLogger(wgdevice.LogLevelSilent, ""))
	loop := netip.MustParseAddr("127.0.0.1")
	if p.dst.Is6() {
		loop = netip.IPv6Loopback()
	}
	p.loopback = loop
	uapi := fmt.Sprintf("private_key=%s\nlisten_port=0\npublic_key=%s\nendpoint=%s\nallowed_ip=%s\n",
		p.key.Hex(), gateway.Hex(), netip.AddrPortFrom(loop, listenPort), netip.PrefixFrom(p.dst, p.dst.BitLen()))
	if err := p.dev.IpcSet(uapi); err != nil {
		p.dev.Close()
		return fmt.Errorf("probe peer: %w", err)
	}
	if err := p.dev.Up(); err != nil {
		p.dev.Close()
		return fmt.Errorf("probe peer: %w", err)
	}
	p.learnPort()
	p.wg.Add(1)
	go p.loop()
	return nil
}

func (p *Probe) loop() {
	defer p.wg.Done()
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.round()
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

// round sends one echo (and one retransmission) and records the outcome.
func (p *Probe) round() {
	seq := uint16(p.seq.Add(1))
	pkt := EchoRequest(p.src, p.dst, p.id, seq)
	start := time.Now()
	deadline := time.NewTimer(p.timeout)
	defer deadline.Stop()
	resend := time.NewTimer(probeRetransmit)
	defer resend.Stop()
	send := func() error {
		buf := append(make([]byte, 16, 16+len(pkt)), pkt...)
		return p.port.Deliver([][]byte{buf}, 16)
	}
	var err error
	if err = send(); err == nil {
		err = p.await(seq, start, deadline.C, resend.C, send)
	}
	now := time.Now()
	p.mu.Lock()
	p.lastAt, p.lastErr = now, err
	if err == nil {
		p.lastOK, p.lastRTT, p.failed = now, now.Sub(start), 0
	} else {
		p.failed++
	}
	failed := p.failed
	p.mu.Unlock()
	if err == nil {
		p.successes.Add(1)
		return
	}
	p.failures.Add(1)
	// After probeFailures rounds failed in a row, start the next round
	// from a fresh handshake: if the client device lost its session
	// (restarted, keys flushed), the probe would otherwise keep sending on
	// a dead session until WireGuard's own 15 s retry, and readiness would
	// lag the repair. Not after one: a round that was only slow (a herd
	// of clients handshaking at once) would throw away a working session
	// and need a handshake just when handshakes are scarcest.
	if failed >= probeFailures {
		p.Rehandshake()
	}
}

// Rehandshake drops the probe's session, so that its next echo starts
// with a new handshake.
func (p *Probe) Rehandshake() {
	if err := p.dev.Down(); err == nil {
		p.dev.Up()
		p.learnPort()
	}
}

// probeFailures is how many rounds in a row must fail before the data
// path counts as broken: one slow round under a herd of handshakes must
// not make the gateway unready, which would make the load balancer move
// its flows and push the herd onto the next gateway.
const probeFailures = 2

// probeLateRounds: a reply to the echo of this round or of the rounds
// before it, up to this many in all, completes a round.
const probeLateRounds = 4

func (p *Probe) await(seq uint16, start time.Time, deadline, resend <-chan time.Time, send func() error) error {
	for {
		select {
		case got := <-p.replies:
			// A late reply to one of the last rounds' echoes proves the
			// data path as well: slow under a herd is not broken, and a
			// gateway that turned unready for it would have the load
			// balancer move yet more flows onto the others.
			if seq-got < probeLateRounds {
				return nil
			}
		case <-resend:
			if err := send(); err != nil {
				return err
			}
		case <-deadline:
			return fmt.Errorf("no echo reply from %s through the data path within %v", p.target, time.Since(start).Round(time.Millisecond))
		case <-p.stop:
			return errors.New("probe stopped")
		}
	}
}

// receive takes packets the client device sent to the probe peer.
func (p *Probe) receive(bufs [][]byte, offset int) {
	for _, b := range bufs {
		if seq, ok := echoReplySeq(b[offset:], p.id); ok {
			select {
			case p.replies <- seq:
			default:
			}
		}
	}
}

// Check is the "dataplane" readiness check: fewer than probeFailures
// rounds failed in a row, and the last success is recent.
func (p *Probe) Check(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.lastAt.IsZero():
		return errors.New("no probe has completed yet")
	case p.lastErr != nil && (p.failed >= probeFailures || p.lastOK.IsZero()):
		return p.lastErr
	case time.Since(p.lastOK) > 3*p.interval+time.Second:
		if p.lastErr != nil {
			return fmt.Errorf("%w (last success %v ago)", p.lastErr, time.Since(p.lastOK).Round(time.Second))
		}
		return fmt.Errorf("last successful probe was %v ago", time.Since(p.lastOK).Round(time.Second))
	}
	return nil
}

// Snapshot returns the latest outcome for /status and /metrics.
func (p *Probe) Snapshot() (lastOK time.Time, rtt time.Duration, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastAt.IsZero() {
		return time.Time{}, 0, errors.New("no probe has completed yet")
	}
	return p.lastOK, p.lastRTT, p.lastErr
}

// Close stops the probe and its device; it is safe on a nil probe and
// more than once.
func (p *Probe) Close() {
	if p == nil {
		return
	}
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
	if p.dev != nil {
		p.dev.Close()
		<-p.dev.Wait()
	}
	if p.port != nil {
		p.port.Close()
	}
}

// learnPort records the UDP port the probe's device listens on (and
// sends from): wireguard-go picked it.
func (p *Probe) learnPort() {
	uapi, err := p.dev.IpcGet()
	if err != nil {
		return
	}
	for line := range strings.Lines(uapi) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "listen_port="); ok {
			if n, err := strconv.ParseUint(v, 10, 16); err == nil {
				p.localPort.Store(uint32(n))
			}
			return
		}
	}
}

// Endpoint is the address and port the probe's handshakes and packets
// come from (its socket on loopback), or the zero value before Start.
// Any goroutine; cheap (the client socket's initiation hook asks).
func (p *Probe) Endpoint() netip.AddrPort {
	if p == nil {
		return netip.AddrPort{}
	}
	port := p.localPort.Load()
	if port == 0 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(p.loopback, uint16(port))
}

// PublicKey is the probe peer's public key.
func (p *Probe) PublicKey() keys.Key { return p.key.Public() }

// Source is the probe's source address (its allowed IP on the client
// device) and Target the gateway address it sends its echoes to.
func (p *Probe) Source() netip.Addr { return p.src }

// Target: see Source.
func (p *Probe) Target() netip.Addr { return p.dst }

// Describe names the target and the egress it crosses, for /status.
func (p *Probe) Describe() string { return p.target }

// Counts returns the rounds that succeeded and failed.
func (p *Probe) Counts() (successes, failures uint64) {
	return p.successes.Load(), p.failures.Load()
}
