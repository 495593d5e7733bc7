// Package clustertest provides fakes for testing code built on package
// cluster: a gossip transport on loopback that a test can partition.
package clustertest

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Partition is a network cut between groups of gateways that a test
// controls. While it is on, datagrams between members of different groups
// are lost, and a TCP dial from one group to another hangs for its whole
// timeout and fails, as a SYN into a path that drops it does. Members of
// the same group, and any member while it is off, talk as usual. The zero
// value is not usable: use NewPartition.
type Partition struct {
	mu    sync.Mutex
	group map[netip.AddrPort]int
	on    bool
}

// NewPartition returns a partition that is off.
func NewPartition() *Partition {
	return &Partition{group: make(map[netip.AddrPort]int)}
}

// Cut turns the partition on (true) or off.
func (p *Partition) Cut(on bool) {
	p.mu.Lock()
	p.on = on
	p.mu.Unlock()
}

// blocked reports whether from may not reach to (host:port) now.
func (p *Partition) blocked(from netip.AddrPort, to string) bool {
	ap, err := netip.ParseAddrPort(to)
	if err != nil {
		return false
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.on && p.group[from] != p.group[ap]
}

// Transport returns memberlist's real network transport bound to a free
// port on 127.0.0.1, in group, and the address it listens on. What it
// sends and dials is subject to p; since every member's transport is, the
// cut is symmetric.
func (p *Partition) Transport(group int) (memberlist.NodeAwareTransport, netip.AddrPort, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}})
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	self := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(nt.GetAutoBindPort()))
	p.mu.Lock()
	p.group[self] = group
	p.mu.Unlock()
	return &transport{NetTransport: nt, self: self, p: p, closed: make(chan struct{})}, self, nil
}

// transport is a NetTransport with a Partition applied to what it sends
// and dials.
type transport struct {
	*memberlist.NetTransport
	self   netip.AddrPort
	p      *Partition
	closed chan struct{}
	once   sync.Once
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout (partitioned)" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.p.blocked(t.self, addr) {
		return time.Now(), nil // lost on the way
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

func (t *transport) DialTimeout(addr string, d time.Duration) (net.Conn, error) {
	if t.p.blocked(t.self, addr) {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-t.closed:
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}
	}
	return t.NetTransport.DialTimeout(addr, d)
}

func (t *transport) DialAddressTimeout(a memberlist.Address, d time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, d)
}

func (t *transport) Shutdown() error {
	t.once.Do(func() { close(t.closed) })
	return t.NetTransport.Shutdown()
}
