package gateway_test

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/testwait"
)

// drainCase is how drainMove moves a flow.
type drainCase struct {
	noRelay bool          // the gateways run without the drain relay
	noDrain bool          // a1 does not announce its drain (BeginDrain)
	slow    time.Duration // alice's handshake responses are this late
	// interval is alice's send period; echoDelay the echo service's
	// answer delay. With inFlight, the flow moves just after alice sent
	// a datagram to a1, so its echo comes back to a1 after the move and
	// before her next datagram.
	interval, echoDelay time.Duration
	inFlight            bool
}

// drainMove drains a1 while alice's echoes run, and moves her flow to b2
// the way a load balancer does (a1's datagrams to her are dropped from
// then on); her handshake responses are late by c.slow, as on a loaded
// machine, so the takeover takes a while. It returns the echoes sent and
// lost from the move until b2 owns alice everywhere and 1 s more.
// (Echoes of one ICMP socket per request were lost now and then without
// any move; a UDP flow of numbered datagrams, as in
// TestDrainLosesNothing, loses none.)
func drainMove(t *testing.T, c drainCase) (e *clusterEnv, sent, lost int64) {
	t.Helper()
	e, ra, rb := newClusterEnv(t)
	e.noDrainRelay = c.noRelay
	startGateways(t, e, ra, rb)
	rb.echoDelay = c.echoDelay
	echo := rb.withEcho(t)
	relay, client := aliceViaRelayOnA1(t, e, ra, rb)
	relay.dropOld.Store(true)

	// A numbered datagram every c.interval to region B's UDP echo
	// service, a reader taking the echoes: each crosses alice's session
	// both ways, and the backbone from her gateway to region B and back.
	pc, err := client.DialUDPAddrPort(netip.AddrPort{}, echo)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	sentAt := map[uint32]time.Time{} // counted datagrams not echoed yet
	var nSent int64
	var rtts []time.Duration // of the echoes sent in the 500 ms after the move
	var counting atomic.Bool
	var moved atomic.Pointer[time.Time]
	moveNow := make(chan struct{}) // closed after the first datagram sent once armed
	moveAfter := moveNow
	var armed atomic.Bool
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64)
		for {
			n, err := pc.Read(buf)
			if err != nil {
				return
			}
			if n == 4 {
				mu.Lock()
				seq := binary.BigEndian.Uint32(buf)
				if at, ok := sentAt[seq]; ok {
					if m := moved.Load(); m != nil && at.After(*m) && at.Sub(*m) < 500*time.Millisecond {
						rtts = append(rtts, time.Since(at))
					}
				}
				delete(sentAt, seq)
				mu.Unlock()
			}
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(c.interval)
		defer tick.Stop()
		var b [4]byte
		for seq := uint32(1); ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			binary.BigEndian.PutUint32(b[:], seq)
			if counting.Load() {
				// Counted before it is sent: its echo may come first.
				mu.Lock()
				sentAt[seq] = time.Now()
				nSent++
				mu.Unlock()
			}
			pc.Write(b[:])
			if armed.Load() && moveNow != nil {
				close(moveNow)
				moveNow = nil
			}
		}
	}()
	defer func() { cancel(); pc.Close(); wg.Wait() }()
	time.Sleep(300 * time.Millisecond)
	counting.Store(true)

	relay.slowResponses(c.slow)
	if !c.noDrain {
		e.gws["a1"].BeginDrain()
	}
	armed.Store(true)
	if c.inFlight {
		<-moveAfter
		time.Sleep(c.echoDelay / 4) // the capture relay has sent it on to a1
	}
	now := time.Now()
	moved.Store(&now)
	relay.move(clientEndpoint(e.gws["b2"]))
	testwait.Until(t, 15*time.Second, "every gateway to agree that b2 owns alice", func() bool { return ownersAgree(e, "b2") })
	t.Logf("b2 owns alice everywhere %v after the move", time.Since(now).Round(time.Millisecond))
	time.Sleep(time.Second)
	counting.Store(false)
	cancel()
	time.Sleep(2 * time.Second) // the last answers
	pc.Close()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	sent, lost = nSent, int64(len(sentAt))
	m := *moved.Load()
	first, last := time.Duration(-1), time.Duration(0)
	for _, at := range sentAt {
		d := at.Sub(m)
		if first < 0 || d < first {
			first = d
		}
		last = max(last, d)
	}
	if lost > 0 {
		t.Logf("lost echoes were sent from %v to %v after the move", first.Round(time.Millisecond), last.Round(time.Millisecond))
	}
	slices.Sort(rtts)
	if len(rtts) > 0 {
		t.Logf("round trips of the %d echoes answered of those sent in the 500 ms after the move: median %v, max %v",
			len(rtts), rtts[len(rtts)/2].Round(time.Millisecond), rtts[len(rtts)-1].Round(time.Millisecond))
	}
	t.Logf("%+v: %d echoes after the move, %d lost; a1's datagrams dropped by the load balancer: %d",
		c, sent, lost, relay.dropped.Load())
	return e, sent, lost
}

