package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anyguard/anyguard/cluster/clustertest"
	"github.com/anyguard/anyguard/internal/testwait"
	"github.com/anyguard/anyguard/wgkey"
)

// startPartitioned starts a gateway on loopback whose gossip goes through
// a partitionable transport in group of p.
func startPartitioned(t *testing.T, name string, group int, p *clustertest.Partition, join []string, clients []wgkey.Key, edit func(*Config)) *testNode {
	t.Helper()
	ft, _, err := p.Transport(group)
	if err != nil {
		t.Fatal(err)
	}
	return startNodeWith(t, name, join, testSecret, 0, clients, func(c *Config) {
		c.Transport = ft
		// memberlist forgets a dead member after this (30 s in the lan
		// profile): the cut below outlasts it.
		c.GossipToTheDeadTime = time.Second
		if edit != nil {
			edit(c)
		}
	})
}

// fourGateways starts regions A (a1, a2) and B (b1, b2) in one cluster.
// Each gateway's join addresses name only its own region, so that only
// the members it remembers can bring the other region back.
func fourGateways(t *testing.T, p *clustertest.Partition, clients []wgkey.Key, edit func(*Config)) []*testNode {
	t.Helper()
	a1 := startPartitioned(t, "a1", 0, p, nil, clients, edit)
	a2 := startPartitioned(t, "a2", 0, p, []string{a1.addr()}, clients, edit)
	b1 := startPartitioned(t, "b1", 1, p, nil, clients, edit)
	b2 := startPartitioned(t, "b2", 1, p, []string{b1.addr()}, clients, edit)
	if _, err := b1.ml.Join([]string{a1.addr()}); err != nil {
		t.Fatal(err)
	}
	nodes := []*testNode{a1, a2, b1, b2}
	testwait.Until(t, 10*time.Second, "4 members everywhere", func() bool {
		for _, n := range nodes {
			if n.alive() != 4 {
				return false
			}
		}
		return true
	})
	return nodes
}

// cutFor turns p on and waits until each region has declared the other
// dead, then for memberlist to have forgotten them (GossipToTheDeadTime
// of 1 s, plus a probe round).
func cutFor(t *testing.T, p *clustertest.Partition, nodes []*testNode) {
	t.Helper()
	p.Cut(true)
	testwait.Until(t, 30*time.Second, "each region to see the other dead", func() bool {
		for _, n := range nodes {
			if n.alive() != 2 {
				return false
			}
		}
		return true
	})
	time.Sleep(3 * time.Second) // nothing to await: memberlist's forgetting is not observable
}

func tablesAgree(nodes []*testNode, clients []wgkey.Key) error {
	for _, k := range clients {
		want, _ := nodes[0].Table().Get(k)
		for _, n := range nodes[1:] {
			if got, _ := n.Table().Get(k); got != want {
				return fmt.Errorf("client %s: %s has %v/%d, %s has %v/%d", k.String()[:8], nodes[0].Name(), want.Owner, want.Version, n.Name(), got.Owner, got.Version)
			}
		}
	}
	return nil
}

// TestPartitionHeals: two regions of two gateways, cut apart for longer
// than memberlist keeps a dead member, with claims made on both sides
// while apart (some of the same clients). Within 10 s of the link
// returning every gateway lists every other alive, the ownership tables
// agree, and the heal was logged and counted.
//
// Both profiles: the wan one detects failures later and waits longer
// between reconnect rounds.
func TestPartitionHeals(t *testing.T) {
	t.Parallel()
	for _, profile := range []string{ProfileLAN, ProfileWAN} {
		t.Run(profile, func(t *testing.T) {
			t.Parallel()
			testPartitionHeals(t, profile)
		})
	}
}

