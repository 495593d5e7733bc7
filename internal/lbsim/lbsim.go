// Package lbsim is a UDP load balancer for tests and the demo: one front
// address (the "anycast" address clients are configured with) and flows
// pinned to backend gateways, like an AWS NLB or Global Accelerator with
// flow stickiness. Each client flow has its own backend-facing socket, so a
// backend sees one stable source per client, and replies from whichever
// backend the flow maps to go back to the client from the front address.
// Moving a flow (by hand, or because its backend turned unhealthy) is what
// the gateways must survive.
package lbsim

import (
	"errors"
	"hash/fnv"
	"net"
	"net/netip"
	"sync"
	"time"
)

// LB is a running load balancer.
type LB struct {
	front *net.UDPConn

	mu       sync.Mutex
	backends []netip.AddrPort
	healthy  []bool
	flows    map[netip.AddrPort]*flow
	closed   bool
	wg       sync.WaitGroup
	moves    int
}

type flow struct {
	client  netip.AddrPort
	backend int
	sock    *net.UDPConn
	last    time.Time
}

// ErrNoBackend is returned when no healthy backend is left.
var ErrNoBackend = errors.New("no healthy backend")

// New starts a load balancer listening on listen (e.g. 127.0.0.1:0) in
// front of backends, all healthy.
func New(listen string, backends []netip.AddrPort) (*LB, error) {
	addr, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return nil, err
	}
	front, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, err
	}
	lb := &LB{front: front, backends: backends, healthy: make([]bool, len(backends)), flows: make(map[netip.AddrPort]*flow)}
	for i := range lb.healthy {
		lb.healthy[i] = true
	}
	lb.wg.Add(1)
	go lb.serveFront()
	return lb, nil
}

// Addr is the front address clients use.
func (lb *LB) Addr() netip.AddrPort { return lb.front.LocalAddr().(*net.UDPAddr).AddrPort() }

func (lb *LB) serveFront() {
	defer lb.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := lb.front.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		f, err := lb.flowFor(from)
		if err != nil {
			continue // dropped: nowhere to send it
		}
		lb.mu.Lock()
		dst := lb.backends[f.backend]
		f.last = time.Now()
		lb.mu.Unlock()
		f.sock.WriteToUDPAddrPort(buf[:n], dst)
	}
}

func (lb *LB) flowFor(client netip.AddrPort) (*flow, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if f, ok := lb.flows[client]; ok {
		return f, nil
	}
	if lb.closed {
		return nil, net.ErrClosed
	}
	b, ok := lb.pick(client)
	if !ok {
		return nil, ErrNoBackend
	}
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	f := &flow{client: client, backend: b, sock: sock, last: time.Now()}
	lb.flows[client] = f
	lb.wg.Add(1)
	go lb.serveBack(f)
	return f, nil
}

// pick hashes the client over the healthy backends (rendezvous hashing,
// so a backend's failure moves only its own flows).
func (lb *LB) pick(client netip.AddrPort) (int, bool) {
	best, found := -1, false
	var bestScore uint64
	for i, b := range lb.backends {
		if !lb.healthy[i] {
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(client.String() + "|" + b.String()))
		if s := h.Sum64(); !found || s > bestScore {
			best, bestScore, found = i, s, true
		}
	}
	return best, found
}

// serveBack relays a backend's replies to the client from the front address.
func (lb *LB) serveBack(f *flow) {
	defer lb.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, _, err := f.sock.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		lb.front.WriteToUDPAddrPort(buf[:n], f.client)
	}
}

// Backend returns the index of the backend a client's flow goes to, and
// false if it has no flow.
func (lb *LB) Backend(client netip.AddrPort) (int, bool) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	f, ok := lb.flows[client]
	if !ok {
		return 0, false
	}
	return f.backend, true
}

// Flows returns the client addresses with a flow.
func (lb *LB) Flows() []netip.AddrPort {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	out := make([]netip.AddrPort, 0, len(lb.flows))
	for c := range lb.flows {
		out = append(out, c)
	}
	return out
}

// Move sends a client's flow to another backend from now on.
func (lb *LB) Move(client netip.AddrPort, backend int) bool {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	f, ok := lb.flows[client]
	if !ok || backend < 0 || backend >= len(lb.backends) || f.backend == backend {
		return false
	}
	f.backend = backend
	lb.moves++
	return true
}

// SetHealthy marks a backend healthy or not. Flows on a backend that turns
// unhealthy move to a healthy one at once, as Global Accelerator does.
func (lb *LB) SetHealthy(backend int, ok bool) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	lb.healthy[backend] = ok
	if ok {
		return
	}
	for c, f := range lb.flows {
		if f.backend == backend {
			if b, found := lb.pick(c); found {
				f.backend = b
				lb.moves++
			}
		}
	}
}

// Moves counts flows moved so far.
func (lb *LB) Moves() int {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.moves
}

// Close stops the load balancer and waits for its goroutines.
func (lb *LB) Close() error {
	lb.mu.Lock()
	lb.closed = true
	for _, f := range lb.flows {
		f.sock.Close()
	}
	lb.mu.Unlock()
	err := lb.front.Close()
	lb.wg.Wait()
	return err
}