// TestDrainRelayLosesNothing: a load balancer moves a client's flow off a
// draining gateway (a1) to b2 while echoes run through it both ways, and
// b2's takeover of the client is slow (its handshake responses arrive
// 600 ms late). b2 relays the client's datagrams of a1's session to a1
// over the backbone, and a1's answers leave through b2's client socket:
// no echo is lost. With the relay off, the same move loses the echoes of
// the takeover's duration (a1's answers are dropped by the load balancer,
// b2 cannot decrypt the client's datagrams), which shows the test can
// tell.
func TestDrainRelayLosesNothing(t *testing.T) {
	const slow = 600 * time.Millisecond
	flow := drainCase{slow: slow, interval: 5 * time.Millisecond}
	t.Run("relay", func(t *testing.T) {
		e, sent, lost := drainMove(t, flow)
		checkRelayed(t, e, sent, lost)
	})
	t.Run("no relay", func(t *testing.T) {
		c := flow
		c.noRelay = true
		e, sent, lost := drainMove(t, c)
		if lost == 0 {
			t.Errorf("no echo of %d lost without the drain relay: the test cannot tell", sent)
		}
		if r := e.gws["b2"].Metrics().Relayed; r != nil {
			t.Errorf("b2 relayed with the relay off: %v", r)
		}
	})
}

// TestDrainRelayAnswersInFlight: the flow moves while an echo is on its
// way back to a1 (the service answers after 20 ms, alice sends every
// 50 ms): a1 sends the echo after the move, before alice's next datagram
// shows that b2 relays her flow, so the load balancer drops it. A
// draining a1 sends it again through b2 at that next datagram: nothing
// is lost. Without the drain announced (no copies kept), that echo is
// lost, which shows the test can tell.
func TestDrainRelayAnswersInFlight(t *testing.T) {
	flow := drainCase{slow: 300 * time.Millisecond, interval: 50 * time.Millisecond, echoDelay: 20 * time.Millisecond, inFlight: true}
	t.Run("draining", func(t *testing.T) {
		e, sent, lost := drainMove(t, flow)
		checkRelayed(t, e, sent, lost)
		if r := e.gws["a1"].Metrics().Relayed; r["replayed"] == 0 {
			t.Errorf("a1 replayed nothing: %v", r)
		}
	})
	t.Run("not announced", func(t *testing.T) {
		c := flow
		c.noDrain = true
		e, sent, lost := drainMove(t, c)
		if lost == 0 {
			t.Errorf("no echo of %d lost without copies: the test cannot tell", sent)
		}
		if r := e.gws["a1"].Metrics().Relayed; r["replayed"] != 0 {
			t.Errorf("a1 replayed without draining: %v", r)
		}
	})
}

// checkRelayed checks a move with the drain relay: nothing lost, the
// echoes crossed the relay both ways, nothing was relayed back.
func checkRelayed(t *testing.T, e *clusterEnv, sent, lost int64) {
	t.Helper()
	a1, b2 := e.gws["a1"].Metrics().Relayed, e.gws["b2"].Metrics().Relayed
	t.Logf("a1 relayed: %v", a1)
	t.Logf("b2 relayed: %v", b2)
	if sent < 20 {
		t.Fatalf("only %d echoes: too few to tell", sent)
	}
	if lost != 0 {
		t.Errorf("%d of %d echoes lost with the drain relay", lost, sent)
	}
	if b2["to_owner"] == 0 || b2["to_client"] == 0 || a1["injected"] == 0 || a1["diverted"] == 0 {
		t.Errorf("the echoes did not cross the relay: a1 %v, b2 %v", a1, b2)
	}
	// No loop: the owner relays nothing on, the relaying gateway takes
	// nothing back in, and b1 plays no part.
	if a1["to_owner"] != 0 || a1["to_client"] != 0 || b2["injected"] != 0 || b2["diverted"] != 0 {
		t.Errorf("datagrams relayed back: a1 %v, b2 %v", a1, b2)
	}
	if b1 := e.gws["b1"].Metrics().Relayed; b1["to_owner"]+b1["injected"]+b1["to_client"]+b1["diverted"] != 0 {
		t.Errorf("b1 relayed: %v", b1)
	}
	if c := e.gws["b2"].Metrics().Claims; c["takeover_claimed"] != 1 {
		t.Errorf("b2's claims: %v, want one takeover", c)
	}
}

