package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// privateNetwork simulates the region's private network on loopback: the
// services listen on 127.0.0.1 and the gateway's netstack egress reaches
// them through Dial, which maps their private addresses; hosts in the
// private prefix answer ping.
type privateNetwork struct {
	name     string
	prefix   netip.Prefix
	web      netip.AddrPort // the web service's private address
	echoAddr netip.AddrPort // the UDP echo service's private address
	http     *http.Server
	httpLn   net.Listener
	udp      *net.UDPConn
	services map[netip.AddrPort]netip.AddrPort // private → loopback
	wg       sync.WaitGroup
}

// downloadSize is the size of the object clients download.
const downloadSize = 4 << 20

// newPrivateNetwork starts region name's services; its private prefix is
// 10.<second>.0.0/16, the web service at .0.10:80, the UDP echo at .0.11:7.
func newPrivateNetwork(name string, second byte) (*privateNetwork, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo web service: %w", err)
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("demo echo service: %w", err)
	}
	blob := make([]byte, downloadSize)
	rand.Read(blob)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s from %s\n", r.RemoteAddr, name)
	})
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		io.Copy(w, bytes.NewReader(blob))
	})
	web := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, second, 0, 10}), 80)
	echo := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, second, 0, 11}), 7)
	n := &privateNetwork{
		name:     name,
		prefix:   netip.PrefixFrom(netip.AddrFrom4([4]byte{10, second, 0, 0}), 16),
		web:      web,
		echoAddr: echo,
		http:     &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		httpLn:   ln,
		udp:      udp,
		services: map[netip.AddrPort]netip.AddrPort{
			web:  ln.Addr().(*net.TCPAddr).AddrPort(),
			echo: udp.LocalAddr().(*net.UDPAddr).AddrPort(),
		},
	}
	n.wg.Add(2)
	go func() { defer n.wg.Done(); n.http.Serve(ln) }()
	go func() { defer n.wg.Done(); n.echo() }()
	return n, nil
}

func (n *privateNetwork) echo() {
	buf := make([]byte, 65535)
	for {
		sz, from, err := n.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		n.udp.WriteToUDPAddrPort(buf[:sz], from)
	}
}

// Dial connects to the loopback listener of a private service.
func (n *privateNetwork) Dial(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error) {
	real, ok := n.services[dst]
	if !ok {
		return nil, fmt.Errorf("dial %s %s: %w", network, dst, errRefused)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, real.String())
}

// Ping answers for every host of the private network, after a simulated
// network round trip.
func (n *privateNetwork) Ping(ctx context.Context, dst netip.Addr, id, seq uint16, payload []byte) ([]byte, error) {
	if !n.prefix.Contains(dst) {
		return nil, errors.New("host unreachable")
	}
	select {
	case <-time.After(200 * time.Microsecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return append([]byte(nil), payload...), nil
}

func (n *privateNetwork) Close() {
	n.http.Close()
	n.udp.Close()
	n.wg.Wait()
}
