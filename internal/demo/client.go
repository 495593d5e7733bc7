package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/internal/wgclient"
)

// ClientResult is what one client measured.
type ClientResult struct {
	Name          string
	Addr          netip.Addr
	Handshake     time.Duration // until the first packet came back through the tunnel
	PingGateway   time.Duration
	PingService   time.Duration
	Requests      int
	RequestsOK    int
	P50, P99      time.Duration
	DownloadBytes int64
	DownloadTime  time.Duration
	UDPEcho       time.Duration
	Err           error
}

type clientSpec struct {
	name     string
	key      keys.Key
	addr     netip.Addr
	gateway  keys.Key
	endpoint netip.AddrPort
	requests int
}

// runClient brings up a real wireguard-go client on its own netstack and
// runs the traffic checks through the gateway.
func runClient(ctx context.Context, s clientSpec) (res ClientResult) {
	res = ClientResult{Name: s.name, Addr: s.addr, Requests: s.requests}
	tnet, err := wgclient.New(wgclient.Config{
		PrivateKey: s.key,
		Address:    s.addr,
		Peer:       s.gateway,
		Endpoint:   s.endpoint,
		AllowedIPs: []netip.Prefix{clientNet.Masked(), privateNet},
	})
	if err != nil {
		res.Err = err
		return res
	}
	defer tnet.Close()

	// The first ping triggers the handshake; its round trip is the time
	// until the tunnel carried traffic.
	start := time.Now()
	var lastErr error
	for ctx.Err() == nil {
		if _, err := tnet.Ping(ctx, clientNet.Addr(), 1, time.Second); err == nil {
			res.Handshake = time.Since(start)
			break
		} else {
			lastErr = err
		}
	}
	if res.Handshake == 0 {
		res.Err = fmt.Errorf("no reply from the gateway through the tunnel: %v", lastErr)
		return res
	}
	if res.PingGateway, err = tnet.Ping(ctx, clientNet.Addr(), 2, time.Second); err != nil {
		res.Err = fmt.Errorf("ping gateway %s: %w", clientNet.Addr(), err)
		return res
	}
	if res.PingService, err = tnet.Ping(ctx, webService.Addr(), 3, time.Second); err != nil {
		res.Err = fmt.Errorf("ping %s: %w", webService.Addr(), err)
		return res
	}

	hc := &http.Client{
		Transport: &http.Transport{DialContext: tnet.DialContext, DisableKeepAlives: false},
		Timeout:   10 * time.Second,
	}
	defer hc.CloseIdleConnections()
	url := "http://" + webService.String()
	var lat []time.Duration
	for range s.requests {
		t0 := time.Now()
		body, err := get(ctx, hc, url+"/")
		if err != nil {
			res.Err = fmt.Errorf("GET %s: %w", url, err)
			break
		}
		if !strings.HasPrefix(body, "hello ") {
			res.Err = fmt.Errorf("GET %s: unexpected body %q", url, body)
			break
		}
		lat = append(lat, time.Since(t0))
		res.RequestsOK++
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50 = lat[len(lat)/2]
		res.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	if res.Err != nil {
		return res
	}

	t0 := time.Now()
	body, err := get(ctx, hc, url+"/blob")
	if err != nil {
		res.Err = fmt.Errorf("download: %w", err)
		return res
	}
	res.DownloadTime = time.Since(t0)
	res.DownloadBytes = int64(len(body))
	if res.DownloadBytes != downloadSize {
		res.Err = fmt.Errorf("download: got %d bytes, want %d", res.DownloadBytes, downloadSize)
		return res
	}

	if res.UDPEcho, err = udpEcho(ctx, tnet); err != nil {
		res.Err = fmt.Errorf("UDP echo %s: %w", echoService, err)
	}
	return res
}

func get(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func udpEcho(ctx context.Context, tnet *wgclient.Client) (time.Duration, error) {
	c, err := tnet.DialUDPAddrPort(netip.AddrPort{}, echoService)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	msg := []byte("anyguard demo datagram")
	buf := make([]byte, 1500)
	for try := 0; try < 5 && ctx.Err() == nil; try++ {
		c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			return 0, err
		}
		n, err := c.Read(buf)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			continue
		}
		if err != nil {
			return 0, err
		}
		if !bytes.Equal(buf[:n], msg) {
			return 0, fmt.Errorf("echo mismatch: %q", buf[:n])
		}
		return time.Since(t0), nil
	}
	return 0, fmt.Errorf("no echo after 5 tries")
}