func testPartitionHeals(t *testing.T, profile string) {
	p := clustertest.NewPartition()
	clients := genClients(40)
	nodes := fourGateways(t, p, clients, func(c *Config) { c.Profile = profile })
	a1, a2, b1, b2 := nodes[0], nodes[1], nodes[2], nodes[3]
	ep := netip.MustParseAddrPort("198.51.100.1:40000")
	for i, k := range clients[:20] {
		[]*testNode{a1, b1}[i/10].Claim(k, ep, ReasonHandshake)
	}
	testwait.Until(t, 5*time.Second, "claims everywhere", func() bool { return tablesAgree(nodes, clients) == nil })

	cutFor(t, p, nodes)
	if m := a1.MissingMembers(); !slices.Equal(m, []string{"b1", "b2"}) {
		t.Fatalf("a1 misses %v, want b1 b2", m)
	}
	for _, k := range clients[10:15] { // B's clients move to A
		a2.Claim(k, ep, ReasonTakeover)
	}
	for _, k := range clients[0:5] { // A's clients move to B
		b2.Claim(k, ep, ReasonTakeover)
	}
	for _, k := range clients[20:30] { // claimed on both sides
		a1.Claim(k, ep, ReasonHandshake)
		b2.Claim(k, ep, ReasonHandshake)
	}
	if tablesAgree(nodes, clients) == nil {
		t.Fatal("tables agree across the cut")
	}

	p.Cut(false)
	healed := time.Now()
	testwait.Until(t, 10*time.Second, "every gateway to list every other alive", func() bool {
		for _, n := range nodes {
			if n.alive() != 4 || len(n.MissingMembers()) != 0 {
				return false
			}
		}
		return true
	})
	t.Logf("members back after %s", time.Since(healed).Round(time.Millisecond))
	testwait.Until(t, 10*time.Second-time.Since(healed), "ownership tables to agree", func() bool {
		return tablesAgree(nodes, clients) == nil
	})
	t.Logf("tables agree after %s", time.Since(healed).Round(time.Millisecond))
	for i, k := range clients[:15] {
		want := map[bool]string{true: "b2", false: "a2"}[i < 5]
		if i >= 5 && i < 10 {
			want = "a1"
		}
		for _, n := range nodes {
			if got := n.owner(k); got != want {
				t.Errorf("%s: client %d owned by %q, want %q", n.Name(), i, got, want)
			}
		}
	}
	var back, heals uint64
	for _, n := range nodes {
		st := n.Stats()
		back += st.Reconnected
		heals += st.Heals
		if st.MsgsBad != 0 {
			t.Errorf("%s: %d bad messages", n.Name(), st.MsgsBad)
		}
	}
	if back < 8 { // each gateway saw the two of the other region come back
		t.Errorf("%d members counted back, want 8", back)
	}
	testwait.Until(t, 3*time.Second, "a heal line on every gateway", func() bool {
		for _, n := range nodes {
			if n.Stats().Heals == 0 {
				return false
			}
		}
		return true
	})
}

// TestPartitionStaysWithoutReconnect is the control for
// TestPartitionHeals: with the reconnect loop giving up at once, the same
// cut does not heal, so it is the loop, not memberlist, that heals.
func TestPartitionStaysWithoutReconnect(t *testing.T) {
	t.Parallel()
	p := clustertest.NewPartition()
	nodes := fourGateways(t, p, nil, func(c *Config) { c.ReconnectTimeout = time.Nanosecond })
	cutFor(t, p, nodes)
	for _, n := range nodes {
		if m := n.MissingMembers(); len(m) != 0 {
			t.Fatalf("%s still looks for %v after the reconnect timeout", n.Name(), m)
		}
	}
	p.Cut(false)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if n.alive() != 2 {
				t.Fatalf("%s sees %d members alive: memberlist healed the cut by itself", n.Name(), n.alive())
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLeftMemberNotChased: a member that leaves gracefully is not looked
// for, and a crashed one is.
func TestLeftMemberNotChased(t *testing.T) {
	a := startNode(t, "a", nil, testSecret, 0, nil)
	b := startNode(t, "b", []string{a.addr()}, testSecret, 0, nil)
	c := startNode(t, "c", []string{a.addr()}, testSecret, 0, nil)
	testwait.Until(t, 10*time.Second, "3 members", func() bool { return a.alive() == 3 })
	if err := b.Leave(time.Second); err != nil { // not announced draining before: Leave does it
		t.Fatal(err)
	}
	c.Close()
	testwait.Until(t, 10*time.Second, "b left and c failed", func() bool {
		return memberStatus(a, "b") == "left" && memberStatus(a, "c") == "dead"
	})
	if m := a.MissingMembers(); !slices.Equal(m, []string{"c"}) {
		t.Fatalf("a looks for %v, want only c", m)
	}
	tries := a.Stats().ReconnectTries
	testwait.Until(t, 5*time.Second, "a to keep trying c", func() bool { return a.Stats().ReconnectTries >= tries+2 })
}

// logCount is a slog.Handler that counts records by level and message.
type logCount struct {
	mu sync.Mutex
	n  map[string]int // "LEVEL msg"
}

func newLogCount() *logCount { return &logCount{n: make(map[string]int)} }

func (l *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCount) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.n[r.Level.String()+" "+r.Message]++
	l.mu.Unlock()
	return nil
}
func (l *logCount) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCount) WithGroup(string) slog.Handler      { return l }

// count returns how many records at level have a message containing sub.
func (l *logCount) count(level slog.Level, sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for k, v := range l.n {
		if strings.HasPrefix(k, level.String()+" ") && strings.Contains(k, sub) {
			n += v
		}
	}
	return n
}

