//go:build linux

package e2e

import (
	"bufio"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// usage is a gateway's resident memory, Go heap in use and goroutines.
type usage struct {
	rssKB, heapKB, goalKB, goroutines int64
	gcCycles                          int64 // collections completed
}

func (u usage) String() string {
	return fmt.Sprintf("RSS %d MB, heap in use %d MB, heap goal %d MB, %d goroutines", u.rssKB>>10, u.heapKB>>10, u.goalKB>>10, u.goroutines)
}

// readUsage reads VmRSS from /proc/PID/status, and go_goroutines,
// go_memstats_heap_inuse_bytes, go_memstats_next_gc_bytes and
// go_gc_cycles_total from /metrics.
func readUsage(r *clusterRegion) (usage, error) {
	var u usage
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", r.proc.Pid()))
	if err != nil {
		return u, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			u.rssKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	code, body, err := httpGetIn(r.gw, "/metrics")
	if err != nil || code != http.StatusOK {
		return u, fmt.Errorf("%s /metrics: %d %v", r.name, code, err)
	}
	for _, m := range []struct {
		series string
		dst    *int64
		shift  int // bytes to kB: 10
	}{
		{"go_goroutines", &u.goroutines, 0},
		{"go_memstats_heap_inuse_bytes", &u.heapKB, 10},
		{"go_memstats_next_gc_bytes", &u.goalKB, 10},
		{"go_gc_cycles_total", &u.gcCycles, 0},
	} {
		v, err := metricIn(body, m.series)
		if err != nil {
			return u, fmt.Errorf("%s: %w", r.name, err)
		}
		*m.dst = int64(v) >> m.shift
	}
	return u, nil
}

// metricIn is the value of the series written exactly series (name and
// labels) in a /metrics body.
func metricIn(body []byte, series string) (float64, error) {
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("/metrics: no %s", series)
}

// Bounds of the flood scenario. The flood runs at least
// floodRounds times, identically.
//
// Resident memory is no measure of what a gateway keeps: wireguard-go's
// pooled 64 KiB buffers make a live heap of over 100 MB that is mostly
// never written; the garbage collector lets the heap grow to twice the
// live heap (its goal) before it collects; and junk, like any traffic,
// makes garbage that touches more of those pages each round until RSS
// nears the goal (measured: RSS 23 MB before, 56 MB after the first
// flood, 100 MB after the fourth, under a steady goal of 264 MB).
//
// What a gateway keeps per junk datagram, connection or source is live
// heap, which the goal doubles once a collection has seen it; what is in
// flight when a collection runs (queued junk, pooled buffers in use)
// counts too, more so the more the gateway is starved of CPU. So the
// scenario reads each gateway's goal at the end of every round and takes
// the least of those set by a collection after the second round (what
// was kept then is still there; what was in flight varies): the flood
// goes on, up to floodMaxRounds, until each gateway has collected after
// the second round. That goal stays within a margin of twice the heap in
// use before the flood (in use is live heap plus garbage not yet
// collected: at least the live heap). RSS stays within each round's peak
// goal plus the memory outside the Go heap. Goroutines return to their
// count before the flood.
const (
	floodRounds           = 4
	floodMaxRounds        = 8
	floodGoalMarginKB     = 24 << 10 // heap goal over twice the heap in use before: 12 MB of live heap
	floodNonHeapKB        = 64 << 10 // peak RSS over the round's peak heap goal
	floodGoroutinesPeak   = 100      // peak, over the count before
	floodGoroutinesSettle = 10       // 15 s after the flood, over the count before
)

// scenarioFlood sends junk from 64 source addresses to the virtual
// address's client port (the LB spreads it over every gateway) and to
// every gateway's gossip port, UDP and TCP, round after round, while the
// client's echoes run: memory and goroutines stay bounded, and the
// echoes keep flowing.
func scenarioFlood(t *testing.T, l *faultLab, row *faultRow) {
	before := map[string]usage{}
	for _, r := range l.gws {
		u, err := readUsage(r)
		if err != nil {
			t.Fatal(err)
		}
		before[r.name] = u
	}
	logSize := func(r *clusterRegion) int64 {
		fi, err := os.Stat(r.proc.LogPath)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	logBefore := map[string]int64{}
	for _, r := range l.gws {
		logBefore[r.name] = logSize(r)
	}
	seed := uint64(time.Now().UnixNano())
	var peaks []map[string]usage
	endOfSecond := map[string]int64{} // collections completed when the second round ended
	keptGoal := map[string]int64{}    // least goal set by a collection after the second round
	t0 := time.Now()
	var floodEnd time.Time
	for round := 0; round < floodMaxRounds; round++ {
		start := time.Now()
		var udpSent, udpFailed, tcpConns, tcpRefused int
		peaks = append(peaks, sampleUsage(l, func() {
			udpSent, udpFailed, tcpConns, tcpRefused = flood(t, l, seed)
		}))
		floodEnd = time.Now()
		row.note(t, "flood %d (seed %d): %d junk datagrams (%d send errors) and %d junk TCP connections (%d refused) from %d addresses in %v",
			round+1, seed, udpSent, udpFailed, tcpConns, tcpRefused, faultSources, floodEnd.Sub(start).Round(time.Millisecond))
		collected := true
		for _, r := range l.gws {
			u, err := readUsage(r)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case round == 1:
				endOfSecond[r.name] = u.gcCycles
			case round > 1 && u.gcCycles > endOfSecond[r.name]:
				if k, ok := keptGoal[r.name]; !ok || u.goalKB < k {
					keptGoal[r.name] = u.goalKB
				}
			}
			_, ok := keptGoal[r.name]
			collected = collected && ok
		}
		if round+1 >= floodRounds && collected {
			break
		}
	}

	// The echoes kept flowing during the flood and after it.
	for _, f := range l.flows {
		if gap := f.longestGap(t0, floodEnd); gap > time.Second {
			t.Errorf("%s: no echo for %v during the flood", f.name, gap.Round(time.Millisecond))
		}
	}
	after := time.Now()
	time.Sleep(3 * time.Second)
	l.countLoss(row, t0, after.Add(2*time.Second))
	for _, f := range l.flows {
		if sent, lost := f.window(after, after.Add(2*time.Second)); lost > 0 {
			t.Errorf("%s: %d of %d echoes lost in the 2 s after the flood", f.name, lost, sent)
		}
	}

	var worstRSS, worstG int64
	worstGoal := int64(math.MinInt64)
	for _, r := range l.gws {
		if !r.proc.Alive() {
			t.Fatalf("%s died in the flood: %v", r.name, r.proc.Err())
		}
		b := before[r.name]
		var rounds []string
		for i, p := range peaks {
			u := p[r.name]
			worstRSS = max(worstRSS, u.rssKB-b.rssKB)
			worstG = max(worstG, u.goroutines-b.goroutines)
			rounds = append(rounds, fmt.Sprintf("peak of flood %d: %v", i+1, u))
			if u.rssKB > u.goalKB+floodNonHeapKB {
				t.Errorf("%s: peak RSS %d MB in flood %d, over its heap goal %d MB by more than %d MB: memory outside the Go heap grew", r.name, u.rssKB>>10, i+1, u.goalKB>>10, floodNonHeapKB>>10)
			}
			if u.goroutines-b.goroutines > floodGoroutinesPeak {
				t.Errorf("%s: %d goroutines at peak of flood %d, %d before the flood", r.name, u.goroutines, i+1, b.goroutines)
			}
		}
		kept, ok := keptGoal[r.name]
		if !ok {
			t.Errorf("%s ran no garbage collection in %d floods after the second: what it keeps cannot be told", r.name, len(peaks)-2)
		}
		worstGoal = max(worstGoal, kept-2*b.heapKB)
		if ok && kept > 2*b.heapKB+floodGoalMarginKB {
			t.Errorf("%s: heap goal %d MB after the second flood, over twice the heap in use before it (%d MB) by more than %d MB: the gateway keeps something per junk datagram", r.name, kept>>10, b.heapKB>>10, floodGoalMarginKB>>10)
		}
		var settled usage
		waitFor(t, r.proc, 15*time.Second, r.name+"'s goroutines back near their count before the flood", func() bool {
			u, err := readUsage(r)
			settled = u
			return err == nil && u.goroutines <= b.goroutines+floodGoroutinesSettle
		})
		if code, _, err := httpGetIn(r.gw, "/readyz"); err != nil || code != http.StatusOK {
			t.Errorf("%s not ready after the flood: %d %v", r.name, code, err)
		}
		t.Logf("%s: before: %v; %s; after: %v", r.name, b, strings.Join(rounds, "; "), settled)
	}
	var worstLog int64
	for _, r := range l.gws {
		worstLog = max(worstLog, logSize(r)-logBefore[r.name])
	}
	row.note(t, "largest growth over 4 gateways: peak RSS +%d MB; heap goal after the second flood %+d MB over twice the heap in use before; goroutines +%d, log +%d kB",
		worstRSS>>10, worstGoal>>10, worstG, worstLog>>10)
}

// sampleUsage runs fn while sampling every gateway's usage every 200 ms,
// and returns each one's peaks.
func sampleUsage(l *faultLab, fn func()) map[string]usage {
	peak := map[string]usage{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, r := range l.gws {
				if u, err := readUsage(r); err == nil {
					p := peak[r.name]
					p.rssKB, p.heapKB, p.goalKB, p.goroutines = max(p.rssKB, u.rssKB), max(p.heapKB, u.heapKB), max(p.goalKB, u.goalKB), max(p.goroutines, u.goroutines)
					peak[r.name] = p
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	fn()
	close(stop)
	wg.Wait()
	return peak
}

// flood sends, from each of evil's faultSources addresses, junk datagrams
// (floodGarbage: WireGuard-like and random) to the virtual address's
// client port and to every gateway's gossip port, and opens a TCP
// connection to every gateway's gossip port with junk in it.
func flood(t *testing.T, l *faultLab, seed uint64) (udpSent, udpFailed, tcpConns, tcpRefused int) {
	vip := netip.AddrPortFrom(netip.MustParseAddr(faultVIP), clientPort)
	err := l.evil.Do(func() error {
		for i := range faultSources {
			src := netip.MustParseAddr(fmt.Sprintf("203.0.113.%d", 10+i))
			conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
			if err != nil {
				return err
			}
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			s, f := floodGarbage(conn, vip, rng, 600)
			udpSent, udpFailed = udpSent+s, udpFailed+f
			for _, r := range l.gws {
				gossip := netip.AddrPortFrom(netip.MustParseAddr(r.wan), gossipPort)
				s, f := floodGarbage(conn, gossip, rng, 200)
				udpSent, udpFailed = udpSent+s, udpFailed+f
				d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: time.Second}
				c, err := d.Dial("tcp", gossip.String())
				if err != nil {
					tcpRefused++
					continue
				}
				junk := make([]byte, 1+rng.IntN(4096))
				fillRandom(rng, junk)
				c.Write(junk) // the gateway may close first: either way it had junk
				c.Close()
				tcpConns++
			}
			conn.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("flood from %s: %v", l.evil.Name, err)
	}
	return udpSent, udpFailed, tcpConns, tcpRefused
}

// Names of the skewed member: nothing in them says "clock" or "skew", so
// that finding one next to those words is the gateways' doing.
const (
	skewName   = "gwZ9"
	skewRegion = "region-z"
)

// scenarioClockSkew: a gossip member whose clock runs 10 minutes ahead
// joins and claims alice every second. The other gateways must refuse its
// records, make it visible (a metric, a log line or /readyz?verbose naming
// it), and still agree among themselves when the LB moves the client.
func scenarioClockSkew(t *testing.T, l *faultLab, row *faultRow) {
	ns := newNetns(t, "skew")
	attachToBridge(t, l.wan, "br0", ns, "skew", "eth0", faultSkew+"/24")
	var join []string
	for _, r := range l.gws {
		join = append(join, net.JoinHostPort(r.wan, strconv.Itoa(gossipPort)))
	}
	bad := func() float64 {
		var n float64
		for _, r := range l.gws {
			v, _ := gossipEvents(r, "bad")
			n += v
		}
		return n
	}
	badBefore := bad()
	p := startSkewMember(t, ns, skewMember{
		Name: skewName, Bind: net.JoinHostPort(faultSkew, strconv.Itoa(gossipPort)), Join: join,
		KeyFile: writeSecret(t, t.TempDir(), "gossip.key", l.gossip.Private+"\n"), ClientPub: l.alice.Public, Ahead: skewAhead,
	})
	defer func() {
		p.Stop(5 * time.Second) // it leaves: the partition must not run through it
		t.Logf("--- skewed member's log ---\n%s", lastLines(p.Log(), 5))
	}()
	for _, r := range l.gws {
		waitFor(t, p, 10*time.Second, r.name+" to list "+skewName+" alive", func() bool {
			st, err := readStatus(r)
			return err == nil && strings.Contains(strings.Join(st.alive(), " "), skewName)
		})
	}
	waitFor(t, p, 10*time.Second, skewName+" to claim alice 3 times", func() bool {
		return strings.Count(p.Log(), "changed=true") >= 3
	})
	if views := l.owners(nil); views["gwA1"] == skewName || views["gwB2"] == skewName {
		t.Errorf("a gateway took the skewed member's claim: %v", views)
	}
	row.note(t, "records refused as bad gossip while %s claimed: %.0f", skewName, bad()-badBefore)

	// Ownership converges among the others: the LB moves the client.
	moveAndMeasure(t, l, row, "gwB2", "gwA1", nil)

	// Visible by name somewhere an operator looks.
	var where string
	waitFor(t, p, 5*time.Second, "a gateway to name "+skewName+" as a member whose clock it refuses (a metric, a log line or /readyz?verbose: issue 10, item 6)", func() bool {
		where = skewVisible(l)
		return where != ""
	})
	row.note(t, "named: %s", where)
}

// skewVisible returns where a gateway names the skewed member next to the
// words clock or skew: a /metrics series, a /readyz?verbose line or a log
// line; "" when none does.
func skewVisible(l *faultLab) string {
	named := func(line string) bool {
		l := strings.ToLower(line)
		return strings.Contains(line, skewName) && (strings.Contains(l, "clock") || strings.Contains(l, "skew"))
	}
	for _, r := range l.gws {
		for _, path := range []string{"/metrics", "/readyz?verbose"} {
			if _, body, err := httpGetIn(r.gw, path); err == nil {
				for _, line := range strings.Split(string(body), "\n") {
					if named(line) {
						return r.name + " " + path + ": " + line
					}
				}
			}
		}
		for _, line := range strings.Split(r.proc.Log(), "\n") {
			if named(line) {
				return r.name + " log: " + line
			}
		}
	}
	return ""
}

// gossipEvents is anyguard_gossip_events_total{event=...} of r.
func gossipEvents(r *clusterRegion, event string) (float64, error) {
	code, body, err := httpGetIn(r.gw, "/metrics")
	if err != nil || code != http.StatusOK {
		return 0, fmt.Errorf("%s /metrics: %d %v", r.name, code, err)
	}
	return metricIn(body, `anyguard_gossip_events_total{event="`+event+`"}`)
}

// replayDelays are when, after the scenario starts, the captured
// initiation is sent again (to each non-owner gateway each time).
var replayDelays = []time.Duration{0, 500 * time.Millisecond, 2 * time.Second, 5 * time.Second}

// scenarioReplay: an attacker who captured the client's handshake
// initiation on the way to the LB sends it again from other addresses,
// which the LB delivers to every gateway but the owner, several times at
// several delays. The owner must stay the owner everywhere, and the
// client's echoes must keep flowing, during and after.
func scenarioReplay(t *testing.T, l *faultLab, row *faultRow) {
	var init []byte
	select {
	case init = <-l.initiation:
	case <-time.After(time.Second):
		t.Fatal("no handshake initiation of the client was captured at the LB")
	}
	owner := l.ensureClient(t, row, "gwA1")
	// One attacker address per other gateway, pinned there by the LB.
	type attacker struct {
		src  netip.Addr
		gw   string
		conn *net.UDPConn
	}
	var atk []*attacker
	for i, r := range l.gws {
		if r.name == owner {
			continue
		}
		a := &attacker{src: netip.MustParseAddr(fmt.Sprintf("203.0.113.%d", 10+faultSources+i)), gw: r.name}
		l.evil.ip(t, "address", "add", a.src.String()+"/24", "dev", "eth0")
		l.lbal.pin(t, a.src.String(), r.wan)
		err := l.evil.Do(func() error {
			var err error
			a.conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.src, 0)))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer a.conn.Close()
		atk = append(atk, a)
	}
	vip := netip.AddrPortFrom(netip.MustParseAddr(faultVIP), clientPort)
	t0 := time.Now()
	end := t0.Add(replayDelays[len(replayDelays)-1] + 5*time.Second)
	var changes []string
	next := 0
	for time.Now().Before(end) {
		if next < len(replayDelays) && time.Since(t0) >= replayDelays[next] {
			for _, a := range atk {
				if _, err := a.conn.WriteToUDPAddrPort(init, vip); err != nil {
					t.Errorf("replay from %s: %v", a.src, err)
				}
			}
			next++
		}
		for gw, o := range l.owners(nil) {
			if o != owner && len(changes) < 10 {
				changes = append(changes, fmt.Sprintf("%s named %s at +%v", gw, o, time.Since(t0).Round(time.Millisecond)))
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	// What the attacker got back: handshake responses (type 2) and
	// cookie replies (type 3), each one a cost to a gateway.
	var responses, cookies, sent int
	buf := make([]byte, 2048)
	for _, a := range atk {
		a.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			n, err := a.conn.Read(buf)
			if err != nil {
				break
			}
			switch {
			case n == wgResponseSize && buf[0] == 2:
				responses++
			case n == wgCookieSize && buf[0] == 3:
				cookies++
			}
		}
	}
	sent = len(replayDelays) * len(atk)
	row.note(t, "the attacker got %d handshake responses and %d cookie replies for %d replayed datagrams", responses, cookies, sent)
	if responses+cookies > sent {
		t.Errorf("%d answers to %d replayed initiations: want at most one each", responses+cookies, sent)
	}
	row.note(t, "captured initiation replayed %d times to each of the %d gateways other than the owner %s, at +%v", len(replayDelays), len(atk), owner, replayDelays)
	if len(changes) > 0 {
		t.Errorf("a replayed initiation changed alice's owner (want %s throughout): %s", owner, strings.Join(changes, "; "))
	}
	var worst time.Duration
	for _, f := range l.flows {
		gap := f.longestGap(t0, end)
		worst = max(worst, gap)
		if gap > time.Second {
			t.Errorf("%s: no echo for %v during or after the replays", f.name, gap.Round(time.Millisecond))
		}
	}
	row.note(t, "longest time without an echo on any flow: %v", worst.Round(time.Millisecond))
	time.Sleep(time.Second)
	l.countLoss(row, t0, end)
}
