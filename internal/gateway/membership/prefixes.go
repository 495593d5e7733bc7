package membership

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"

	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway/probe"
)

// What a cluster member may announce.
//
// Every member announces the prefixes it serves in its gossip metadata,
// and every other gateway routes them over the backbone to it. Anyone
// holding the gossip key can announce anything, so each gateway vets the
// announcements before routing them, with the same rule on every gateway
// so that the fleet agrees without asking anyone:
//
//   - no member may announce a default route, loopback, link-local or
//     multicast space, the client network (clients.address), or any
//     prefix overlapping a client's allowed IPs: those are refused alone
//     (they do not take part in the next rule, so one bad announcement
//     cannot make the fleet refuse a region's good prefixes);
//   - members of the same region may announce the same or overlapping
//     prefixes: they share the region's egress;
//   - two regions may not announce overlapping prefixes (equal, or one
//     inside the other). When they do, every announcement in the overlap
//     is refused, on both sides: no gateway can tell the real owner from
//     an impostor, and any rule that picks one (the older, the lower name,
//     the more specific) lets an insider win by choosing its name, its
//     timing or a longer prefix. Refusing both costs the contested prefix
//     its routes from other regions (a denial of service the operator
//     sees in /status, the log and anyguard_prefix_refusals_total) but
//     never sends a region's traffic to an impostor.
//
// A gateway's own configured prefixes take part like any member's (its
// own region's egress keeps serving them locally either way), so a
// gateway whose own prefix is contested says so too.
//
// What a member cannot be stopped from doing: claiming to be in region B
// and announcing B's prefixes. It then is a gateway of region B as far as
// anyone can tell (region membership is not authenticated beyond the
// gossip key) and receives a share of B's traffic.

// refuseReason is why an announced prefix is not routed; its String is
// the reason label of anyguard_prefix_refusals_total.
type refuseReason uint8

const (
	refuseInvalid       refuseReason = iota // not a canonical network prefix
	refuseDefault                           // a /0
	refuseReserved                          // overlaps loopback, link-local or multicast space
	refuseClientNetwork                     // overlaps clients.address
	refuseClient                            // overlaps a client's allowed IPs
	refuseRegionOverlap                     // overlaps another region's announcement
	numRefuseReasons
)