// TestClockRefusedByMember: a gateway whose clock is 10 minutes ahead has
// its records refused by the others, counted under its name and logged
// once, while the others' claims still converge among them.
func TestClockRefusedByMember(t *testing.T) {
	clients := genClients(10)
	logs := newLogCount()
	a := startNodeWith(t, "a", nil, testSecret, 0, clients, func(c *Config) { c.Logger = slog.New(logs) })
	b := startNode(t, "b", []string{a.addr()}, testSecret, 0, clients)
	fast := startNode(t, "fast", []string{a.addr()}, testSecret, 10*time.Minute, clients)
	testwait.Until(t, 10*time.Second, "3 members", func() bool { return a.alive() == 3 && b.alive() == 3 && fast.alive() == 3 })
	ep := netip.MustParseAddrPort("198.51.100.1:40000")
	for _, k := range clients[:5] {
		fast.Claim(k, ep, ReasonHandshake)
	}
	testwait.Until(t, 5*time.Second, "a to refuse fast's records", func() bool {
		rs := a.ClockRefusals()
		return len(rs) == 1 && rs[0].Node == "fast" && rs[0].Refused >= 5
	})
	r := a.ClockRefusals()[0]
	if r.Ahead < 9*time.Minute || r.Ahead > 11*time.Minute || time.Since(r.Last) > time.Minute {
		t.Fatalf("refusal %+v", r)
	}
	if n := logs.count(slog.LevelWarn, "clock is ahead"); n != 1 {
		t.Fatalf("%d warnings about fast's clock, want 1", n)
	}
	for _, k := range clients[5:] {
		b.Claim(k, ep, ReasonHandshake)
	}
	testwait.Until(t, 5*time.Second, "b's claims at a", func() bool {
		for _, k := range clients[5:] {
			if a.owner(k) != "b" {
				return false
			}
		}
		return true
	})
	for _, k := range clients[:5] {
		if o := a.owner(k); o == "fast" {
			t.Fatalf("a applied a record of fast's clock")
		}
	}
}

