package gateway

import (
	"encoding/binary"
	"testing"
	"testing/synctest"

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
