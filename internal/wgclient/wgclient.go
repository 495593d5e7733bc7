// Package wgclient runs a real wireguard-go client on its own userspace
// network stack (gVisor netstack), with no privileges: the demo's clients,
// and the stock client of in-process tests.
package wgclient

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.zx2c4.com/wireguard/conn"
	wgdevice "golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/anyguard/anyguard/internal/keys"
)

// Config describes the client, as a wg-quick file would.
type Config struct {
	PrivateKey keys.Key
	Address    netip.Addr     // the client's tunnel address
	Peer       keys.Key       // the gateway's public key
	Endpoint   netip.AddrPort // the gateway's UDP address
	AllowedIPs []netip.Prefix // routed into the tunnel
	MTU        int            // default 1420
	Keepalive  time.Duration  // persistent keepalive; zero is off
}

// Client is a running WireGuard client. Its Net dials through the tunnel.
type Client struct {
	*netstack.Net
	dev  *wgdevice.Device
	addr netip.Addr
}

// New starts a client. Close stops it.
func New(cfg Config) (*Client, error) {
	if cfg.MTU == 0 {
		cfg.MTU = 1420
	}
	tdev, tnet, err := netstack.CreateNetTUN([]netip.Addr{cfg.Address}, nil, cfg.MTU)
	if err != nil {
		return nil, fmt.Errorf("client netstack: %w", err)
	}
	dev := wgdevice.NewDevice(tdev, conn.NewDefaultBind(), wgdevice.NewLogger(wgdevice.LogLevelSilent, ""))
	conf := fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=%s\npersistent_keepalive_interval=%d\n",
		cfg.PrivateKey.Hex(), cfg.Peer.Hex(), cfg.Endpoint, int(cfg.Keepalive/time.Second))
	for _, p := range cfg.AllowedIPs {
		conf += "allowed_ip=" + p.String() + "\n"
	}
	if err := dev.IpcSet(conf); err != nil {
		dev.Close()
		return nil, fmt.Errorf("configure client: %w", err)
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, fmt.Errorf("client up: %w", err)
	}
	return &Client{Net: tnet, dev: dev, addr: cfg.Address}, nil
}

// Device returns the client's wireguard-go device.
func (c *Client) Device() *wgdevice.Device { return c.dev }

// Handshake makes the client initiate a handshake with its gateway now,
// without sending any data (it then sends the keepalive that confirms the
// session, as every WireGuard initiator does).
func (c *Client) Handshake() error {
	var pk wgdevice.NoisePublicKey
	if err := pk.FromHex(peerKey(c.dev)); err != nil {
		return fmt.Errorf("client peer key: %w", err)
	}
	peer := c.dev.LookupPeer(pk)
	if peer == nil {
		return fmt.Errorf("client has no peer")
	}
	return peer.SendHandshakeInitiation(false)
}

// SetEndpoint points the client at another gateway address, as a roaming
// client or a load balancer's re-mapping would.
func (c *Client) SetEndpoint(ep netip.AddrPort) error {
	return c.dev.IpcSet(fmt.Sprintf("public_key=%s\nupdate_only=true\nendpoint=%s\n", peerKey(c.dev), ep))
}

func peerKey(dev *wgdevice.Device) string {
	s, _ := dev.IpcGet()
	for line := range strings.SplitSeq(s, "\n") {
		if v, ok := strings.CutPrefix(line, "public_key="); ok {
			return v
		}
	}
	return ""
}

// Close stops the client and waits for its goroutines.
func (c *Client) Close() {
	c.dev.Close()
	<-c.dev.Wait()
}

// Ping sends one ICMP echo to dst through the tunnel and returns the round
// trip time, waiting up to timeout (and no longer than ctx allows).
func (c *Client) Ping(ctx context.Context, dst netip.Addr, seq int, timeout time.Duration) (time.Duration, error) {
	pc, err := c.DialPingAddr(c.addr, dst)
	if err != nil {
		return 0, err
	}
	defer pc.Close()
	var typ, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	proto := 1
	if dst.Is6() {
		typ, replyType, proto = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58
	}
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: 1234, Seq: seq, Data: []byte("anyguard ping")}}
	wire, err := msg.Marshal(nil)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	pc.SetDeadline(deadline)
	t0 := time.Now()
	if _, err := pc.Write(wire); err != nil {
		return 0, err
	}
	buf := make([]byte, 1500)
	for {
		n, err := pc.Read(buf)
		if err != nil {
			return 0, err
		}
		reply, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			return 0, err
		}
		if reply.Type != replyType {
			continue
		}
		if e, ok := reply.Body.(*icmp.Echo); ok && e.Seq == seq {
			return time.Since(t0), nil
		}
	}
}

// ListenPort returns the UDP port the client sends from.
func (c *Client) ListenPort() uint16 {
	s, _ := c.dev.IpcGet()
	for line := range strings.SplitSeq(s, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			n, _ := strconv.ParseUint(v, 10, 16)
			return uint16(n)
		}
	}
	return 0
}

// CaptureInitiation returns the first handshake initiation that a client
// with key client sends to a gateway with public key gw: a real one, from
// wireguard-go, caught on a loopback socket that never answers.
func CaptureInitiation(client, gw keys.Key) ([]byte, error) {
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	defer sock.Close()
	c, err := New(Config{
		PrivateKey: client, Address: netip.MustParseAddr("10.99.0.2"), Peer: gw,
		Endpoint:   sock.LocalAddr().(*net.UDPAddr).AddrPort(),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/16")},
	})
	if err != nil {
		return nil, err
	}
	// The ping makes the client handshake; it ends (unanswered) before
	// the client closes.
	ctx, cancel := context.WithCancel(context.Background())
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		c.Ping(ctx, netip.MustParseAddr("10.99.0.1"), 1, time.Second)
	}()
	defer func() {
		cancel()
		<-pinged
		c.Close()
	}()
	sock.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	for {
		n, err := sock.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("no handshake initiation from the client: %w", err)
		}
		// An initiation: type 1, 148 bytes (device.Classify's rule; the
		// import rules keep this package off device).
		if n == 148 && buf[0] == 1 && buf[1] == 0 && buf[2] == 0 && buf[3] == 0 {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}
