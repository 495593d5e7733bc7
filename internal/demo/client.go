package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/internal/wgclient"
)

// client is one demo client: a real wireguard-go client on its own
// netstack, configured with the load balancer's address as its endpoint.
type client struct {
	name string
	key  keys.Key
	addr netip.Addr
	wg   *wgclient.Client
	hc   *http.Client
	echo net.Conn
	flow netip.AddrPort // its flow's key at the load balancer

	requests, ok int
	latencies    []time.Duration
	moves        []moveResult
	owners       []string        // owner agreed after each phase
	agreed       []time.Duration // how long agreement took after each phase
	err          error
}

type moveResult struct {
	phase    string
	from, to string
	recovery time.Duration // until traffic flowed again
}

func newClient(name string, k keys.Key, addr netip.Addr, d *deployment) (*client, error) {
	var allowed []netip.Prefix
	for _, pn := range d.regions {
		allowed = append(allowed, pn.prefix)
	}
	wg, err := wgclient.New(wgclient.Config{
		PrivateKey: k,
		Address:    addr,
		Peer:       d.key.Public(),
		Endpoint:   d.lb.Addr(),
		AllowedIPs: append(allowed, clientNet.Masked()),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	echo, err := wg.DialUDPAddrPort(netip.AddrPort{}, d.regions[0].echoAddr)
	if err != nil {
		wg.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &client{
		name: name, key: k, addr: addr, wg: wg, echo: echo,
		hc:   &http.Client{Transport: &http.Transport{DialContext: wg.DialContext}, Timeout: 3 * time.Second},
		flow: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), wg.ListenPort()),
	}, nil
}

// backend is the load balancer backend (gateway index) of the client's flow.
func (c *client) backend(d *deployment) (int, bool) { return d.lb.Backend(c.flow) }

// reachAll makes n HTTP requests to every region's web service. A request
// is tried three times before it counts as failed, since a move in
// progress may cost a retransmission.
func (c *client) reachAll(ctx context.Context, d *deployment, n int, phase string) {
	for _, pn := range d.regions {
		url := "http://" + pn.web.String() + "/"
		for range n {
			c.requests++
			var err error
			for try := 0; try < 3 && ctx.Err() == nil; try++ {
				t0 := time.Now()
				var body string
				if body, err = c.get(ctx, url); err == nil && strings.Contains(body, "from "+pn.name) {
					c.latencies = append(c.latencies, time.Since(t0))
					c.ok++
					break
				} else if err == nil {
					err = fmt.Errorf("unexpected answer %q", body)
				}
			}
			if err != nil && c.err == nil {
				c.err = fmt.Errorf("%s: GET %s (%s): %w", phase, url, pn.name, err)
			}
		}
	}
}

func (c *client) get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// move has the load balancer send the client's flow to gateway to (or,
// with to < 0, to a running gateway in another region) and measures how
// soon traffic flows again.
func (c *client) move(ctx context.Context, d *deployment, to int) {
	from, ok := c.backend(d)
	if !ok {
		c.err = fmt.Errorf("no load balancer flow")
		return
	}
	if to < 0 {
		to = from
		for _, i := range d.running() {
			if i != from && (d.regionOf[i] != d.regionOf[from] || to == from) {
				to = i
				if d.regionOf[i] != d.regionOf[from] && i > from {
					break
				}
			}
		}
	}
	if to == from {
		return
	}
	t0 := time.Now()
	d.lb.Move(c.flow, to)
	c.recover(ctx, d, t0, "move")
}

// recover sends UDP echoes every 20 ms until one comes back, and records
// the time since the flow moved.
func (c *client) recover(ctx context.Context, d *deployment, since time.Time, phase string) {
	to, _ := c.backend(d)
	from := "?"
	if len(c.owners) > 0 {
		from = c.owners[len(c.owners)-1]
	}
	buf := make([]byte, 1500)
	for seq := 0; ctx.Err() == nil; seq++ {
		// A fresh payload per try, so that a late reply to an earlier
		// try is not taken for recovery.
		msg := fmt.Appendf(nil, "anyguard demo %s %d", c.name, seq)
		c.echo.SetDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.echo.Write(msg); err == nil {
			for {
				n, err := c.echo.Read(buf)
				if err != nil {
					break
				}
				if bytes.Equal(buf[:n], msg) {
					c.moves = append(c.moves, moveResult{phase: phase, from: from, to: d.names[to], recovery: time.Since(since)})
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c.err == nil {
		c.err = fmt.Errorf("%s: traffic did not flow again after the flow moved to %s", phase, d.names[to])
	}
}

func (c *client) close() {
	if c.echo != nil {
		c.echo.Close()
	}
	if c.wg != nil {
		c.hc.CloseIdleConnections()
		c.wg.Close()
	}
}
