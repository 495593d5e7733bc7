package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"

	"golang.zx2c4.com/wireguard/conn"
	wgdevice "golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway"
)

// Gateways the handshake benchmark compares; each runs in a child process
// of its own (HandshakeChild) so that its CPU time is its own.
const (
	// HSStock is stock wireguard-go at the version we embed: one device with
	// the same private key and peers, on a netstack TUN, the standard bind.
	HSStock = "stock"
	// HSGateway is an anyguard gateway (internal/gateway) in netstack mode,
	// clustering off.
	HSGateway = "gateway"
)

// AllHSTargets lists the gateways in the order the benchmark runs them.
var AllHSTargets = []string{HSStock, HSGateway}

// hsEchoTarget is the UDP echo service the established session talks to:
// through a gateway's netstack egress to a loopback socket in the child,
// or (stock) on the device's own netstack.
var hsEchoTarget = netip.MustParseAddrPort("10.1.0.7:7")

// hsChildHello is the one JSON line a child prints once it is up.
type hsChildHello struct {
	Port uint16         `json:"port"` // the WireGuard UDP port on 127.0.0.1
	Echo netip.AddrPort `json:"echo"` // the echo service inside the tunnel
}

// HandshakeChild is the child side of RunHandshakes: it starts the gateway
// kind (HSStock or HSGateway) from the configuration file at path, prints
// its port as one JSON line to stdout, and runs until stdin is closed.
// With profile set it writes a CPU profile of its whole run there.
func HandshakeChild(kind, path, profile string, stdin io.Reader, stdout io.Writer) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	echo, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer echo.Close()
	go serveEcho(echo)

	var hello hsChildHello
	switch kind {
	case HSStock:
		dev, tnet, err := startStock(cfg)
		if err != nil {
			return err
		}
		defer dev.Close()
		if hello.Port, err = ipcListenPort(dev); err != nil {
			return err
		}
		hello.Echo = netip.AddrPortFrom(cfg.Clients.Address[0].Addr(), 7)
		pc, err := tnet.ListenUDPAddrPort(hello.Echo)
		if err != nil {
			return err
		}
		defer pc.Close()
		go serveEcho(pc)
	case HSGateway:
		echoAddr := echo.LocalAddr().(*net.UDPAddr).AddrPort()
		d := &net.Dialer{}
		g, err := gateway.New(cfg, gateway.Options{
			NetstackDial: func(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error) {
				if network == "udp" && dst == hsEchoTarget {
					dst = echoAddr
				}
				return d.DialContext(ctx, network, dst.String())
			},
		})
		if err != nil {
			return err
		}
		defer g.Close()
		hello.Port, hello.Echo = g.ListenPort(), hsEchoTarget
	default:
		return fmt.Errorf("unknown gateway %q", kind)
	}
	if err := json.NewEncoder(stdout).Encode(hello); err != nil {
		return err
	}
	io.Copy(io.Discard, stdin)
	return nil
}

// startStock configures a stock wireguard-go device as cfg describes the
// client side of a gateway.
func startStock(cfg *config.Config) (*wgdevice.Device, *netstack.Net, error) {
	if len(cfg.Clients.Address) == 0 {
		return nil, nil, errors.New("clients.address: none")
	}
	tdev, tnet, err := netstack.CreateNetTUN([]netip.Addr{cfg.Clients.Address[0].Addr()}, nil, cfg.Clients.MTU)
	if err != nil {
		return nil, nil, err
	}
	dev := wgdevice.NewDevice(tdev, conn.NewDefaultBind(), wgdevice.NewLogger(wgdevice.LogLevelSilent, ""))
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\nlisten_port=%d\n", cfg.Clients.PrivateKey.Hex(), cfg.Clients.ListenPort)
	for _, p := range cfg.Clients.Peers {
		fmt.Fprintf(&b, "public_key=%s\n", p.PublicKey.Hex())
		for _, a := range p.AllowedIPs {
			fmt.Fprintf(&b, "allowed_ip=%s\n", a)
		}
	}
	if err := dev.IpcSet(b.String()); err != nil {
		dev.Close()
		return nil, nil, err
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, nil, err
	}
	return dev, tnet, nil
}

// serveEcho answers every datagram on pc with itself until pc is closed.
func serveEcho(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], from)
	}
}

// ipcListenPort reads a wireguard-go device's UDP port from its UAPI.
func ipcListenPort(dev *wgdevice.Device) (uint16, error) {
	s, err := dev.IpcGet()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(s, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			n, err := strconv.ParseUint(v, 10, 16)
			return uint16(n), err
		}
	}
	return 0, fmt.Errorf("device reports no listen_port")
}
