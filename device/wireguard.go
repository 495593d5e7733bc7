package device

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	wgdevice "golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/anyguard/anyguard/wgkey"
)

// ErrPortInUse is returned when the UDP listen port is taken.
var ErrPortInUse = errors.New("UDP port already in use")

// Peer is the desired configuration of one WireGuard peer.
type Peer struct {
	PublicKey    wgkey.Key
	PresharedKey wgkey.Key // zero: none
	AllowedIPs   []netip.Prefix
	Endpoint     netip.AddrPort // zero: learnt from the peer's handshake
	Keepalive    time.Duration  // zero: off
}

func (p Peer) equal(o Peer) bool {
	return p.PublicKey == o.PublicKey && p.PresharedKey == o.PresharedKey &&
		slices.Equal(p.AllowedIPs, o.AllowedIPs) && p.Endpoint == o.Endpoint && p.Keepalive == o.Keepalive
}

// WireGuardConfig configures an embedded wireguard-go device.
type WireGuardConfig struct {
	Name       string // for logs and the UAPI socket
	PrivateKey wgkey.Key
	ListenPort uint16 // 0: a random port
	Peers      []Peer
	Bind       conn.Bind    // nil: the standard UDP bind (recvmmsg, GSO/GRO)
	Logger     *slog.Logger // nil: discard
}

// WireGuard is an embedded wireguard-go device attached to a Port.
type WireGuard struct {
	name   string
	dev    *wgdevice.Device
	bind   *ClassifyingBind
	logger *slog.Logger

	mu    sync.Mutex // serialises SetPeers
	peers map[wgkey.Key]Peer

	closeOnce sync.Once
}

// NewWireGuard creates the device on port (a Port or a BackbonePort),
// configures it and brings it up.
// On error nothing is left running.
func NewWireGuard(cfg WireGuardConfig, port tun.Device) (*WireGuard, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := cfg.Bind
	if b == nil {
		b = conn.NewDefaultBind()
	}
	w := &WireGuard{
		name:   cfg.Name,
		bind:   NewClassifyingBind(b),
		logger: logger,
		peers:  make(map[wgkey.Key]Peer),
	}
	w.dev = wgdevice.NewDevice(port, w.bind, wgLogger(logger, cfg.Name))
	var sb strings.Builder
	fmt.Fprintf(&sb, "private_key=%s\nlisten_port=%d\nreplace_peers=true\n", cfg.PrivateKey.Hex(), cfg.ListenPort)
	for _, p := range cfg.Peers {
		writePeer(&sb, p, false)
	}
	if err := w.dev.IpcSet(sb.String()); err != nil {
		w.dev.Close()
		return nil, fmt.Errorf("configure %s: %w", cfg.Name, err)
	}
	for _, p := range cfg.Peers {
		w.peers[p.PublicKey] = p
	}
	if err := w.dev.Up(); err != nil {
		w.dev.Close()
		if isAddrInUse(err) {
			return nil, fmt.Errorf("bring up %s: %w: %d", cfg.Name, ErrPortInUse, cfg.ListenPort)
		}
		return nil, fmt.Errorf("bring up %s: %w", cfg.Name, err)
	}
	return w, nil
}

// isAddrInUse reports whether err (wireguard-go wraps the socket's error
// with %w all the way up) says the port is taken.
func isAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }

func writePeer(sb *strings.Builder, p Peer, update bool) {
	fmt.Fprintf(sb, "public_key=%s\n", p.PublicKey.Hex())
	if update {
		sb.WriteString("update_only=true\n")
	}
	fmt.Fprintf(sb, "preshared_key=%s\n", p.PresharedKey.Hex())
	if p.Endpoint.IsValid() {
		fmt.Fprintf(sb, "endpoint=%s\n", p.Endpoint)
	}
	fmt.Fprintf(sb, "persistent_keepalive_interval=%d\n", int(p.Keepalive/time.Second))
	sb.WriteString("replace_allowed_ips=true\n")
	for _, a := range p.AllowedIPs {
		fmt.Fprintf(sb, "allowed_ip=%s\n", a)
	}
}

