package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
)

// Partition healing. memberlist marks members it cannot reach dead, gossips
// to them for GossipToTheDeadTime, then forgets them; its probes and
// push/pulls pick only members it believes alive, so two groups of gateways
// cut apart for longer than that never look for each other again (measured:
// two regions of two gateways, cut for 60 s, stayed split). As Serf's
// reconnect does, the Cluster remembers every member it has seen alive
// (name → gossip address) and, while any of them is missing (dead, or
// forgotten by memberlist), joins them again: the first try at once, then
// with doubling waits (jittered) up to the profile's reconnectMaxWait, so
// that a link that comes back after any outage is found again within
// seconds. The join addresses are tried too: every round while the
// gateway is alone, every joinAddrEvery while a member is missing. Dials to a missing
// member give up after reconnectDialTimeout (the transport caps them), so a
// try that began while the link was still cut ends soon. A member is
// chased until ReconnectTimeout after it went missing, or not at all once
// it left gracefully.

// DefaultReconnectTimeout is how long a member that went missing (not one
// that left) is looked for before it is forgotten, as Serf's default.
const DefaultReconnectTimeout = 24 * time.Hour

const (
	reconnectMinWait = 100 * time.Millisecond
	// A heal is logged once no missing member came back for this long
	// (or none is missing any more), so that one partition gives one line.
	healQuiet = time.Second
	// Members are few; join at most this many addresses at once.
	maxParallelJoins = 16
	// maxKnown bounds the members remembered: a gossip key holder could
	// announce any number of made-up members at any addresses, which
	// would then be chased for ReconnectTimeout.
	maxKnown = 1024
)

// reconnectMaxWait is the longest wait between two rounds of joins: the
// heal time after a link returns is at most this plus a dial timeout plus
// one gossip round.
func reconnectMaxWait(profile string) time.Duration {
	if profile == ProfileWAN {
		return 3 * time.Second
	}
	return 2 * time.Second
}

// reconnectDialTimeout caps the TCP connect of a join to a missing member:
// a SYN that goes unanswered for this long means the link is still cut (a
// second SYN has been sent by then), and the next round tries again.
func reconnectDialTimeout(profile string) time.Duration {
	if profile == ProfileWAN {
		return 3 * time.Second
	}
	return 2 * time.Second
}

// knownMember is a member the reconnect loop remembers.
type knownMember struct {
	addr    netip.AddrPort
	missing time.Time // when it went missing; zero while alive
}

// returned is a member that came back after missing.
type returned struct {
	name string
	down time.Duration
}

// reconnector is the Cluster's memory of members for healing partitions.
type reconnector struct {
	// mu is taken inside memberlist's node lock (memberSeen runs in its
	// event callbacks), so nothing may call into memberlist while holding
	// it.
	mu       sync.Mutex
	known    map[string]*knownMember
	back     []returned // came back since the last heal line
	lastBack time.Time
	wake     chan struct{}
	// dialCap holds the addresses being joined, whose dials the
	// transport cuts short (see capTransport).
	dialCap   map[netip.AddrPort]bool
	join      []string  // the configured join addresses; read-only
	joinTried time.Time // when the join addresses were last tried (reconnectTargets)
}

// memberSeen updates the reconnect memory from a membership event about
// another member: alive, gone (dead), or left.
func (c *Cluster) memberSeen(name string, addr netip.AddrPort, alive, left bool) {
	rc := &c.rc
	now := time.Now()
	rc.mu.Lock()
	k := rc.known[name]
	wake := false // only for a member that went missing or came back
	switch {
	case alive:
		if k != nil && !k.missing.IsZero() {
			rc.back = append(rc.back, returned{name: name, down: now.Sub(k.missing)})
			rc.lastBack = now
			c.reconnected.Add(1)
			wake = true
		}
		if k != nil || len(rc.known) < maxKnown {
			rc.known[name] = &knownMember{addr: addr}
		}
	case left:
		delete(rc.known, name) // a member that left is not chased
	case k != nil && k.missing.IsZero():
		k.missing = now
		wake = true
	}
	rc.mu.Unlock()
	if wake {
		select {
		case rc.wake <- struct{}{}:
		default:
		}
	}
}

