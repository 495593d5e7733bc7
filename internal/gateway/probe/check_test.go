package probe

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestProbeCheckToleratesOneSlowRound: one failed round (a round that was
// only slow under a herd of handshakes) keeps the gateway ready; two in a
// row make it unready, as does no success for 3 intervals + 1 s.
func TestProbeCheckToleratesOneSlowRound(t *testing.T) {
	p := &Probe{interval: 2 * time.Second}
	now := time.Now()
	slow := errors.New("no echo reply within 1.5s")
	p.lastAt, p.lastOK = now, now
	p.lastAt, p.lastErr, p.failed = now, slow, 1
	if err := p.Check(context.Background()); err != nil {
		t.Fatalf("one failed round after a success: %v; want ready", err)
	}
	p.failed = 2
	if err := p.Check(context.Background()); !errors.Is(err, slow) {
		t.Fatalf("two failed rounds in a row: %v; want %v", err, slow)
	}
	p.failed, p.lastOK = 1, now.Add(-8*time.Second)
	if err := p.Check(context.Background()); !errors.Is(err, slow) {
		t.Fatalf("one failed round, last success 8 s ago: %v; want unready", err)
	}
	p.lastOK, p.failed = time.Time{}, 1
	if err := p.Check(context.Background()); !errors.Is(err, slow) {
		t.Fatalf("never succeeded: %v; want unready", err)
	}
}
