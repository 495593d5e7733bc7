package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyguard/anyguard/wgkey"
)

// hsCookieLife is how long an initiator uses a cookie for mac2: wireguard-go
// clients use one for 120 s after they receive it; a little less keeps
// clear of the responder's own 120 s secret rotation.
const hsCookieLife = 110 * time.Second

// hsAttemptTimeout is how long an initiator waits for an answer before it
// starts a new attempt: wireguard-go's REKEY_TIMEOUT.
const hsAttemptTimeout = 5 * time.Second

// hsClient is one initiator: a configured client's key on a UDP socket of
// its own, bound to an address of its own in 127.0.0.0/8, so that the
// responder sees a distinct endpoint and source IP per client (its rate
// limiter under load counts per source IP, as it would for real clients).
type hsClient struct {
	idx  uint32
	conn *net.UDPConn

	mu       sync.Mutex
	in       *hsInitiator
	seq      uint32
	sender   uint32    // index of the last initiation sent
	start    time.Time // when the pending attempt began; zero: none pending
	retried  bool      // the pending attempt was already retried with mac2
	done     bool      // completed a handshake at least once (warm)
	mac1     [16]byte  // of the last initiation, to open a cookie reply
	cookie   [16]byte
	cookieAt time.Time // zero: no cookie
}

// hsCounts are the storm's counters; stormStats reads and resets them.
type hsCounts struct {
	attempts   atomic.Uint64 // new handshake attempts (the offered load)
	sent       atomic.Uint64 // initiations sent, retries included
	completed  atomic.Uint64 // attempts answered by a matching response
	cookies    atomic.Uint64 // cookie replies received
	retries    atomic.Uint64 // initiations resent with mac2 after a cookie
	superseded atomic.Uint64 // attempts unanswered after hsAttemptTimeout, when the client's next began
	busy       atomic.Uint64 // attempts not offered: every client had one in flight
	stale      atomic.Uint64 // responses to an initiation no longer pending
}

// storm drives many hsClients against one responder.
type storm struct {
	resp    *hsResponder
	gw      netip.AddrPort
	clients []*hsClient
	cnt     hsCounts

	latMu sync.Mutex
	lat   []time.Duration // handshake latency of completed attempts

	wg sync.WaitGroup
}

// hsClientAddr is the loopback address initiator i sends from.
func hsClientAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 2 + byte(i>>16), byte(i >> 8), byte(i)})
}

// newStorm opens one socket per private key and starts its reader.
func newStorm(responder wgkey.Key, gw netip.AddrPort, privs []wgkey.Key) (*storm, error) {
	s := &storm{resp: newHSResponder(responder), gw: gw}
	for i, priv := range privs {
		in, err := newHSInitiator(s.resp, priv)
		if err != nil {
			s.close()
			return nil, err
		}
		conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(hsClientAddr(i), 0)))
		if err != nil {
			s.close()
			return nil, fmt.Errorf("initiator socket: %w", err)
		}
		c := &hsClient{idx: uint32(i), conn: conn, in: in}
		s.clients = append(s.clients, c)
		s.wg.Add(1)
		go s.read(c)
	}
	return s, nil
}

// close closes the sockets and waits for the readers.
func (s *storm) close() {
	for _, c := range s.clients {
		c.conn.Close()
	}
	s.wg.Wait()
}

// idle reports whether c has no attempt in flight (or gave up on it).
func (c *hsClient) idle(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.start.IsZero() || now.Sub(c.start) >= hsAttemptTimeout
}

// send starts a new attempt of client c, or (retry) resends its pending
// attempt with a fresh initiation. The sender index changes every time, as
// wireguard-go's does.
func (s *storm) send(c *hsClient, now time.Time, retry bool) {
	var msg [hsSizeInitiation]byte
	c.mu.Lock()
	if !retry {
		if !c.start.IsZero() {
			s.cnt.superseded.Add(1)
		}
		c.start, c.retried = now, false
		s.cnt.attempts.Add(1)
	}
	c.seq++
	c.sender = c.idx<<12 | c.seq&0xfff
	var cookie *[16]byte
	if !c.cookieAt.IsZero() && now.Sub(c.cookieAt) < hsCookieLife {
		cookie = &c.cookie
	}
	c.in.initiation(&msg, c.sender, now, cookie)
	copy(c.mac1[:], msg[hsInitMAC1:hsInitMAC2])
	c.mu.Unlock()
	s.cnt.sent.Add(1)
	c.conn.WriteToUDPAddrPort(msg[:], s.gw)
}

