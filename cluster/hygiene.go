package cluster

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anyguard/anyguard/wgkey"
)

// logEvery is how often one member's refused clock, or one source's
// undecryptable gossip, is logged; each is counted every time.
const logEvery = time.Minute

// OtherNode names, in ClockRefusals, records refused for clock skew whose
// owner is not a member this gateway knows (or that have no owner), so that
// forged names cannot grow the list.
const OtherNode = "(other)"

// ClockRefusal is what this gateway refused of one member's records for a
// clock too far ahead (ErrClockSkew).
type ClockRefusal struct {
	Node    string        // the records' owner: the member whose clock wrote them
	Refused uint64        // records refused since start
	Ahead   time.Duration // how far ahead of this gateway's clock the last one was
	Last    time.Time     // when the last one was refused
}

// hygiene counts and rate-limits what a gateway refuses from others.
type hygiene struct {
	mu     sync.Mutex
	skew   map[string]*skewMember
	logged map[string]time.Time // last log of each rate-limited line (logOnce)
}

type skewMember struct {
	ClockRefusal
	logged time.Time
}

// maxLogKeys bounds the rate-limited lines whose last log time is
// remembered.
const maxLogKeys = 4096

// onRefused is the table's OnRefused: records refused for clock skew are
// counted by owner and logged once per owner per logEvery.
func (c *Cluster) onRefused(r Record, err error) {
	if !errors.Is(err, ErrClockSkew) {
		return
	}
	name := r.Owner
	c.viewMu.Lock()
	if _, ok := c.view[name]; !ok || name == "" {
		name = OtherNode
	}
	c.viewMu.Unlock()
	now := time.Now()
	ahead := r.Time.Wall().Sub(c.hlc.now())
	h := &c.hyg
	h.mu.Lock()
	m := h.skew[name]
	if m == nil {
		m = &skewMember{ClockRefusal: ClockRefusal{Node: name}}
		h.skew[name] = m
	}
	m.Refused++
	m.Ahead = ahead
	m.Last = now
	log := now.Sub(m.logged) >= logEvery
	if log {
		m.logged = now
	}
	refused := m.Refused
	h.mu.Unlock()
	if log {
		c.logger.Warn("refused ownership records from a member whose clock is ahead; check its NTP", "node", name,
			"ahead", ahead.Round(time.Millisecond), "bound", DefaultMaxClockAhead, "refused", refused)
	}
}

// ClockRefusals returns, by member, the records refused for a clock too
// far ahead, sorted by name.
func (c *Cluster) ClockRefusals() []ClockRefusal {
	c.hyg.mu.Lock()
	defer c.hyg.mu.Unlock()
	out := make([]ClockRefusal, 0, len(c.hyg.skew))
	for _, m := range c.hyg.skew {
		out = append(out, m.ClockRefusal)
	}
	slices.SortFunc(out, func(a, b ClockRefusal) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// logUndecryptable reports whether a refused gossip packet or stream from
// line's source ("from=IP:port") should be logged: once per source
// address (any port: streams come from ephemeral ones) per logEvery.
func (c *Cluster) logUndecryptable(line string) bool {
	src := netip.Addr{}
	if _, rest, ok := strings.Cut(line, "from="); ok {
		rest, _, _ = strings.Cut(rest, " ")
		if ap, err := netip.ParseAddrPort(rest); err == nil {
			src = ap.Addr().Unmap()
		}
	}
	return c.logOnce("undecryptable from " + src.String())
}

// logOnce reports whether something identified by key, which may repeat
// every few seconds or be caused by anyone, should be logged now: once per
// logEvery.
func (c *Cluster) logOnce(key string) bool {
	now := time.Now()
	h := &c.hyg
	h.mu.Lock()
	defer h.mu.Unlock()
	if last, ok := h.logged[key]; ok && now.Sub(last) < logEvery {
		return false
	}
	if len(h.logged) >= maxLogKeys {
		clear(h.logged) // a flood from more sources than that starts afresh
	}
	h.logged[key] = now
	return true
}

// isUndecryptable reports whether a memberlist log line is about gossip
// refused for a wrong key, a missing or unexpected encryption, or another
// cluster's label. A stream with no label at all is not counted (see
// isUnlabeled).
func isUndecryptable(line string) bool {
	l := strings.ToLower(line)
	return strings.Contains(l, "decrypt") || strings.Contains(l, "no installed keys") ||
		strings.Contains(l, "encryption") && strings.Contains(l, "not") ||
		strings.Contains(l, "unacceptable label") && !isUnlabeled(line)
}

// isUnlabeled reports whether a memberlist log line refuses a stream that
// carried no label: junk, or a connection closed before its first byte,
// which memberlist's own TCP fallback ping makes when its deadline passes
// before it writes (seen among healthy members on a slow machine, where it
// made the count of undecryptable gossip say a member had the wrong key).
// Logged like undecryptable gossip, not counted as such. A packet with no
// label is junk or another cluster's, and counted.
func isUnlabeled(line string) bool {
	return strings.Contains(line, `discarding stream with unacceptable label "":`)
}

// ReleaseLeftAfter is how long after a member left gracefully (drained,
// then left) the others release the clients it still owns: by then the
// load balancer has moved every connected one, and the records left are of
// idle clients, which would otherwise stay in every table for good. A
// crashed member's clients stay routed to it until they are claimed again.
const ReleaseLeftAfter = 5 * time.Minute

// releaseLeft releases the clients of members that left more than
// ReleaseLeftAfter before now and have not come back.
func (c *Cluster) releaseLeft(now time.Time) {
	var gone []string
	c.viewMu.Lock()
	for name, at := range c.gone {
		if m, ok := c.view[name]; ok && m.Status == "left" && now.Sub(at) >= ReleaseLeftAfter {
			gone = append(gone, name)
		}
	}
	c.viewMu.Unlock()
	for _, name := range gone {
		if n := c.table.ReleaseOwner(name); n > 0 {
			c.logger.Info("released the clients of a gateway that left", "node", name, "clients", n)
		}
	}
}

// clientFilter returns the table's client filter for the client set set,
// made of clients: nil (every client) when clients is nil, as in tests and
// tools that give the cluster no client set; an empty, non-nil list is a
// configuration without clients, and filters out every client.
func clientFilter(clients []wgkey.Key, set *ClientSet) func(wgkey.Key) bool {
	if clients == nil {
		return nil
	}
	return func(k wgkey.Key) bool { _, ok := set.Index(k); return ok }
}
