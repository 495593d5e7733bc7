package membership

import (
	"encoding/binary"
	"testing"
	"testing/synctest"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/internal/gateway/admission"
	"github.com/anyguard/anyguard/internal/keys"
)

func resetKey(i int) keys.Key {
	var k keys.Key
	binary.BigEndian.PutUint64(k[:], uint64(i))
	return k
}

// TestResetQueueOrderWhileBusy pushes more keys than the channel the
// queue replaced could hold (4096), while the consumer is stuck in its
// first call: every push returns at once, and the consumer then sees every
// key exactly once, in the order pushed, on one goroutine.
func TestResetQueueOrderWhileBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 10_000
		release := make(chan struct{})
		var got []keys.Key
		calls := 0
		q := newResetQueue(func(ks []keys.Key) {
			calls++
			if calls == 1 {
				<-release
			}
			got = append(got, ks...) // one goroutine: no lock needed, -race checks it
		})
		q.push(resetKey(0))
		synctest.Wait() // the consumer holds key 0 and waits
		for i := 1; i < n; i++ {
			q.push(resetKey(i))
		}
		close(release)
		synctest.Wait()
		q.close()
		if len(got) != n {
			t.Fatalf("consumer saw %d keys, want %d", len(got), n)
		}
		for i, k := range got {
			if want := resetKey(i); k != want {
				t.Fatalf("key %d out of order: got %x, want %x", i, k[:8], want[:8])
			}
		}
		if calls < 2 {
			t.Fatalf("consumer called %d times, want the keys pushed while it was busy in a later call", calls)
		}
	})
}

// TestResetQueueCloseWaits: close returns only after the consumer's call
// in progress returns, and the queue's goroutine has exited (synctest
// fails a test whose bubble still has goroutines blocked at its end).
func TestResetQueueCloseWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		q := newResetQueue(func([]keys.Key) { <-release })
		q.push(resetKey(1))
		synctest.Wait()
		closed := make(chan struct{})
		go func() {
			q.close()
			close(closed)
		}()
		synctest.Wait()
		select {
		case <-closed:
			t.Fatal("close returned while the consumer was still running")
		default:
		}
		close(release)
		synctest.Wait()
		select {
		case <-closed:
		default:
			t.Fatal("close did not return after the consumer did")
		}
		q.close()           // again: no panic, returns at once
		q.push(resetKey(2)) // after close: ignored, no panic, no block
	})
}

type ownerMap map[keys.Key]string

func (m ownerMap) Get(k keys.Key) (cluster.Record, bool) {
	o, ok := m[k]
	return cluster.Record{Client: k, Owner: o}, ok
}

type removed struct{ ks []keys.Key }

func (r *removed) Remove(ks []keys.Key, reason admission.Reason) {
	if reason != admission.RemovedMoved {
		panic("reason " + string(reason))
	}
	r.ks = append(r.ks, ks...)
}

// TestResetSparesClientsBack: a client that moved away and came back
// before its queued reset ran keeps its peer (the new session); the
// others lose theirs.
func TestResetSparesClientsBack(t *testing.T) {
	var rm removed
	cp := &Part{self: "a", peers: &rm}
	away, back, unknown := resetKey(1), resetKey(2), resetKey(3)
	cp.dropMoved(ownerMap{away: "b", back: "a"}, []keys.Key{away, back, unknown})
	if len(rm.ks) != 2 || rm.ks[0] != away || rm.ks[1] != unknown {
		t.Errorf("removed %v, want the client now owned by b and the one no record names", rm.ks)
	}
	rm.ks = nil
	cp.dropMoved(ownerMap{back: "a"}, []keys.Key{back})
	if len(rm.ks) != 0 {
		t.Errorf("removed %v for a client owned here again", rm.ks)
	}
}
