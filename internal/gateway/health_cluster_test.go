package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/health"
	"github.com/anyguard/anyguard/internal/gateway"

	"github.com/anyguard/anyguard/internal/testwait"
)

// TestStatusAndMetricsShowTheCluster: /status lists every member and
// region with its prefixes, and the metrics count members by state.
func TestStatusAndMetricsShowTheCluster(t *testing.T) {
	e, ra, rb := startTwoRegions(t)
	a1 := e.gws["a1"]
	// Every check passes on a clustered gateway too: the probe's route
	// survives the routes the cluster adds.
	testwait.Until(t, 10*time.Second, "every check of a1 to pass", func() bool {
		for _, c := range a1.Checks() {
			if err := c.Run(context.Background()); err != nil {
				return false
			}
		}
		return true
	})
	st := a1.Status()
	if len(st.Members) != 3 {
		t.Fatalf("members: %+v", st.Members)
	}
	self := 0
	for _, m := range st.Members {
		if m.Self {
			self++
			if m.Name != "a1" {
				t.Errorf("self is %q", m.Name)
			}
		}
		if m.State != "alive" || m.Address == "" || m.ConfigDigest == "" {
			t.Errorf("member %+v", m)
		}
	}
	if self != 1 {
		t.Errorf("%d members marked self", self)
	}
	if len(st.Regions) != 2 || st.Regions[0].Name != "region-a" || st.Regions[1].Name != "region-b" ||
		st.Regions[0].Members != 1 || st.Regions[1].Members != 2 ||
		!slices.Equal(st.Regions[0].Prefixes, []string{ra.prefix.String()}) ||
		!slices.Equal(st.Regions[1].Prefixes, []string{rb.prefix.String()}) {
		t.Errorf("regions: %+v", st.Regions)
	}
	m := a1.Metrics()
	if m.Members["alive"] != 3 || m.ConfigDigestMismatch != 0 {
		t.Errorf("members %v, digest mismatch %d", m.Members, m.ConfigDigestMismatch)
	}
	for _, r := range []string{"handshake", "data", "takeover", "release"} {
		if _, ok := m.OwnershipChanges[r]; !ok {
			t.Errorf("ownership changes lack reason %q: %v", r, m.OwnershipChanges)
		}
	}
}

// TestReloadRefusesHealthChanges: the health listeners are bound at
// start, so a change to health: needs a restart, like the ports.
func TestReloadRefusesHealthChanges(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	e := startGateway(t, srv)
	cfg := *e.gw.Config()
	cfg.Health.Listen = "127.0.0.1:9"
	if err := e.gw.Reload(&cfg); !errors.Is(err, gateway.ErrRestartNeeded) || !strings.Contains(err.Error(), "health") {
		t.Fatalf("reload changing health.listen: %v", err)
	}
}

// TestClockRefusedNamedInReadyz: a member whose clock runs 10 minutes
// ahead has its records refused; the advisory check "clocks" names it
// (shown by /readyz?verbose) without making this gateway unready, and the
// refusals are counted by member.
func TestClockRefusedNamedInReadyz(t *testing.T) {
	e, ra, rb := newClusterEnv(t)
	a1 := e.start(t, "a1", ra, nil, 0)
	fast := e.start(t, "fast", rb, []string{gossipAddr(a1)}, 10*time.Minute)
	testwait.Until(t, 10*time.Second, "2 members", func() bool { return len(a1.Cluster().Members()) == 2 })
	fast.Cluster().Claim(e.alice.Public(), clientEndpoint(fast), cluster.ReasonHandshake)
	var clocks, ready health.Check
	for _, c := range a1.Checks() {
		switch c.Name {
		case "clocks":
			clocks = c
		case "cluster":
			ready = c
		}
	}
	if !clocks.Advisory || clocks.Run == nil {
		t.Fatalf("no advisory clocks check: %+v", clocks)
	}
	testwait.Until(t, 5*time.Second, "the clocks check to name fast", func() bool {
		err := clocks.Run(context.Background())
		return err != nil && strings.Contains(err.Error(), "fast (10m0s ahead")
	})
	if err := ready.Run(context.Background()); err != nil {
		t.Fatalf("cluster check: %v", err)
	}
	if m := a1.Metrics(); m.ClockRefused["fast"] == 0 || m.Gossip["refused_clock"] == 0 {
		t.Fatalf("refusals not counted: %v %v", m.ClockRefused, m.Gossip)
	}
	if rec, ok := a1.Cluster().Owner(e.alice.Public()); ok && rec.Owner == "fast" {
		t.Fatal("a1 applied a record of fast's clock")
	}
}

// TestReloadForgetsRemovedClientsOwnership: a client removed by a reload
// leaves the ownership table, and a member that still has its record
// cannot bring it back.
func TestReloadForgetsRemovedClientsOwnership(t *testing.T) {
	e, ra, rb := newClusterEnv(t)
	a1 := e.start(t, "a1", ra, nil, 0)
	b1 := e.start(t, "b1", rb, []string{gossipAddr(a1)}, 0)
	testwait.Until(t, 10*time.Second, "2 members", func() bool { return len(a1.Cluster().Members()) == 2 })
	alice := e.alice.Public()
	b1.Cluster().Claim(alice, clientEndpoint(b1), cluster.ReasonHandshake)
	testwait.Until(t, 5*time.Second, "a1 to learn b1's claim", func() bool {
		rec, ok := a1.Cluster().Owner(alice)
		return ok && rec.Owner == "b1"
	})
	cfg := *a1.Config()
	cfg.Clients.Peers = nil
	if err := a1.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	if _, ok := a1.Cluster().Owner(alice); ok {
		t.Fatal("a1 still holds the record of a client removed from its configuration")
	}
	// b1 (not reloaded) claims again and gossips it: refused.
	b1.Cluster().Claim(alice, netip.MustParseAddrPort("198.51.100.9:4000"), cluster.ReasonHandshake)
	testwait.Until(t, 5*time.Second, "a1 to refuse the removed client's record", func() bool {
		return a1.Metrics().Gossip["refused_unknown_client"] > 0
	})
	if _, ok := a1.Cluster().Owner(alice); ok {
		t.Fatal("the removed client's record came back")
	}
	if n := a1.Metrics().Gossip["forgotten"]; n != 1 {
		t.Fatalf("forgotten = %d, want 1", n)
	}
}
