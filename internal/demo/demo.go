// Package demo runs a whole anyguard gateway with real WireGuard clients in
// one unprivileged process: a gateway in netstack mode, a simulated private
// network with services behind it, and wireguard-go clients on their own
// userspace network stacks that connect over UDP on loopback, send traffic
// through, and report what happened.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/router"
)

// Options shape a demo run.
type Options struct {
	Clients     int           // number of WireGuard clients (default 3)
	Requests    int           // HTTP requests per client (default 20)
	KeepRunning bool          // after the scenario, keep serving until ctx ends
	Timeout     time.Duration // for the whole scenario (default 45 s)
	Logger      *slog.Logger  // gateway logs; nil = discard
}

// Addresses of the simulated networks.
var (
	clientNet   = netip.MustParsePrefix("10.99.0.1/16")
	privateNet  = netip.MustParsePrefix("10.1.0.0/16")
	webService  = netip.MustParseAddrPort("10.1.0.10:80")
	echoService = netip.MustParseAddrPort("10.1.0.11:7")
)

// Result is what a run measured; Run prints it as tables.
type Result struct {
	Clients []ClientResult
	Router  router.Stats
	Failed  []string // human-readable reasons; empty means success
}

// Run executes the scenario and writes a report to out. It returns an error
// naming what failed if traffic did not flow.
func Run(ctx context.Context, opts Options, out io.Writer) error {
	if opts.Clients <= 0 {
		opts.Clients = 3
	}
	if opts.Requests <= 0 {
		opts.Requests = 20
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 45 * time.Second
	}
	start := time.Now()
	pn, err := newPrivateNetwork()
	if err != nil {
		return err
	}
	defer pn.Close()

	gwKey, err := keys.Generate()
	if err != nil {
		return err
	}
	clientKeys := make([]keys.Key, opts.Clients)
	cfg := config.Default()
	cfg.Node.Name = "demo-gw"
	cfg.Node.Region = "demo"
	cfg.Clients.PrivateKey = gwKey
	cfg.Clients.ListenPort = 0
	cfg.Clients.Address = []netip.Prefix{clientNet}
	cfg.Clients.UAPI = false
	cfg.Egress.Mode = config.ModeNetstack
	cfg.Egress.Prefixes = []netip.Prefix{privateNet}
	for i := range clientKeys {
		if clientKeys[i], err = keys.Generate(); err != nil {
			return err
		}
		cfg.Clients.Peers = append(cfg.Clients.Peers, config.Peer{
			Name:       fmt.Sprintf("client-%d", i+1),
			PublicKey:  clientKeys[i].Public(),
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(clientAddr(i), 32)},
		})
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("demo configuration: %w", err)
	}
	fmt.Fprintf(out, "anyguard demo: 1 gateway (netstack egress), %d WireGuard clients, private network %s with a web service at %s and a UDP echo at %s\n\n",
		opts.Clients, privateNet, webService, echoService)

	gw, err := gateway.New(cfg, gateway.Options{Logger: opts.Logger, NetstackDial: pn.Dial, NetstackPing: pn.Ping})
	if err != nil {
		return err
	}
	defer gw.Close()
	endpoint := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), gw.ListenPort())
	fmt.Fprintf(out, "gateway %s listening on UDP %s, public key %s\n\n", cfg.Node.Name, endpoint, gwKey.Public())

	sctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	res := Result{Clients: make([]ClientResult, opts.Clients)}
	var wg sync.WaitGroup
	for i := range opts.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res.Clients[i] = runClient(sctx, clientSpec{
				name:     cfg.Clients.Peers[i].Name,
				key:      clientKeys[i],
				addr:     clientAddr(i),
				gateway:  gwKey.Public(),
				endpoint: endpoint,
				requests: opts.Requests,
			})
		}()
	}
	wg.Wait()
	res.Router = gw.Router().Stats()
	for _, c := range res.Clients {
		if c.Err != nil {
			res.Failed = append(res.Failed, fmt.Sprintf("%s: %v", c.Name, c.Err))
		}
	}
	printResult(out, &res, gw)
	fmt.Fprintf(out, "\nscenario took %s\n", time.Since(start).Round(time.Millisecond))
	if len(res.Failed) > 0 {
		return fmt.Errorf("traffic did not flow: %s", strings.Join(res.Failed, "; "))
	}
	fmt.Fprintln(out, "result: OK, every client reached every service through the gateway")
	if opts.KeepRunning {
		fmt.Fprintln(out, "\n--keep-running: the gateway stays up until Ctrl-C")
		<-ctx.Done()
	}
	return nil
}

func clientAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 99, byte((i + 2) >> 8), byte(i + 2)})
}

func printResult(out io.Writer, res *Result, gw *gateway.Gateway) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "client\taddress\thandshake\tping gw\tping svc\tHTTP ok\tHTTP p50\tHTTP p99\tdownload\tUDP echo\tresult\t")
	for _, c := range res.Clients {
		status := "ok"
		if c.Err != nil {
			status = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\t\n",
			c.Name, c.Addr, ms(c.Handshake), ms(c.PingGateway), ms(c.PingService),
			c.RequestsOK, c.Requests, ms(c.P50), ms(c.P99), rate(c.DownloadBytes, c.DownloadTime), ms(c.UDPEcho), status)
	}
	tw.Flush()

	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "gateway port\tpackets in\tbytes in\tpackets out\tbytes out\t")
	for _, p := range res.Router.Ports {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", p.Name, p.RxPackets, p.RxBytes, p.TxPackets, p.TxBytes)
	}
	tw.Flush()
	var drops []string
	for r, n := range res.Router.Drops {
		if n > 0 {
			drops = append(drops, fmt.Sprintf("%s=%d", r, n))
		}
	}
	slices.Sort(drops)
	if len(drops) == 0 {
		drops = []string{"none"}
	}
	bs := gw.Clients().BindStats()
	fmt.Fprintf(out, "router drops: %s\nclient UDP socket: %d handshake initiations, %d transport messages, %d junk datagrams dropped\n",
		strings.Join(drops, " "), bs.Initiations, bs.Transport, bs.Junk)
	if peers, err := gw.ClientStatus(); err == nil {
		n := 0
		for _, p := range peers {
			if !p.LastHandshake.IsZero() {
				n++
			}
		}
		fmt.Fprintf(out, "client device: %d of %d peers have a session\n", n, len(peers))
	}
}

func ms(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

func rate(n int64, d time.Duration) string {
	if n <= 0 || d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f Mbit/s", float64(n)*8/d.Seconds()/1e6)
}

// errRefused is what the simulated network answers for an address with no service.
var errRefused = errors.New("connection refused by the simulated private network")
