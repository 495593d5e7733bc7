package gateway_test

import (
	"slices"
	"testing"
)

// TestStatusAndMetricsShowTheCluster: /status lists every member and
// region with its prefixes, and the metrics count members by state.
func TestStatusAndMetricsShowTheCluster(t *testing.T) {
	e, ra, rb := startTwoRegions(t)
	a1 := e.gws["a1"]
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
}