// SetPeers makes the device's peers exactly peers: it adds new ones,
// updates changed ones in place and removes the rest, so that sessions of
// unchanged peers are untouched. Calling it twice with the same input does
// nothing the second time.
func (w *WireGuard) SetPeers(peers []Peer) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	want := make(map[wgkey.Key]Peer, len(peers))
	for _, p := range peers {
		want[p.PublicKey] = p
	}
	var sb strings.Builder
	for k := range w.peers {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&sb, "public_key=%s\nremove=true\n", k.Hex())
		}
	}
	for _, p := range peers {
		old, ok := w.peers[p.PublicKey]
		if ok && old.equal(p) {
			continue
		}
		writePeer(&sb, p, false)
	}
	if sb.Len() == 0 {
		return nil
	}
	if err := w.dev.IpcSet(sb.String()); err != nil {
		return fmt.Errorf("set peers of %s: %w", w.name, err)
	}
	w.peers = want
	return nil
}

// AddPeer makes p one of the device's peers, or updates it in place if a
// peer with its key exists and differs; peers it does not name are left
// alone. It reports whether the peer is new. Adding costs the device one
// X25519 (the static-static secret) and two goroutines for the peer.
//
// Do not call it from the device's own receive goroutines: configuring the
// device waits on a lock that closing the device's socket holds while it
// waits for those goroutines.
func (w *WireGuard) AddPeer(p Peer) (added bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	old, ok := w.peers[p.PublicKey]
	if ok && old.equal(p) {
		return false, nil
	}
	var sb strings.Builder
	writePeer(&sb, p, false)
	if err := w.dev.IpcSet(sb.String()); err != nil {
		return false, fmt.Errorf("add peer to %s: %w", w.name, err)
	}
	w.peers[p.PublicKey] = p
	return !ok, nil
}

// UpdatePeers applies the configuration of those peers that the device
// has and whose configuration differs, in one step; sessions are kept.
// Peers the device does not have are ignored.
func (w *WireGuard) UpdatePeers(peers []Peer) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var sb strings.Builder
	var changed []Peer
	for _, p := range peers {
		if old, ok := w.peers[p.PublicKey]; ok && !old.equal(p) {
			writePeer(&sb, p, true)
			changed = append(changed, p)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	if err := w.dev.IpcSet(sb.String()); err != nil {
		return fmt.Errorf("update peers of %s: %w", w.name, err)
	}
	for _, p := range changed {
		w.peers[p.PublicKey] = p
	}
	return nil
}

// RemovePeers removes the named peers (with their sessions, timers and
// queued packets) in one step, and returns how many the device had.
func (w *WireGuard) RemovePeers(ks []wgkey.Key) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var sb strings.Builder
	n := 0
	for _, k := range ks {
		if _, ok := w.peers[k]; ok {
			fmt.Fprintf(&sb, "public_key=%s\nremove=true\n", k.Hex())
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	if err := w.dev.IpcSet(sb.String()); err != nil {
		return 0, fmt.Errorf("remove peers of %s: %w", w.name, err)
	}
	for _, k := range ks {
		delete(w.peers, k)
	}
	return n, nil
}

// HasPeer reports whether the device has a peer with key k.
func (w *WireGuard) HasPeer(k wgkey.Key) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.peers[k]
	return ok
}

// PeerKeys returns the public keys of the device's peers, in no order.
func (w *WireGuard) PeerKeys() []wgkey.Key {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]wgkey.Key, 0, len(w.peers))
	for k := range w.peers {
		out = append(out, k)
	}
	return out
}

// PeerCount returns how many peers the device has.
func (w *WireGuard) PeerCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.peers)
}

