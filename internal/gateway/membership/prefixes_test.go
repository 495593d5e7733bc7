package membership

import (
	"bytes"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway/probe"
	"github.com/anyguard/anyguard/internal/keys"
)

// prefixTestConfig is gateway a1 of region-a (10.1.0.0/16) with the client
// network 10.99.0.0/16, alice at 10.99.0.2 and a site client routing
// 192.168.50.0/24, outside the client network.
func prefixTestConfig(t *testing.T) *config.Config {
	t.Helper()
	k, _ := keys.Generate()
	cfg := config.Default()
	cfg.Node = config.Node{Name: "a1", Region: "region-a"}
	cfg.Clients.PrivateKey = k
	cfg.Clients.Address = []netip.Prefix{netip.MustParsePrefix("10.99.0.1/16")}
	cfg.Clients.Peers = []config.Peer{
		{Name: "alice", PublicKey: keys.Key{1}, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.2/32")}},
		{Name: "site", PublicKey: keys.Key{2}, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")}},
	}
	cfg.Egress.Mode = config.ModeNetstack
	cfg.Egress.Prefixes = []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// wireAnnouncements returns what member announces as another gateway
// decodes it: the prefixes go through the real metadata encoding, which
// is all an insider controls.
func wireAnnouncements(t *testing.T, member, region string, prefixes ...string) []announcement {
	t.Helper()
	m := cluster.Meta{Region: region, State: cluster.StateReady, BackboneAddr: netip.MustParseAddr("100.64.0.9")}
	for _, p := range prefixes {
		m.Prefixes = append(m.Prefixes, netip.MustParsePrefix(p))
	}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := cluster.DecodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	var out []announcement
	for _, p := range got.Prefixes {
		out = append(out, announcement{member: member, region: got.Region, prefix: p})
	}
	return out
}

// fleet is a1 itself (from its configuration), a2 of the same region and
// b1, b2 of region-b (10.2.0.0/16), all well behaved.
func fleet(t *testing.T, cfg *config.Config) []announcement {
	anns := []announcement{{member: "a1", region: "region-a", prefix: cfg.Egress.Prefixes[0]}}
	anns = append(anns, wireAnnouncements(t, "a2", "region-a", "10.1.0.0/16")...)
	anns = append(anns, wireAnnouncements(t, "b1", "region-b", "10.2.0.0/16")...)
	anns = append(anns, wireAnnouncements(t, "b2", "region-b", "10.2.0.0/16")...)
	return anns
}

type wantRefusal struct {
	member, prefix, reason, detail string
}

func refusalsOf(rs []refusal) []wantRefusal {
	out := make([]wantRefusal, 0, len(rs))
	for _, r := range rs {
		out = append(out, wantRefusal{r.member, r.prefix.String(), r.reason.String(), r.detail})
	}
	return out
}

// TestVetAnnouncements: what an insider holding the gossip key may try,
// one announcement at a time, on top of a well-behaved fleet.
func TestVetAnnouncements(t *testing.T) {
	cfg := prefixTestConfig(t)
	prot := newProtectedNets(cfg)
	if got := vetAnnouncements(fleet(t, cfg), prot); len(got) != 0 {
		t.Fatalf("well-behaved fleet: refused %v", refusalsOf(got))
	}
	for _, tc := range []struct {
		name   string
		member string // default x1 of region evil
		region string
		prefix []string
		want   []wantRefusal
	}{
		{name: "default route", prefix: []string{"0.0.0.0/0"},
			want: []wantRefusal{{"x1", "0.0.0.0/0", "default_route", "a default route"}}},
		{name: "IPv6 default route", prefix: []string{"::/0"},
			want: []wantRefusal{{"x1", "::/0", "default_route", "a default route"}}},
		{name: "half the Internet", prefix: []string{"0.0.0.0/1"},
			want: []wantRefusal{{"x1", "0.0.0.0/1", "reserved", "overlaps reserved 127.0.0.0/8"}}},
		{name: "cloud metadata address", prefix: []string{"169.254.169.254/32"},
			want: []wantRefusal{{"x1", "169.254.169.254/32", "reserved", "overlaps reserved 169.254.0.0/16"}}},
		{name: "the client network", prefix: []string{"10.99.0.0/16"},
			want: []wantRefusal{{"x1", "10.99.0.0/16", "client_network", "overlaps the client network 10.99.0.0/16"}}},
		{name: "a client's /32", prefix: []string{"10.99.0.2/32"},
			want: []wantRefusal{{"x1", "10.99.0.2/32", "client_network", "overlaps the client network 10.99.0.0/16"}}},
		{name: "a prefix holding the client network", prefix: []string{"10.0.0.0/8"},
			want: []wantRefusal{{"x1", "10.0.0.0/8", "client_network", "overlaps the client network 10.99.0.0/16"}}},
		{name: "inside a client's routed network", prefix: []string{"192.168.50.7/32"},
			want: []wantRefusal{{"x1", "192.168.50.7/32", "client", "overlaps a client's allowed IPs"}}},
		{name: "around a client's routed network", prefix: []string{"192.168.0.0/16"},
			want: []wantRefusal{{"x1", "192.168.0.0/16", "client", "overlaps a client's allowed IPs"}}},
		{name: "the probe's source", prefix: []string{probe.Source4.String() + "/32"},
			want: []wantRefusal{{"x1", "192.0.0.254/32", "client", "overlaps a client's allowed IPs"}}},
		{name: "another region's /16", prefix: []string{"10.2.0.0/16"},
			want: []wantRefusal{
				{"b1", "10.2.0.0/16", "region_overlap", "also announced by region evil"},
				{"b2", "10.2.0.0/16", "region_overlap", "also announced by region evil"},
				{"x1", "10.2.0.0/16", "region_overlap", "also announced by region region-b"},
			}},
		{name: "a more specific of another region's /16", prefix: []string{"10.2.5.0/24"},
			want: []wantRefusal{
				{"b1", "10.2.0.0/16", "region_overlap", "overlaps 10.2.5.0/24 of region evil"},
				{"b2", "10.2.0.0/16", "region_overlap", "overlaps 10.2.5.0/24 of region evil"},
				{"x1", "10.2.5.0/24", "region_overlap", "overlaps 10.2.0.0/16 of region region-b"},
			}},
		{name: "a less specific of two regions", prefix: []string{"10.0.0.0/14"},
			want: []wantRefusal{
				{"a1", "10.1.0.0/16", "region_overlap", "overlaps 10.0.0.0/14 of region evil"},
				{"a2", "10.1.0.0/16", "region_overlap", "overlaps 10.0.0.0/14 of region evil"},
				{"b1", "10.2.0.0/16", "region_overlap", "overlaps 10.0.0.0/14 of region evil"},
				{"b2", "10.2.0.0/16", "region_overlap", "overlaps 10.0.0.0/14 of region evil"},
				{"x1", "10.0.0.0/14", "region_overlap", "overlaps 10.1.0.0/16 of region region-a"},
			}},
		{name: "this gateway's own region", prefix: []string{"10.1.0.0/16"},
			want: []wantRefusal{
				{"a1", "10.1.0.0/16", "region_overlap", "also announced by region evil"},
				{"a2", "10.1.0.0/16", "region_overlap", "also announced by region evil"},
				{"x1", "10.1.0.0/16", "region_overlap", "also announced by region region-a"},
			}},
		{name: "everything at once: only the region prefix drags others in",
			prefix: []string{"0.0.0.0/0", "10.99.0.0/16", "10.2.5.0/24"},
			want: []wantRefusal{
				{"b1", "10.2.0.0/16", "region_overlap", "overlaps 10.2.5.0/24 of region evil"},
				{"b2", "10.2.0.0/16", "region_overlap", "overlaps 10.2.5.0/24 of region evil"},
				{"x1", "0.0.0.0/0", "default_route", "a default route"},
				{"x1", "10.2.5.0/24", "region_overlap", "overlaps 10.2.0.0/16 of region region-b"},
				{"x1", "10.99.0.0/16", "client_network", "overlaps the client network 10.99.0.0/16"},
			}},
		{name: "a new region with its own prefix", prefix: []string{"10.3.0.0/16"}},
		{name: "a gateway of region-b with a more specific (same region)", member: "b3", region: "region-b", prefix: []string{"10.2.0.0/17"}},
		// Not stoppable: a member that claims region-b is a gateway of
		// region-b as far as anyone can tell (docs/security.md).
		{name: "an impostor claiming region-b", member: "x1", region: "region-b", prefix: []string{"10.2.0.0/16"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			member, region := cmpOr(tc.member, "x1"), cmpOr(tc.region, "evil")
			anns := append(fleet(t, cfg), wireAnnouncements(t, member, region, tc.prefix...)...)
			got := refusalsOf(vetAnnouncements(anns, prot))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("refused\n  %v\nwant\n  %v", got, tc.want)
			}
			// The same view in any order gives the same answer: every
			// gateway decides alike.
			for range 20 {
				shuffled := slices.Clone(anns)
				rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				if again := refusalsOf(vetAnnouncements(shuffled, prot)); !slices.Equal(again, got) {
					t.Fatalf("order changed the answer:\n  %v\nvs\n  %v", again, got)
				}
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestVetAnnouncementsIPv6Clients: an IPv6 client network is protected
// like an IPv4 one, IPv4 and IPv6 prefixes never conflict, and an
// IPv4-mapped prefix (a back door around the IPv4 checks) is refused.
func TestVetAnnouncementsIPv6Clients(t *testing.T) {
	cfg := prefixTestConfig(t)
	cfg.Clients.Address = append(cfg.Clients.Address, netip.MustParsePrefix("fd00:99::1/64"))
	prot := newProtectedNets(cfg)
	anns := append(fleet(t, cfg), wireAnnouncements(t, "x1", "evil", "fd00:99::/48", "fd00:2::/48", "::ffff:10.2.0.0/112")...)
	got := refusalsOf(vetAnnouncements(anns, prot))
	want := []wantRefusal{
		{"x1", "::ffff:10.2.0.0/112", "invalid", "not a network prefix"}, // IPv4-mapped: never routed as region-b's
		{"x1", "fd00:99::/48", "client_network", "overlaps the client network fd00:99::/64"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("refused %v, want %v", got, want)
	}
}

// TestPrefixGuardCountsAndLogs: a refusal is counted once when it begins,
// each member's new refusals are logged in one line at most once a
// minute, and a refusal that ends and begins again counts again.
func TestPrefixGuardCountsAndLogs(t *testing.T) {
	var logs bytes.Buffer
	pg := newPrefixGuard(slog.New(slog.NewTextHandler(&logs, nil)), "a1")
	now := time.Unix(1e9, 0)
	pg.now = func() time.Time { return now }
	cfg := prefixTestConfig(t)
	prot := newProtectedNets(cfg)
	vet := func(extra ...announcement) []refusal {
		return vetAnnouncements(append(fleet(t, cfg), extra...), prot)
	}
	lines := func() []string {
		s := strings.TrimSpace(logs.String())
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}

	pg.update(vet(wireAnnouncements(t, "x1", "evil", "0.0.0.0/0", "10.99.0.0/16")...))
	if l := lines(); len(l) != 1 || !strings.Contains(l[0], "level=WARN") || !strings.Contains(l[0], "node=x1") ||
		!strings.Contains(l[0], "0.0.0.0/0 (default_route: a default route), 10.99.0.0/16 (client_network: overlaps the client network 10.99.0.0/16)") {
		t.Fatalf("log after the first refusals: %q", l)
	}
	if c := pg.countsByReason(); c["default_route"] != 1 || c["client_network"] != 1 || c["region_overlap"] != 0 || len(c) != int(numRefuseReasons) {
		t.Fatalf("counts %v", c)
	}
	// The same view again, a second later: nothing new.
	now = now.Add(time.Second)
	pg.update(vet(wireAnnouncements(t, "x1", "evil", "0.0.0.0/0", "10.99.0.0/16")...))
	if len(lines()) != 1 || pg.countsByReason()["default_route"] != 1 {
		t.Fatalf("unchanged view logged or counted again: %q %v", lines(), pg.countsByReason())
	}
	rs, since := pg.snapshot()
	if len(rs) != 2 || !since[0].Equal(time.Unix(1e9, 0)) {
		t.Fatalf("snapshot %v since %v", refusalsOf(rs), since)
	}
	// A new refusal of the same member within the minute: counted, not logged.
	now = now.Add(10 * time.Second)
	pg.update(vet(wireAnnouncements(t, "x1", "evil", "0.0.0.0/0", "10.99.0.0/16", "::/0")...))
	if len(lines()) != 1 || pg.countsByReason()["default_route"] != 2 {
		t.Fatalf("new refusal within the minute: log %q counts %v", lines(), pg.countsByReason())
	}
	// After a minute x1 is logged again; x2, and b1 and b2 whose /16 x2
	// contests, are logged at once: one line each.
	now = now.Add(time.Minute)
	pg.update(vet(append(wireAnnouncements(t, "x1", "evil", "127.0.0.0/8"), wireAnnouncements(t, "x2", "evil2", "10.2.0.0/16")...)...))
	l := lines()
	if len(l) != 5 {
		t.Fatalf("log after a minute: %q", l)
	}
	for i, node := range []string{"b1", "b2", "x1", "x2"} {
		if !strings.Contains(l[1+i], "node="+node+" ") {
			t.Fatalf("log line %d %q, want node %s", 1+i, l[1+i], node)
		}
	}
	// The refusal of 0.0.0.0/0 ended with x1's new view; it begins again.
	now = now.Add(time.Second)
	pg.update(vet(wireAnnouncements(t, "x1", "evil", "0.0.0.0/0")...))
	if c := pg.countsByReason(); c["default_route"] != 3 {
		t.Fatalf("a refusal that began again: counts %v", c)
	}
	// This gateway's own prefix contested: an error naming itself.
	now = now.Add(time.Minute)
	pg.update(vet(wireAnnouncements(t, "x1", "evil", "10.1.0.0/16")...))
	if l := lines(); !strings.Contains(strings.Join(l, "\n"), `level=ERROR msg="this gateway's own prefixes are refused by the fleet`) {
		t.Fatalf("own prefix contested: log %q", l)
	}
	// Log memory stays bounded by recent refusals.
	now = now.Add(2 * time.Minute)
	pg.update(nil)
	if len(pg.lastLog) != 0 || len(pg.refused) != 0 {
		t.Fatalf("after the refusals ended: lastLog %v refused %v", pg.lastLog, pg.refused)
	}
}

// TestRegionConflictsMatchesBruteForce: the stack walk finds exactly the
// (region, prefix) pairs that overlap a prefix of another region, as
// comparing every pair does, on random prefixes dense enough to nest.
func TestRegionConflictsMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	regions := []string{"r1", "r2", "r3"}
	withConflicts := 0
	for round := range 300 {
		byPrefix := make(map[netip.Prefix][]string)
		for range 1 + rng.IntN(40) {
			var p netip.Prefix
			if rng.IntN(4) == 0 {
				a := netip.AddrFrom16([16]byte{0xfd, 0, byte(rng.IntN(4)), byte(rng.IntN(256))})
				p = netip.PrefixFrom(a, 16+rng.IntN(17)).Masked()
			} else {
				a := netip.AddrFrom4([4]byte{10, byte(rng.IntN(16)), byte(rng.IntN(256)), 0})
				p = netip.PrefixFrom(a, 12+rng.IntN(13)).Masked()
			}
			r := regions[rng.IntN(len(regions))]
			if !slices.Contains(byPrefix[p], r) {
				byPrefix[p] = append(byPrefix[p], r)
			}
		}
		want := make(map[regionPrefix]bool)
		for p, rs := range byPrefix {
			for q, qs := range byPrefix {
				if !p.Overlaps(q) {
					continue
				}
				for _, r := range rs {
					for _, s := range qs {
						if r != s {
							want[regionPrefix{r, p}] = true
						}
					}
				}
			}
		}
		got := regionConflicts(byPrefix)
		if len(got) != len(want) {
			t.Fatalf("round %d: %d conflicts, brute force %d\n%v\n%v", round, len(got), len(want), got, want)
		}
		for k, detail := range got {
			if !want[k] || detail == "" {
				t.Fatalf("round %d: %v (%q) is no conflict by brute force", round, k, detail)
			}
		}
		pairs := 0
		for _, rs := range byPrefix {
			pairs += len(rs)
		}
		if len(got) > 0 && len(got) < pairs {
			withConflicts++ // some in conflict, not all
		}
	}
	t.Logf("%d of 300 rounds had some but not all prefixes in conflict", withConflicts)
	if withConflicts < 100 {
		t.Fatalf("only %d of 300 rounds had some but not all prefixes in conflict: the test exercises too little", withConflicts)
	}
}
