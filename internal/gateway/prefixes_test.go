package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/health"
	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/keys"

	"github.com/anyguard/anyguard/internal/testwait"
)

// insider joins the cluster of e as an insider holding the gossip key
// would: its own code, any metadata it likes, nothing of our validation.
func insider(t *testing.T, e *clusterEnv, join string, region string, prefixes ...string) (*cluster.Cluster, netip.Addr) {
	t.Helper()
	bb, _ := keys.Generate()
	addr := netip.MustParseAddr("100.64.77.77")
	meta := cluster.Meta{
		Region: region, State: cluster.StateReady,
		BackboneKey: bb.Public(), BackboneAddr: addr,
		BackboneEndpoint: netip.MustParseAddrPort("127.0.0.1:9"), // loopback discard: nothing leaves the host
	}
	for _, p := range prefixes {
		meta.Prefixes = append(meta.Prefixes, netip.MustParsePrefix(p))
	}
	c, err := cluster.New(cluster.Config{
		Name: "x1", Bind: netip.MustParseAddrPort("127.0.0.1:0"), Join: []string{join},
		SecretKey: e.secret[:], Meta: meta, Clients: []keys.Key{e.alice.Public()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, addr
}

// getStatus fetches /status over HTTP from the admin listener.
func getStatus(t *testing.T, srv *health.Server) health.Status {
	t.Helper()
	resp, err := http.Get("http://" + srv.AdminAddr().String() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st health.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

type refusedKey struct{ member, prefix, reason string }

func refusedKeys(st health.Status) []refusedKey {
	var out []refusedKey
	for _, r := range st.RefusedPrefixes {
		out = append(out, refusedKey{r.Member, r.Prefix, r.Reason})
	}
	return out
}

// TestInsiderCannotHijackPrefixes: an insider holding the gossip key joins
// a fleet of region A (a1) and region B (b1, b2) and announces a default
// route, the client network, a client's /32 and a more specific of region
// B's /16. No gateway routes any of it to the insider; /status, the
// metrics and the counters name it; region B's contested /16 is routed by
// nobody (both sides refused) until the insider announces a prefix of its
// own, when everything is routed again.
func TestInsiderCannotHijackPrefixes(t *testing.T) {
	e, _, rb := startTwoRegions(t)
	a1 := e.gws["a1"]
	state, srv, err := a1.ServeHealth(gateway.HealthOptions{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer state.Close()
	defer srv.Close()
	if st := getStatus(t, srv); st.RefusedPrefixes == nil || len(st.RefusedPrefixes) != 0 {
		t.Fatalf("well-behaved fleet: refused_prefixes %+v, want []", st.RefusedPrefixes)
	}

	x1, xAddr := insider(t, e, gossipAddr(a1), "evil", "0.0.0.0/0", "10.99.0.0/16", "10.99.0.2/32", "10.2.5.0/24")
	want := []refusedKey{
		{"b1", "10.2.0.0/16", "region_overlap"},
		{"b2", "10.2.0.0/16", "region_overlap"},
		{"x1", "0.0.0.0/0", "default_route"},
		{"x1", "10.2.5.0/24", "region_overlap"},
		{"x1", "10.99.0.0/16", "client_network"},
		{"x1", "10.99.0.2/32", "client_network"},
	}
	for name, g := range e.gws {
		testwait.Until(t, 10*time.Second, name+" to refuse the insider's prefixes", func() bool {
			got := refusedKeys(g.Status())
			// b1 and b2 see themselves as contested too; the set is the same.
			return slices.Equal(got, want)
		})
	}
	st := getStatus(t, srv)
	if got := refusedKeys(st); !slices.Equal(got, want) {
		t.Fatalf("/status refused_prefixes %v, want %v", got, want)
	}
	for _, r := range st.RefusedPrefixes {
		if r.Detail == "" || r.Since.IsZero() || (r.Member == "x1" && r.Region != "evil") {
			t.Errorf("refused prefix %+v lacks detail, since or region", r)
		}
	}
	for _, r := range st.Regions {
		if r.Name == "evil" && len(r.Prefixes) != 0 || r.Name == "region-b" && len(r.Prefixes) != 0 {
			t.Errorf("/status region %s lists refused prefixes %v", r.Name, r.Prefixes)
		}
	}
	m := a1.Metrics()
	if m.PrefixRefusals["default_route"] != 1 || m.PrefixRefusals["client_network"] != 2 || m.PrefixRefusals["region_overlap"] != 3 || m.RefusedPrefixes != 6 {
		t.Errorf("metrics: refusals %v, refused now %d", m.PrefixRefusals, m.RefusedPrefixes)
	}
	for name, g := range e.gws {
		for _, dst := range []string{"10.99.0.2", "10.99.0.200", "10.2.5.1", "10.2.0.10", "192.0.2.1"} {
			hop, ok := g.Router().LookupHop(netip.MustParseAddr(dst))
			if ok && hop.Via == xAddr {
				t.Errorf("%s routes %s to the insider", name, dst)
			}
			if name == "a1" && dst == "10.2.0.10" && ok && hop.Via.IsValid() {
				t.Errorf("a1 routes contested region B's %s over the backbone to %s", dst, hop.Via)
			}
		}
		if hop, ok := g.Router().LookupHop(netip.MustParseAddr("10.99.0.2")); !ok || hop.Via.IsValid() {
			t.Errorf("%s: alice's address is no longer routed to the client device: %+v, %v", name, hop, ok)
		}
	}

	// The insider now announces a network of its own: it is routed, and
	// region B's /16 is routed to region B again.
	meta := x1.Meta()
	meta.Prefixes = []netip.Prefix{netip.MustParsePrefix("10.3.0.0/16")}
	if err := x1.SetMeta(meta); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "a1 to route 10.3.0.0/16 to x1 and region B's prefix to region B", func() bool {
		h3, ok3 := a1.Router().LookupHop(netip.MustParseAddr("10.3.0.1"))
		sb := servingGateway(t, e, rb)
		return ok3 && h3.Via == xAddr && (sb == "b1" || sb == "b2") && len(a1.Status().RefusedPrefixes) == 0
	})
	if m := a1.Metrics(); m.RefusedPrefixes != 0 || m.PrefixRefusals["default_route"] != 1 {
		t.Errorf("after the insider's new announcement: refusals %v, refused now %d", m.PrefixRefusals, m.RefusedPrefixes)
	}
}