// PeerStatus is what the device reports about one peer.
type PeerStatus struct {
	PublicKey     wgkey.Key
	Endpoint      netip.AddrPort
	LastHandshake time.Time // zero: never
	RxBytes       uint64
	TxBytes       uint64
	AllowedIPs    []netip.Prefix
}

// Status reads the device's view of its peers through its UAPI. It costs
// time proportional to the number of peers: call it for status pages, not
// per packet.
func (w *WireGuard) Status() ([]PeerStatus, error) {
	text, err := w.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", w.name, err)
	}
	return parseUAPIGet(text)
}

// parseUAPIGet parses the peer sections of a UAPI "get" reply. A value it
// reads that does not parse is an error naming the line: the reply comes
// from wireguard-go, and a field it cannot read means the two disagree.
func parseUAPIGet(text string) ([]PeerStatus, error) {
	var out []PeerStatus
	var cur *PeerStatus
	var sec int64
	sc := bufio.NewScanner(strings.NewReader(text))
	for line := 1; sc.Scan(); line++ {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		var err error
		switch k {
		case "public_key":
			out = append(out, PeerStatus{})
			cur = &out[len(out)-1]
			cur.PublicKey, err = parseHexKey(v)
		case "endpoint":
			if cur != nil {
				cur.Endpoint, err = netip.ParseAddrPort(v)
			}
		case "allowed_ip":
			if cur != nil {
				var p netip.Prefix
				if p, err = netip.ParsePrefix(v); err == nil {
					cur.AllowedIPs = append(cur.AllowedIPs, p)
				}
			}
		case "rx_bytes":
			if cur != nil {
				cur.RxBytes, err = strconv.ParseUint(v, 10, 64)
			}
		case "tx_bytes":
			if cur != nil {
				cur.TxBytes, err = strconv.ParseUint(v, 10, 64)
			}
		case "last_handshake_time_sec":
			sec, err = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			var nsec int64
			nsec, err = strconv.ParseInt(v, 10, 64)
			if err == nil && cur != nil && (sec != 0 || nsec != 0) {
				cur.LastHandshake = time.Unix(sec, nsec)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("parse UAPI get: line %d (%s): %w", line, k, err)
		}
	}
	return out, sc.Err()
}

func parseHexKey(s string) (wgkey.Key, error) {
	var k wgkey.Key
	if len(s) != 2*wgkey.Len {
		return k, wgkey.ErrBadKey
	}
	for i := range k {
		v, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			return wgkey.Key{}, wgkey.ErrBadKey
		}
		k[i] = byte(v)
	}
	return k, nil
}

// ListenPort returns the UDP port the device listens on.
func (w *WireGuard) ListenPort() uint16 {
	text, err := w.dev.IpcGet()
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			n, _ := strconv.ParseUint(v, 10, 16)
			return uint16(n)
		}
	}
	return 0
}

// UnderLoad reports whether wireguard-go's handshake queue is (or was
// within the last second) deep enough that the device demands cookies of
// its own (QueueHandshakeSize/8 messages waiting).
func (w *WireGuard) UnderLoad() bool { return w.dev.IsUnderLoad() }

// BindStats returns the counters of the device's classifying bind.
func (w *WireGuard) BindStats() BindStats { return w.bind.Stats() }

// Device returns the wireguard-go device, for the UAPI server.
func (w *WireGuard) Device() *wgdevice.Device { return w.dev }

// Close takes the device down and waits for its goroutines.
func (w *WireGuard) Close() {
	w.closeOnce.Do(func() {
		w.dev.Close()
		<-w.dev.Wait()
	})
}

