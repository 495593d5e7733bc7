package gateway_test

import (
	"testing"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/internal/testwait"
)

// TestTakeoverClaimsAtResponse: a load balancer moves a client's flow to
// a gateway without its session. The gateway initiates a handshake and
// must claim the client as soon as its device accepts the client's
// response (which needs the client's key and answers the gateway's fresh
// initiation), not one round trip later when the client's data first
// decrypts there: under load each round trip costs what the queues on
// the way hold. Here the relay drops every data packet of the client
// after its response, so only the response can claim it.
func TestTakeoverClaimsAtResponse(t *testing.T) {
	e, ra, rb := startTwoRegions(t)
	b2 := e.gws["b2"]
	relay, client := aliceViaRelayOnA1(t, e, ra, rb)

	relay.holdData.Store(true)
	relay.move(clientEndpoint(b2))
	moved := time.Now()
	// The client's packets after the move start the takeover; they and
	// all its data after its response are lost.
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			default:
				fetchWithin(client, rb.service, 200*time.Millisecond)
			}
		}
	}()
	testwait.Until(t, 5*time.Second, "b2 to claim alice", func() bool {
		rec, ok := b2.Cluster().Owner(e.alice.Public())
		return ok && rec.Owner == "b2"
	})
	t.Logf("claimed %s after the move", time.Since(moved).Round(time.Millisecond))
	if !relay.responded.Load() {
		t.Fatal("b2 claimed alice without her handshake response")
	}
	rec, _ := b2.Cluster().Owner(e.alice.Public())
	if rec.Reason != cluster.ReasonTakeover {
		t.Fatalf("b2's record: %+v", rec)
	}
	if c := b2.Metrics().Claims; c["takeover_claimed"] != 1 {
		t.Fatalf("b2's claims: %v", c)
	}
	testwait.Until(t, 5*time.Second, "every gateway to agree that b2 owns alice", func() bool { return ownersAgree(e, "b2") })

	// With data flowing again, the client reaches both regions through b2.
	relay.holdData.Store(false)
	mustFetch(t, client, rb)
	mustFetch(t, client, ra)
}