// TestUndecryptableLoggedOncePerSource: junk on the gossip port from one
// source is counted every time and logged once.
func TestUndecryptableLoggedOncePerSource(t *testing.T) {
	logs := newLogCount()
	a := startNodeWith(t, "a", nil, testSecret, 0, nil, func(c *Config) { c.Logger = slog.New(logs) })
	conn, err := net.Dial("udp", a.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 50 {
		if _, err := conn.Write([]byte(fmt.Sprintf("junk %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Until(t, 5*time.Second, "50 refusals counted", func() bool { return a.Stats().DecryptErrors >= 50 })
	if n := logs.count(slog.LevelWarn, "gossip: "); n != 1 {
		t.Fatalf("%d warnings for 50 junk packets from one source, want 1", n)
	}
}

// TestInsecureWarns: gossip without a key is announced at start.
func TestInsecureWarns(t *testing.T) {
	logs := newLogCount()
	startNodeWith(t, "a", nil, nil, 0, nil, func(c *Config) { c.Logger = slog.New(logs) })
	if logs.count(slog.LevelWarn, "NOT encrypted") != 1 {
		t.Fatal("no warning about gossip without a key")
	}
	logs2 := newLogCount()
	startNodeWith(t, "b", nil, testSecret, 0, nil, func(c *Config) { c.Logger = slog.New(logs2) })
	if logs2.count(slog.LevelWarn, "NOT encrypted") != 0 {
		t.Fatal("warned about encrypted gossip")
	}
}

// TestReloadForgetsRemovedClients: SetClients drops the records of
// clients removed from the set, and a member that still has them cannot
// bring them back.
func TestReloadForgetsRemovedClients(t *testing.T) {
	clients := genClients(20)
	a, b := startFastPair(t, clients)
	ep := netip.MustParseAddrPort("198.51.100.1:40000")
	for _, k := range clients {
		b.Claim(k, ep, ReasonHandshake)
	}
	testwait.Until(t, 5*time.Second, "a to hold 20 records", func() bool { return a.Table().Stats().Clients == 20 })
	if err := a.SetClients(clients[:12]); err != nil {
		t.Fatal(err)
	}
	if n := a.Table().Stats().Clients; n != 12 {
		t.Fatalf("a holds %d records after the reload, want 12", n)
	}
	// b (not reloaded) keeps repairing a's digest: refused each time.
	pp := a.Stats().PushPulls
	testwait.Until(t, 10*time.Second, "a few push/pulls", func() bool { return a.Stats().PushPulls >= pp+3 })
	testwait.Until(t, 5*time.Second, "b's repairs refused", func() bool { return a.Table().Stats().RejectedUnknown > 0 })
	if n := a.Table().Stats().Clients; n != 12 {
		t.Fatalf("removed clients came back: a holds %d records", n)
	}
}

// TestRepeatingLogLinesLimited: memberlist lines that anyone can cause, or
// that repeat with every reconnect round, are logged once a minute per
// source (or per line); decryption failures are counted every time, and a
// stream with no label at all (junk, or a connection closed before its
// first byte) is logged like them but not counted.
func TestRepeatingLogLinesLimited(t *testing.T) {
	logs := newLogCount()
	a := startNodeWith(t, "a", nil, testSecret, 0, nil, func(c *Config) { c.Logger = slog.New(logs) })
	w := &logAdapter{c: a.Cluster}
	for range 20 {
		fmt.Fprintf(w, "2026/12/07 15:00:00 [WARN] memberlist: failed to resolve gw.example.invalid:7946: no such host\n")
		fmt.Fprintf(w, "[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=192.0.2.1:7946\n")
		fmt.Fprintf(w, "[ERR] memberlist: failed to receive: No installed keys could decrypt the message from=192.0.2.2:40123\n")
		fmt.Fprintf(w, "[ERR] memberlist: discarding packet with unacceptable label \"other\": from=[2001:db8::1]:7946\n")
		fmt.Fprintf(w, "[ERR] memberlist: discarding stream with unacceptable label \"\": from=192.0.2.3:52128\n")
		fmt.Fprintf(w, "[ERR] memberlist: Decrypt packet failed: garbage without a source\n")
	}
	if n := logs.count(slog.LevelWarn, "failed to resolve"); n != 1 {
		t.Errorf("%d warnings for a name that does not resolve, want 1", n)
	}
	if n := logs.count(slog.LevelWarn, "ecrypt") + logs.count(slog.LevelWarn, "label"); n != 5 {
		t.Errorf("%d warnings for 5 sources, want 5", n)
	}
	if n := a.Stats().DecryptErrors; n != 80 {
		t.Errorf("%d decryption failures counted, want 80", n)
	}
}

// TestLeftOwnersClientsReleased: ReleaseLeftAfter after a gateway left
// gracefully, the others release the clients it still owned; a crashed
// gateway's clients stay with it.
func TestLeftOwnersClientsReleased(t *testing.T) {
	clients := genClients(6)
	a := startNode(t, "a", nil, testSecret, 0, clients)
	b := startNode(t, "b", []string{a.addr()}, testSecret, 0, clients)
	c := startNode(t, "c", []string{a.addr()}, testSecret, 0, clients)
	testwait.Until(t, 10*time.Second, "3 members", func() bool { return a.alive() == 3 })
	ep := netip.MustParseAddrPort("198.51.100.1:40000")
	for i, k := range clients {
		[]*testNode{b, c}[i%2].Claim(k, ep, ReasonHandshake)
	}
	testwait.Until(t, 5*time.Second, "a to hold every claim", func() bool { return a.Table().Stats().Clients == 6 })
	if err := b.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	c.Close()
	testwait.Until(t, 10*time.Second, "b left and c failed", func() bool {
		return memberStatus(a, "b") == "left" && memberStatus(a, "c") == "dead"
	})
	a.releaseLeft(time.Now()) // too early: nothing
	if st := a.Table().Stats(); st.Tombstones != 0 {
		t.Fatalf("released %d right after the leave", st.Tombstones)
	}
	a.releaseLeft(time.Now().Add(ReleaseLeftAfter))
	for i, k := range clients {
		want := map[int]string{0: "", 1: "c"}[i%2]
		if got := a.owner(k); got != want {
			t.Errorf("client %d: owner %q, want %q", i, got, want)
		}
	}
	if st := a.Table().Stats(); st.LeftReleased != 3 || st.Tombstones != 3 {
		t.Fatalf("Stats = %+v", st)
	}
}

// TestKnownMembersBounded: made-up members announced by a key holder
// cannot grow the reconnect memory without bound.
func TestKnownMembersBounded(t *testing.T) {
	a := startNode(t, "a", nil, testSecret, 0, nil)
	for i := range 3 * maxKnown {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), uint16(1000+i))
		a.memberSeen(fmt.Sprintf("fake-%d", i), addr, true, false)
	}
	a.rc.mu.Lock()
	n := len(a.rc.known)
	a.rc.mu.Unlock()
	if n != maxKnown {
		t.Fatalf("%d members remembered, want at most %d", n, maxKnown)
	}
}