// relayShaped is what a relayed client datagram looks like inside the
// backbone (outer IPv4 header of protocol 253, kind, endpoint, a
// transport message), for ep.
func relayShaped(ep netip.AddrPort, from, to netip.Addr) []byte {
	d := make([]byte, 20+19+64)
	d[0], d[8], d[9] = 0x45, 64, 253
	binary.BigEndian.PutUint16(d[2:4], uint16(len(d)))
	copy(d[12:16], from.AsSlice())
	copy(d[16:20], to.AsSlice())
	d[20] = 1
	a := ep.Addr().As16()
	copy(d[21:37], a[:])
	binary.BigEndian.PutUint16(d[37:39], ep.Port())
	d[39] = 4 // a transport message
	return d
}

// TestDrainRelayRefusesOutsiders: while b2 relays a moved client's
// datagrams to a1, (1) relay packets sent from outside the cluster, to
// a1's client socket or backbone socket, inject nothing (relayed
// datagrams are only taken from the backbone's WireGuard sessions), and
// (2) a flood of junk transport datagrams from the client's own endpoint
// to b2 (anyone can spoof it) reaches the backbone at most at the
// per-endpoint bound, the rest counted.
func TestDrainRelayRefusesOutsiders(t *testing.T) {
	e, ra, rb := newClusterEnv(t)
	startGateways(t, e, ra, rb)
	a1, b2 := e.gws["a1"], e.gws["b2"]
	relay, client := aliceViaRelayOnA1(t, e, ra, rb)
	relay.dropOld.Store(true)
	relay.slowResponses(5 * time.Second) // b2's takeover stays under way
	relay.move(clientEndpoint(b2))
	// The client's own traffic starts the relay.
	go fetch(client, rb.service)
	testwait.Until(t, 5*time.Second, "b2 to relay alice's datagrams to a1", func() bool {
		return b2.Metrics().Relayed["to_owner"] > 0
	})

	// (1) Outsiders.
	// a1's backbone socket and address, b2's address: a relay packet as
	// b2 would send it, but from outside the backbone's sessions.
	var a1Endpoint netip.AddrPort
	var a1BB, b2BB netip.Addr
	for _, m := range b2.Cluster().Members() {
		switch m.Name {
		case "a1":
			a1Endpoint, a1BB = m.Meta.BackboneEndpoint, m.Meta.BackboneAddr
		case "b2":
			b2BB = m.Meta.BackboneAddr
		}
	}
	injected := a1.Metrics().Relayed["injected"]
	junkBefore := a1.Clients().BindStats().Junk
	out, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	shaped := relayShaped(relay.back.LocalAddr().(*net.UDPAddr).AddrPort(), b2BB, a1BB)
	for range 100 {
		out.WriteToUDPAddrPort(shaped, clientEndpoint(a1))
		out.WriteToUDPAddrPort(shaped, a1Endpoint)
	}
	testwait.Until(t, 5*time.Second, "a1 to count the outsider's datagrams as junk", func() bool {
		return a1.Clients().BindStats().Junk >= junkBefore+100
	})
	if got := a1.Metrics().Relayed["injected"]; got > injected+10 { // alice's own datagrams may go on
		t.Fatalf("a1 injected %d datagrams after outsiders sent relay packets", got-injected)
	}

	// (2) A flood from alice's endpoint, through the load balancer's
	// socket that b2 sees as hers.
	before := b2.Metrics().Relayed
	junk := make([]byte, 128)
	junk[0] = 4
	const flood = 20000
	start := time.Now()
	for i := range flood {
		binary.LittleEndian.PutUint32(junk[4:8], uint32(i))
		relay.back.WriteToUDPAddrPort(junk, clientEndpoint(b2))
	}
	took := time.Since(start)
	testwait.Until(t, 10*time.Second, "b2 to read the flood", func() bool {
		return b2.Clients().BindStats().Transport >= uint64(flood)/2
	})
	time.Sleep(200 * time.Millisecond)
	after := b2.Metrics().Relayed
	relayed := after["to_owner"] - before["to_owner"]
	dropped := after["drop_rate_endpoint"] - before["drop_rate_endpoint"]
	slots := uint64(time.Since(start)/(100*time.Millisecond)) + 1
	t.Logf("flood of %d in %v: b2 relayed %d, dropped %d over the bound (%d slots of 100 ms)", flood, took.Round(time.Millisecond), relayed, dropped, slots)
	if relayed > slots*1000 {
		t.Fatalf("b2 relayed %d datagrams in %d slots, beyond the bound of 1000 per slot", relayed, slots)
	}
	if relayed+dropped < flood/4 {
		t.Fatalf("the flood barely reached the relay (%d relayed, %d dropped): the test cannot tell", relayed, dropped)
	}
}
