//go:build linux

package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// echoPort is where the fault tests' UDP echo servers listen.
const echoPort = 7777

// probeInterval is how often an echoFlow sends: the resolution of the
// recovery times the fault tests measure.
const probeInterval = 20 * time.Millisecond

// startEcho runs a UDP echo server on every address of ns, port echoPort,
// until t ends.
func startEcho(t testing.TB, ns *netns) {
	t.Helper()
	var conn *net.UDPConn
	err := ns.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: echoPort})
		return err
	})
	if err != nil {
		t.Fatalf("echo server in %s: %v", ns.Name, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				conn.WriteToUDPAddrPort(buf[:n], from) // a lost echo is what the flows count
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); wg.Wait() })
}

// echoFlow sends a numbered datagram every probeInterval from a namespace
// to an echo server and notes when each was sent and when its echo came
// back: what the fault tests count as traffic that reached the other side
// and came back.
type echoFlow struct {
	name string
	conn *net.UDPConn
	to   netip.AddrPort

	mu   sync.Mutex
	sent []time.Time
	echo []time.Time // zero while no echo came back

	stop chan struct{}
	wg   sync.WaitGroup
}

// startEchoFlow starts a flow from ns to to; it stops when t ends.
func startEchoFlow(t testing.TB, name string, ns *netns, to netip.AddrPort) *echoFlow {
	t.Helper()
	f := &echoFlow{name: name, to: to, stop: make(chan struct{})}
	err := ns.Do(func() error {
		var err error
		f.conn, err = net.ListenUDP("udp4", &net.UDPAddr{})
		return err
	})
	if err != nil {
		t.Fatalf("flow %s from %s: %v", name, ns.Name, err)
	}
	f.wg.Add(2)
	go f.send()
	go f.receive()
	t.Cleanup(func() {
		close(f.stop)
		f.conn.Close()
		f.wg.Wait()
	})
	return f
}

func (f *echoFlow) send() {
	defer f.wg.Done()
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	var b [16]byte
	copy(b[8:], "anyguard")
	for {
		select {
		case <-f.stop:
			return
		case <-tick.C:
		}
		f.mu.Lock()
		seq := uint64(len(f.sent))
		f.sent = append(f.sent, time.Now())
		f.echo = append(f.echo, time.Time{})
		f.mu.Unlock()
		binary.BigEndian.PutUint64(b[:8], seq)
		f.conn.WriteToUDPAddrPort(b[:], f.to) // no route for a while is one of the things measured
	}
}

func (f *echoFlow) receive() {
	defer f.wg.Done()
	buf := make([]byte, 64)
	for {
		n, _, err := f.conn.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil || n != 16 || string(buf[8:16]) != "anyguard" {
			continue // ICMP errors surface as read errors: nothing to note
		}
		now := time.Now()
		seq := binary.BigEndian.Uint64(buf[:8])
		f.mu.Lock()
		if seq < uint64(len(f.echo)) && f.echo[seq].IsZero() {
			f.echo[seq] = now
		}
		f.mu.Unlock()
	}
}

// firstEchoAfter is how long after t0 the first echo of a datagram sent
// at or after t0 came back; false while none has.
func (f *echoFlow) firstEchoAfter(t0 time.Time) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var first time.Time
	for i := len(f.sent) - 1; i >= 0 && !f.sent[i].Before(t0); i-- {
		if e := f.echo[i]; !e.IsZero() && (first.IsZero() || e.Before(first)) {
			first = e
		}
	}
	if first.IsZero() {
		return 0, false
	}
	return first.Sub(t0), true
}

// waitEcho waits up to timeout for firstEchoAfter(t0).
func (f *echoFlow) waitEcho(t0 time.Time, timeout time.Duration) (time.Duration, bool) {
	deadline := time.Now().Add(timeout)
	for {
		d, ok := f.firstEchoAfter(t0)
		if ok || time.Now().After(deadline) {
			return d, ok
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// window counts the datagrams sent in [from, to) and those of them whose
// echo never came back. Call it a second or so after to, so that late
// echoes are in.
func (f *echoFlow) window(from, to time.Time) (sent, lost int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, s := range f.sent {
		if s.Before(from) || !s.Before(to) {
			continue
		}
		sent++
		if f.echo[i].IsZero() {
			lost++
		}
	}
	return sent, lost
}

// longestGap is the longest time in [from, to) with no echo coming back
// (measured between echo arrivals and the window's ends).
func (f *echoFlow) longestGap(from, to time.Time) time.Duration {
	f.mu.Lock()
	var arrivals []time.Time
	for _, e := range f.echo {
		if !e.IsZero() && !e.Before(from) && e.Before(to) {
			arrivals = append(arrivals, e)
		}
	}
	f.mu.Unlock()
	// Echoes arrive nearly in order; sort the few that did not.
	for i := 1; i < len(arrivals); i++ {
		for j := i; j > 0 && arrivals[j].Before(arrivals[j-1]); j-- {
			arrivals[j], arrivals[j-1] = arrivals[j-1], arrivals[j]
		}
	}
	prev, gap := from, time.Duration(0)
	for _, a := range append(arrivals, to) {
		if d := a.Sub(prev); d > gap {
			gap = d
		}
		prev = a
	}
	return gap
}

func (f *echoFlow) String() string { return fmt.Sprintf("%s (to %s)", f.name, f.to) }