// reconnectLoop joins missing members and join addresses until none is
// missing (see the comment at the top of this file).
func (c *Cluster) reconnectLoop() {
	defer c.wg.Done()
	maxWait := reconnectMaxWait(c.cfg.Profile)
	wait := reconnectMinWait
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.rc.wake:
			wait = reconnectMinWait
		case <-timer.C:
		}
		timer.Stop()
		targets := c.reconnectTargets(time.Now())
		c.reportHeal(len(targets) == 0)
		if len(targets) == 0 {
			wait = reconnectMinWait // until a member goes missing
			continue
		}
		before := len(c.MissingMembers())
		c.joinTargets(targets)
		if len(c.MissingMembers()) < before {
			// Members came back; one still missing may need only one
			// more round (a refuted death carries a new incarnation).
			wait = reconnectMinWait
		} else {
			// Not on a mere answer: a join address that answers but is
			// not recognised as a live member (another advertise
			// address) must not be joined, whole table and all, in a
			// tight loop.
			wait = min(2*wait, maxWait)
		}
		select {
		case <-c.stop:
			return
		default:
		}
		timer.Reset(jitter(wait))
	}
}

// jitter returns d ± 25 %.
func jitter(d time.Duration) time.Duration {
	return d*3/4 + rand.N(d/2+1)
}

// joinAddrEvery is how often the join addresses are tried while a member
// is missing but this gateway is not alone: they find members that came
// back under a new address, or that this gateway never saw (it started
// during a partition). A join address can be a live member under another
// address, and each join exchanges whole tables, so not every round.
const joinAddrEvery = 30 * time.Second

// reconnectTargets returns the addresses to join now: those of remembered
// members that are missing (forgetting those missing for longer than the
// reconnect timeout), and the join addresses, every round while this
// gateway is alone and every joinAddrEvery while a member is missing.
// Addresses of live members and this gateway's own are left out.
func (c *Cluster) reconnectTargets(now time.Time) []string {
	timeout := c.cfg.ReconnectTimeout
	if timeout <= 0 {
		timeout = DefaultReconnectTimeout
	}
	var targets []string
	alive := make(map[netip.AddrPort]bool)
	// Before rc.mu: memberlist calls memberSeen (which takes rc.mu) with
	// its node lock held, and numMembers takes that lock.
	alone := c.numMembers() <= 1
	c.rc.mu.Lock()
	for name, k := range c.rc.known {
		switch {
		case k.missing.IsZero():
			alive[k.addr] = true
		case now.Sub(k.missing) > timeout:
			delete(c.rc.known, name)
			c.logger.Info("gave up reconnecting to a member", "node", name, "addr", k.addr, "missing_for", now.Sub(k.missing).Round(time.Second))
		default:
			targets = append(targets, k.addr.String())
		}
	}
	joinAddrs := alone || len(targets) > 0 && now.Sub(c.rc.joinTried) >= joinAddrEvery
	if joinAddrs {
		c.rc.joinTried = now
	}
	c.rc.mu.Unlock()
	// A missing member's address that a live member now has (it was
	// renamed) would answer every join without the member coming back.
	targets = slices.DeleteFunc(targets, func(t string) bool {
		ap, err := netip.ParseAddrPort(t)
		return err == nil && alive[ap]
	})
	if joinAddrs {
		for _, j := range c.rc.join {
			if c.joinAddrAlive(j, alive) {
				continue
			}
			if !slices.Contains(targets, j) {
				targets = append(targets, j)
			}
		}
	}
	return targets
}

// joinAddrAlive reports whether join address j is this gateway's own
// address or a live member's (a name is resolved; one that does not
// resolve is not).
func (c *Cluster) joinAddrAlive(j string, alive map[netip.AddrPort]bool) bool {
	is := func(ap netip.AddrPort) bool {
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		return ap == c.localAddr || alive[ap]
	}
	if ap, err := netip.ParseAddrPort(j); err == nil {
		return is(ap)
	}
	host, port, err := net.SplitHostPort(j)
	if err != nil {
		host, port = j, "7946"
	}
	p, err := netip.ParseAddrPort(net.JoinHostPort("0.0.0.0", port))
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if is(netip.AddrPortFrom(a, p.Port())) {
			return true
		}
	}
	return false
}