// wgLogger adapts wireguard-go's printf logger to slog. Verbose lines are
// formatted only when debug logging is on.
func wgLogger(l *slog.Logger, name string) *wgdevice.Logger {
	l = l.With("device", name)
	wl := &wgdevice.Logger{
		Verbosef: wgdevice.DiscardLogf,
		Errorf: func(format string, args ...any) {
			msg := fmt.Sprintf(format, args...)
			if strings.Contains(msg, "no known endpoint for peer") {
				// Expected for a client whose session this gateway dropped
				// because it moved: the gateway must not reach out to it.
				l.Debug(msg)
				return
			}
			l.Warn(msg)
		},
	}
	if l.Enabled(context.Background(), slog.LevelDebug) {
		wl.Verbosef = func(format string, args ...any) {
			l.Debug(fmt.Sprintf(format, args...))
		}
	}
	return wl
}

// ResetPeer drops every session with the peer at once: the peer is removed
// (keys, endpoint, timers, queued packets) and added back with the same
// configuration and no session, so the device sends it nothing (no data,
// keepalive or handshake retry) until the peer initiates a new handshake.
func (w *WireGuard) ResetPeer(k wgkey.Key) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.peers[k]
	if !ok {
		return nil
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "public_key=%s\nremove=true\n", k.Hex())
	writePeer(&sb, p, false)
	if err := w.dev.IpcSet(sb.String()); err != nil {
		return fmt.Errorf("reset peer of %s: %w", w.name, err)
	}
	return nil
}

// Bind returns the device's classifying bind.
func (w *WireGuard) Bind() *ClassifyingBind { return w.bind }

// SetEndpoint points the device at the peer's endpoint.
func (w *WireGuard) SetEndpoint(k wgkey.Key, endpoint netip.AddrPort) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.peers[k]; !ok {
		return fmt.Errorf("set endpoint on %s: unknown peer", w.name)
	}
	if err := w.dev.IpcSet(fmt.Sprintf("public_key=%s\nupdate_only=true\nendpoint=%s\n", k.Hex(), endpoint)); err != nil {
		return fmt.Errorf("set endpoint on %s: %w", w.name, err)
	}
	return nil
}

// ForgetHandshake drops any session and half-done handshake the device
// holds with peer k and lifts wireguard-go's REKEY_TIMEOUT pause, so the
// next packet for k starts a handshake at once. A gateway calls it before
// winning back a client it holds no confirmed session with: a handshake
// it answered a moment ago (perhaps a replayed initiation, whose answer
// went to the replayer) would otherwise hold its own initiation back for
// up to 5 s.
func (w *WireGuard) ForgetHandshake(k wgkey.Key) {
	if p := w.dev.LookupPeer(wgdevice.NoisePublicKey(k)); p != nil {
		p.ExpireCurrentKeypairs()
	}
}

// Initiate makes the device start a handshake with the peer at endpoint
// now, instead of waiting for the peer to initiate: the way a gateway wins
// back a client whose traffic a load balancer just moved to it.
func (w *WireGuard) Initiate(k wgkey.Key, endpoint netip.AddrPort) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.peers[k]; !ok {
		return fmt.Errorf("initiate handshake on %s: unknown peer", w.name)
	}
	// Turning persistent keepalive on sends a keepalive at once, which
	// needs a session and so starts a handshake; turning it off again keeps
	// the gateway from sending keepalives of its own afterwards.
	set := fmt.Sprintf("public_key=%s\nupdate_only=true\nendpoint=%s\npersistent_keepalive_interval=1\n", k.Hex(), endpoint)
	if err := w.dev.IpcSet(set); err != nil {
		return fmt.Errorf("initiate handshake on %s: %w", w.name, err)
	}
	unset := fmt.Sprintf("public_key=%s\nupdate_only=true\npersistent_keepalive_interval=0\n", k.Hex())
	if err := w.dev.IpcSet(unset); err != nil {
		return fmt.Errorf("initiate handshake on %s: %w", w.name, err)
	}
	return nil
}

// IpcHandle serves one UAPI connection (UAPIHandler).
func (w *WireGuard) IpcHandle(c net.Conn) { w.dev.IpcHandle(c) }
