package gateway_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/testwait"
)

// TestSlowTakeoverConverges: on a loaded machine a takeover's handshake
// can take longer than the takeover's retry interval (1 s) from the
// gateway's initiation to the client's response. The client keeps
// sending over its old session meanwhile, and each of those packets asks
// the new gateway to take the client over again: a retry must not cancel
// the handshake in flight, or no takeover ever completes while the load
// lasts and the client's flow sits on a gateway that the cluster does not
// name as its owner (issue 13's "owner on another gateway"). Here every
// handshake response of the client arrives 1.5 s late; ownership must
// still follow the flow in a few seconds. (Restarting the takeover each
// second, ownership did not converge within 40 s: the restarts also
// cross the client's own re-handshake 15 s after the move.)
func TestSlowTakeoverConverges(t *testing.T) {
	e, ra, rb := startTwoRegions(t)
	relay, client := aliceViaRelayOnA1(t, e, ra, rb, netip.MustParsePrefix("10.99.0.0/16"))

	// The client sends every 100 ms, as a client with traffic does.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := 1; ctx.Err() == nil; seq++ {
			start := time.Now()
			client.Ping(ctx, netip.MustParseAddr("10.99.0.1"), seq, 100*time.Millisecond)
			if d := 100*time.Millisecond - time.Since(start); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
		}
	}()

	relay.slowResponses(1500 * time.Millisecond)
	moved := time.Now()
	relay.move(clientEndpoint(e.gws["b2"]))
	testwait.Until(t, 8*time.Second, "every gateway to agree that b2 owns alice", func() bool { return ownersAgree(e, "b2") })
	t.Logf("owner followed the flow %s after the move, with handshake responses 1.5 s late", time.Since(moved).Round(time.Millisecond))
	if c := e.gws["b2"].Metrics().Claims; c["takeover_claimed"] != 1 {
		t.Errorf("b2's claims: %v, want one takeover", c)
	}
	mustFetch(t, client, rb)
}