// read handles what the responder sends client c: a response completes the
// pending attempt (checked by type, size and receiver index only, to keep
// the initiators cheap; handshake_test.go decrypts them in full); a cookie
// reply is opened, kept for mac2, and the attempt retried once at once.
func (s *storm) read(c *hsClient) {
	defer s.wg.Done()
	buf := make([]byte, 256)
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		m := buf[:n]
		switch {
		case n == hsSizeResponse && binary.LittleEndian.Uint32(m) == hsTypeResponse:
			recv := binary.LittleEndian.Uint32(m[8:])
			c.mu.Lock()
			ok := recv == c.sender && !c.start.IsZero()
			var d time.Duration
			if ok {
				d = now.Sub(c.start)
				c.start = time.Time{}
				c.done = true
			}
			c.mu.Unlock()
			if !ok {
				s.cnt.stale.Add(1)
				continue
			}
			s.cnt.completed.Add(1)
			s.latMu.Lock()
			s.lat = append(s.lat, d)
			s.latMu.Unlock()
		case n == hsSizeCookie && binary.LittleEndian.Uint32(m) == hsTypeCookie:
			s.cnt.cookies.Add(1)
			recv := binary.LittleEndian.Uint32(m[4:])
			c.mu.Lock()
			retry := false
			if recv == c.sender {
				if cookie, err := s.resp.openCookie(m, c.mac1[:]); err == nil {
					c.cookie, c.cookieAt = cookie, now
					retry = !c.start.IsZero() && !c.retried
					c.retried = c.retried || retry
				}
			}
			c.mu.Unlock()
			if retry {
				s.cnt.retries.Add(1)
				s.send(c, now, true)
			}
		}
	}
}

// offerTo starts new attempts at rate per second for d, round robin over
// clients, from senders goroutines (open loop: the schedule does not wait
// for answers). It returns when d has passed or ctx is done. With once, each client starts at most
// one attempt, and offerTo returns early when every client has started
// one.
func (s *storm) offerTo(ctx context.Context, clients []*hsClient, rate float64, d time.Duration, senders int, once bool) {
	senders = max(1, min(senders, len(clients)))
	var wg sync.WaitGroup
	start := time.Now()
	for j := range senders {
		var mine []*hsClient
		for i := j; i < len(clients); i += senders {
			mine = append(mine, clients[i])
		}
		per := rate / float64(senders)
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			sent, next, walked := 0, 0, 0
			for {
				now := time.Now()
				el := now.Sub(start)
				if el >= d || ctx.Err() != nil {
					return
				}
				for due := int(per * el.Seconds()); sent < due; sent++ {
					// The next client without an attempt in flight: like a
					// wireguard-go client, one waits hsAttemptTimeout for an
					// answer before it starts again.
					c := (*hsClient)(nil)
					if once {
						if walked == len(mine) {
							return
						}
						c = mine[walked]
						walked++
						s.send(c, now, false)
						continue
					}
					for range len(mine) {
						cand := mine[next]
						next = (next + 1) % len(mine)
						if cand.idle(now) {
							c = cand
							break
						}
					}
					if c == nil {
						s.cnt.busy.Add(uint64(due - sent))
						sent = due
						break
					}
					s.send(c, now, false)
				}
				<-tick.C
			}
		}()
	}
	wg.Wait()
}

// warm makes every client complete a handshake (so that it is a live peer
// of the responder), offering at rate, in up to five rounds that each wait
// hsAttemptTimeout for the answers. It returns how many never completed.
func (s *storm) warm(ctx context.Context, rate float64, senders int) int {
	var pending []*hsClient
	for range 5 {
		pending = pending[:0]
		for _, c := range s.clients {
			c.mu.Lock()
			if !c.done {
				pending = append(pending, c)
			}
			c.mu.Unlock()
		}
		if len(pending) == 0 || ctx.Err() != nil {
			break
		}
		d := time.Duration(float64(len(pending))/rate*float64(time.Second)) + time.Second
		s.offerTo(ctx, pending, rate, d, senders, true)
		deadline := time.Now().Add(hsAttemptTimeout)
		for time.Now().Before(deadline) && ctx.Err() == nil && !s.allDone(pending) {
			sleepCtx(ctx, 50*time.Millisecond)
		}
	}
	n := 0
	for _, c := range s.clients {
		c.mu.Lock()
		if !c.done {
			n++
		}
		c.mu.Unlock()
	}
	return n
}

func (s *storm) allDone(cs []*hsClient) bool {
	for _, c := range cs {
		c.mu.Lock()
		done := c.done
		c.mu.Unlock()
		if !done {
			return false
		}
	}
	return true
}

// hsStormStats is what the storm did since the last call of stats.
type hsStormStats struct {
	Attempts, Sent, Completed, Cookies, Retries, Superseded, Stale, Busy uint64
	Latency                                                              []time.Duration // sorted
}

// stats returns the counters and latencies since the last call and resets
// them.
func (s *storm) stats() hsStormStats {
	st := hsStormStats{
		Attempts:   s.cnt.attempts.Swap(0),
		Sent:       s.cnt.sent.Swap(0),
		Completed:  s.cnt.completed.Swap(0),
		Cookies:    s.cnt.cookies.Swap(0),
		Retries:    s.cnt.retries.Swap(0),
		Superseded: s.cnt.superseded.Swap(0),
		Stale:      s.cnt.stale.Swap(0),
		Busy:       s.cnt.busy.Swap(0),
	}
	s.latMu.Lock()
	st.Latency, s.lat = s.lat, nil
	s.latMu.Unlock()
	slices.Sort(st.Latency)
	return st
}

// forget drops every pending attempt, so that attempts of one step are not
// counted as superseded in the next.
func (s *storm) forget() {
	for _, c := range s.clients {
		c.mu.Lock()
		c.start = time.Time{}
		c.mu.Unlock()
	}
}
