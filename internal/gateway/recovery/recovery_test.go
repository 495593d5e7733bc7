package recovery

import (
	"net/netip"
	"testing"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/internal/keys"
)

// TestRecoveryExpire: takeovers that waited longer than pendingTTL are
// forgotten (and no longer counted), fresh ones stay; old retry times go.
func TestRecoveryExpire(t *testing.T) {
	r := New(Config{})
	now := time.Now()
	var old, fresh keys.Key
	old[0], fresh[0] = 1, 2
	r.pending.Store(netip.MustParseAddr("10.99.0.2"), pendingClaim{client: old, reason: cluster.ReasonTakeover, at: now.Add(-pendingTTL - time.Second)})
	r.pending.Store(netip.MustParseAddr("10.99.0.3"), pendingClaim{client: fresh, reason: cluster.ReasonTakeover, at: now})
	r.pendingN.Store(2)
	r.lastTry[old] = now.Add(-2 * takeoverRetry)
	r.lastTry[fresh] = now
	r.expire(now)
	if n := r.pendingN.Load(); n != 1 {
		t.Fatalf("pending count %d, want 1", n)
	}
	if _, ok := r.pending.Load(netip.MustParseAddr("10.99.0.2")); ok {
		t.Fatal("an expired takeover is still pending")
	}
	if _, ok := r.pending.Load(netip.MustParseAddr("10.99.0.3")); !ok {
		t.Fatal("a fresh takeover was dropped")
	}
	if _, ok := r.lastTry[old]; ok || len(r.lastTry) != 1 {
		t.Fatalf("retry times after expiry: %v", r.lastTry)
	}
}