func (r refuseReason) String() string {
	switch r {
	case refuseInvalid:
		return "invalid"
	case refuseDefault:
		return "default_route"
	case refuseReserved:
		return "reserved"
	case refuseClientNetwork:
		return "client_network"
	case refuseClient:
		return "client"
	case refuseRegionOverlap:
		return "region_overlap"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// reservedNets are never a region's private network.
var reservedNets = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// announcement is one prefix a member announces.
type announcement struct {
	member, region string
	prefix         netip.Prefix
}

// refusal is an announcement that is not routed, and why.
type refusal struct {
	announcement
	reason refuseReason
	detail string // what it overlaps
}

// protectedNets is what no member may announce: the client network and
// every client's allowed IPs (and the probe's address), from one
// configuration.
type protectedNets struct {
	cfg        *config.Config // the configuration they come from
	clientNets []netip.Prefix // clients.address, as networks
	clients    *bart.Lite     // clients' allowed IPs outside clientNets
}

func newProtectedNets(cfg *config.Config) *protectedNets {
	p := &protectedNets{cfg: cfg, clients: new(bart.Lite)}
	for _, a := range cfg.Clients.Address {
		p.clientNets = append(p.clientNets, a.Masked())
	}
	// Only what lies outside the client network: anything overlapping a
	// prefix inside it overlaps the network, which is checked first. In
	// the usual configuration that is nothing, where inserting 100k
	// clients' /32s would cost a third of a second at every reload.
next:
	for _, c := range probe.ClientPrefixes(cfg) {
		for _, n := range p.clientNets {
			if n.Bits() <= c.Bits() && n.Contains(c.Addr()) {
				continue next
			}
		}
		p.clients.Insert(c)
	}
	return p
}

// vetOne applies the rules that concern a prefix alone.
func (p *protectedNets) vetOne(pfx netip.Prefix) (refuseReason, string, bool) {
	switch {
	case !pfx.IsValid() || pfx.Masked() != pfx || pfx.Addr().Zone() != "" || pfx.Addr().Is4In6():
		return refuseInvalid, "not a network prefix", false
	case pfx.Bits() == 0:
		return refuseDefault, "a default route", false
	}
	for _, r := range reservedNets {
		if pfx.Overlaps(r) {
			return refuseReserved, "overlaps reserved " + r.String(), false
		}
	}
	for _, n := range p.clientNets {
		if pfx.Overlaps(n) {
			return refuseClientNetwork, "overlaps the client network " + n.String(), false
		}
	}
	if p.clients.OverlapsPrefix(pfx) {
		return refuseClient, "overlaps a client's allowed IPs", false
	}
	return 0, "", true
}

// vetAnnouncements returns the announcements that must not be routed (see
// the rules above), sorted by member and prefix. It depends only on its
// inputs, so gateways with the same view decide the same.
func vetAnnouncements(anns []announcement, prot *protectedNets) []refusal {
	var out []refusal
	// The regions announcing each prefix that passed the checks of its own.
	byPrefix := make(map[netip.Prefix][]string)
	var ok []announcement
	for _, a := range anns {
		if reason, detail, pass := prot.vetOne(a.prefix); !pass {
			out = append(out, refusal{announcement: a, reason: reason, detail: detail})
			continue
		}
		ok = append(ok, a)
		if rs := byPrefix[a.prefix]; !slices.Contains(rs, a.region) {
			byPrefix[a.prefix] = append(rs, a.region)
		}
	}
	conflicts := regionConflicts(byPrefix)
	for _, a := range ok {
		if detail, bad := conflicts[regionPrefix{a.region, a.prefix}]; bad {
			out = append(out, refusal{announcement: a, reason: refuseRegionOverlap, detail: detail})
		}
	}
	slices.SortFunc(out, func(a, b refusal) int {
		return cmp.Or(strings.Compare(a.member, b.member), a.prefix.Addr().Compare(b.prefix.Addr()), cmp.Compare(a.prefix.Bits(), b.prefix.Bits()))
	})
	return out
}

type regionPrefix struct {
	region string
	prefix netip.Prefix
}

// regionConflicts finds every (region, prefix) that overlaps a prefix of
// another region, with a description of the first such overlap found.
// Canonical prefixes either nest or are disjoint, and sorted by address
// then length every prefix comes after the prefixes that contain it: a
// walk with a stack of the current chain of containing prefixes sees
// every overlapping pair once, in O(prefixes × depth).
func regionConflicts(byPrefix map[netip.Prefix][]string) map[regionPrefix]string {
	ps := make([]netip.Prefix, 0, len(byPrefix))
	for p, rs := range byPrefix {
		ps = append(ps, p)
		slices.Sort(rs) // deterministic details
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	out := make(map[regionPrefix]string)
	refuse := func(region string, p, other netip.Prefix, otherRegions []string) {
		for _, r := range otherRegions {
			if r == region {
				continue
			}
			key := regionPrefix{region, p}
			if _, done := out[key]; !done {
				if other == p {
					out[key] = "also announced by region " + r
				} else {
					out[key] = "overlaps " + other.String() + " of region " + r
				}
			}
			return
		}
	}
	var stack []netip.Prefix
	for _, c := range ps {
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			if top.Addr().BitLen() == c.Addr().BitLen() && top.Bits() <= c.Bits() && top.Contains(c.Addr()) {
				break
			}
			stack = stack[:len(stack)-1]
		}
		rc := byPrefix[c]
		for _, r := range rc {
			refuse(r, c, c, rc)
		}
		for _, a := range stack {
			ra := byPrefix[a]
			for _, r := range rc {
				refuse(r, c, a, ra)
			}
			for _, r := range ra {
				refuse(r, a, c, rc)
			}
		}
		stack = append(stack, c)
	}
	return out
}

// refusalKey identifies a refusal across updates (its detail may change).
type refusalKey struct {
	announcement
	reason refuseReason
}

// refusalLogEvery bounds the log lines about one member's refused
// prefixes; counters and /status show every refusal.
const refusalLogEvery = time.Minute

// prefixGuard keeps the refusals in force, counts and logs the new ones.
type prefixGuard struct {
	logger *slog.Logger
	self   string
	now    func() time.Time

	mu      sync.Mutex
	refused []refusal
	since   map[refusalKey]time.Time // when each refusal in force began
	lastLog map[string]time.Time     // by member

	counts [numRefuseReasons]atomic.Uint64
}

func newPrefixGuard(logger *slog.Logger, self string) *prefixGuard {
	return &prefixGuard{logger: logger, self: self, now: time.Now, since: make(map[refusalKey]time.Time), lastLog: make(map[string]time.Time)}
}

// update replaces the refusals in force with cur (sorted by member);
// refusals that were not in force before are counted, and logged in one
// line per member at most once per refusalLogEvery.
func (pg *prefixGuard) update(cur []refusal) {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	now := pg.now()
	since := make(map[refusalKey]time.Time, len(cur))
	var fresh []refusal
	for _, r := range cur {
		k := refusalKey{r.announcement, r.reason}
		t, ok := pg.since[k]
		if !ok {
			t = now
			pg.counts[r.reason].Add(1)
			fresh = append(fresh, r)
		}
		since[k] = t
	}
	pg.refused, pg.since = cur, since
	for i := 0; i < len(fresh); {
		j := i
		var b strings.Builder
		for ; j < len(fresh) && fresh[j].member == fresh[i].member; j++ {
			if j > i {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s (%s: %s)", fresh[j].prefix, fresh[j].reason, fresh[j].detail)
		}
		m := fresh[i]
		if last, ok := pg.lastLog[m.member]; !ok || now.Sub(last) >= refusalLogEvery {
			pg.lastLog[m.member] = now
			if m.member == pg.self {
				pg.logger.Error("this gateway's own prefixes are refused by the fleet: other regions will not route them here",
					"node", m.member, "region", m.region, "prefixes", b.String())
			} else {
				pg.logger.Warn("refused prefixes announced by a cluster member: not routed",
					"node", m.member, "region", m.region, "prefixes", b.String())
			}
		}
		i = j
	}
	for m, t := range pg.lastLog { // bounded by the members refused lately
		if now.Sub(t) >= refusalLogEvery {
			delete(pg.lastLog, m)
		}
	}
}

// snapshot returns the refusals in force with when each began.
func (pg *prefixGuard) snapshot() ([]refusal, []time.Time) {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	times := make([]time.Time, len(pg.refused))
	for i, r := range pg.refused {
		times[i] = pg.since[refusalKey{r.announcement, r.reason}]
	}
	return slices.Clone(pg.refused), times
}

// countsByReason returns the refusals counted so far, by reason label.
func (pg *prefixGuard) countsByReason() map[string]uint64 {
	m := make(map[string]uint64, numRefuseReasons)
	for r := range numRefuseReasons {
		m[r.String()] = pg.counts[r].Load()
	}
	return m
}