// joinTargets joins every target at once (each on its own: memberlist's
// Join tries addresses one after another) and returns how many answered.
func (c *Cluster) joinTargets(targets []string) int {
	capped := make(map[netip.AddrPort]bool, len(targets))
	for _, t := range targets {
		if ap, err := netip.ParseAddrPort(t); err == nil {
			capped[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = true
		}
	}
	c.rc.mu.Lock()
	c.rc.dialCap = capped
	c.rc.mu.Unlock()
	defer func() {
		c.rc.mu.Lock()
		c.rc.dialCap = nil
		c.rc.mu.Unlock()
	}()
	c.reconnectTries.Add(1)
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		contacted int
		sem       = make(chan struct{}, maxParallelJoins)
	)
	for _, t := range targets {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// Not c.join: a member found here is asked to catch up (a
			// digest exchange), since both sides wrote records apart.
			n, err := c.ml.Join([]string{t})
			if err != nil {
				c.logger.Debug("reconnect: join failed", "addr", t, "err", err)
			}
			mu.Lock()
			contacted += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	return contacted
}

// dialTimeout returns the timeout for a TCP dial to addr: capped while
// addr is being rejoined.
func (c *Cluster) dialTimeout(addr string, d time.Duration) time.Duration {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return d
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	c.rc.mu.Lock()
	capped := c.rc.dialCap[ap]
	c.rc.mu.Unlock()
	if capped {
		return min(d, reconnectDialTimeout(c.cfg.Profile))
	}
	return d
}

// reportHeal logs, in one line, the members that came back since the last
// line, once none is missing or none came back for healQuiet.
func (c *Cluster) reportHeal(noneMissing bool) {
	c.rc.mu.Lock()
	if len(c.rc.back) == 0 || !noneMissing && time.Since(c.rc.lastBack) < healQuiet {
		c.rc.mu.Unlock()
		return
	}
	back := c.rc.back
	c.rc.back = nil
	missing := 0
	for _, k := range c.rc.known {
		if !k.missing.IsZero() {
			missing++
		}
	}
	c.rc.mu.Unlock()
	names := make([]string, len(back))
	var longest time.Duration
	for i, b := range back {
		names[i] = b.name
		longest = max(longest, b.down)
	}
	slices.Sort(names)
	c.heals.Add(1)
	c.logger.Info("cluster healed: members back", "nodes", strings.Join(names, ","), "count", len(names),
		"missing_for", longest.Round(time.Millisecond), "still_missing", missing)
}

// MissingMembers returns the names of remembered members that are missing
// and still looked for, sorted.
func (c *Cluster) MissingMembers() []string {
	c.rc.mu.Lock()
	defer c.rc.mu.Unlock()
	var out []string
	for name, k := range c.rc.known {
		if !k.missing.IsZero() {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// capTransport is memberlist's transport with the dials of joins to
// missing members cut short (see reconnectDialTimeout), and the
// connections it dialed closed on Shutdown, so that Close does not wait
// for a join or push/pull with a member that stopped answering.
type capTransport struct {
	memberlist.Transport
	c *Cluster

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

var _ memberlist.NodeAwareTransport = (*capTransport)(nil)

func newCapTransport(inner memberlist.Transport, c *Cluster) *capTransport {
	return &capTransport{Transport: inner, c: c, conns: make(map[*trackedConn]struct{})}
}

func (t *capTransport) DialTimeout(addr string, d time.Duration) (net.Conn, error) {
	return t.track(t.Transport.DialTimeout(addr, t.c.dialTimeout(addr, d)))
}

func (t *capTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if na, ok := t.Transport.(memberlist.NodeAwareTransport); ok {
		return na.WriteToAddress(b, a)
	}
	return t.Transport.WriteTo(b, a.Addr)
}

func (t *capTransport) DialAddressTimeout(a memberlist.Address, d time.Duration) (net.Conn, error) {
	d = t.c.dialTimeout(a.Addr, d)
	if na, ok := t.Transport.(memberlist.NodeAwareTransport); ok {
		return t.track(na.DialAddressTimeout(a, d))
	}
	return t.track(t.Transport.DialTimeout(a.Addr, d))
}

func (t *capTransport) track(conn net.Conn, err error) (net.Conn, error) {
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: conn, t: t}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		conn.Close()
		return nil, net.ErrClosed
	}
	t.conns[tc] = struct{}{}
	return tc, nil
}

// Shutdown closes the connections still open, then the transport.
func (t *capTransport) Shutdown() error {
	t.mu.Lock()
	t.closed = true
	conns := t.conns
	t.conns = nil
	t.mu.Unlock()
	for tc := range conns {
		tc.Conn.Close()
	}
	return t.Transport.Shutdown()
}

// trackedConn is a dialed connection that capTransport closes on Shutdown.
type trackedConn struct {
	net.Conn
	t *capTransport
}

func (c *trackedConn) Close() error {
	c.t.mu.Lock()
	delete(c.t.conns, c)
	c.t.mu.Unlock()
	return c.Conn.Close()
}

// newTransport returns the gossip transport for mc (transport.go),
// retrying a dynamic port whose UDP twin is taken.
func newTransport(mc *memberlist.Config) (*gossipTransport, error) {
	bind, err := netip.ParseAddr(mc.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("bind address %q: %w", mc.BindAddr, err)
	}
	tries := 1
	if mc.BindPort == 0 {
		tries = 10
	}
	for range tries {
		var t *gossipTransport
		if t, err = newGossipTransport(netip.AddrPortFrom(bind, uint16(mc.BindPort)), mc.Logger); err == nil {
			if mc.BindPort == 0 {
				mc.BindPort = t.port()
				mc.AdvertisePort = mc.BindPort
			}
			return t, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, err
}
