package admission

import (
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/internal/keys"
)

func held(sender byte, at time.Time) heldInitiation {
	h := heldInitiation{at: at.UnixNano(), from: &conn.StdNetEndpoint{}}
	h.msg[0], h.msg[4] = 1, sender
	return h
}

// TestStackOrder: newest first; initiations older than the cutoff are
// dropped and counted; a full stack gives up its oldest.
func TestStackOrder(t *testing.T) {
	now := time.Now()
	s := newStack(3)
	for i, age := range []time.Duration{4 * time.Second, 2 * time.Second, time.Second} {
		h := held(byte(i+1), now.Add(-age))
		if stale, full := s.push(&h, 0); stale != 0 || full {
			t.Fatalf("push %d: stale %d full %v", i, stale, full)
		}
	}
	h := held(4, now)
	if stale, full := s.push(&h, 0); stale != 0 || !full {
		t.Fatalf("push into a full stack: stale %d full %v", stale, full)
	}
	cutoff := now.Add(-maxWait).UnixNano()
	var got heldInitiation
	for _, want := range []byte{4, 3, 2} {
		ok, stale := s.pop(&got, cutoff)
		if !ok || stale != 0 || got.msg[4] != want {
			t.Fatalf("pop: ok %v stale %d sender %d, want %d", ok, stale, got.msg[4], want)
		}
	}
	if ok, _ := s.pop(&got, cutoff); ok || s.len() != 0 {
		t.Fatalf("popped from an empty stack (len %d)", s.len())
	}
	// 1 gave way to 4 when the stack was full; now one too old goes.
	old, fresh := held(5, now.Add(-maxWait-time.Second)), held(6, now)
	s.push(&old, 0)
	if stale, _ := s.push(&fresh, cutoff); stale != 1 || s.len() != 1 {
		t.Fatalf("push did not evict the stale one: stale %d len %d", stale, s.len())
	}
}

// TestWorkerServesRetriesFirstAndSkipsStale: of the initiations waiting,
// the worker takes the retries (they carried a cookie) newest first, then
// the first tries newest first, and drops unread those that waited longer
// than maxWait.
func TestWorkerServesRetriesFirstAndSkipsStale(t *testing.T) {
	a := New(Config{PrivateKey: keys.Key{9}})
	now := time.Now()
	for i, age := range []time.Duration{maxWait + time.Second, time.Second, 0} {
		h := held(byte(10+i), now.Add(-age))
		a.first.push(&h, 0)
	}
	r := held(20, now.Add(-2*time.Second))
	a.retry.push(&r, 0)
	var got heldInitiation
	var order []byte
	for a.next(&got) {
		order = append(order, got.msg[4])
	}
	if want := []byte{20, 12, 11}; string(order) != string(want) {
		t.Fatalf("served %v, want %v", order, want)
	}
	if n := a.stale.Load(); n != 1 {
		t.Fatalf("stale = %d, want 1", n)
	}
}

// TestUnderLoadByCount: initiations waiting in either stack count
// towards load, and load is remembered for underLoadAfter.
func TestUnderLoadByCount(t *testing.T) {
	a := New(Config{PrivateKey: keys.Key{9}})
	now := time.Now()
	for i := range underLoadQueue - 1 {
		h := held(byte(i), now)
		if i%2 == 0 {
			a.first.push(&h, 0)
		} else {
			a.retry.push(&h, 0)
		}
	}
	if a.underLoad(now) {
		t.Fatalf("under load with %d waiting", underLoadQueue-1)
	}
	h := held(0, now)
	a.retry.push(&h, 0)
	if !a.underLoad(now) {
		t.Fatalf("not under load with %d waiting", underLoadQueue)
	}
	var got heldInitiation
	for a.next(&got) {
	}
	if !a.underLoad(now.Add(underLoadAfter / 2)) {
		t.Fatal("load forgotten at once")
	}
	if a.underLoad(now.Add(underLoadAfter + time.Millisecond)) {
		t.Fatal("load remembered past underLoadAfter")
	}
}
