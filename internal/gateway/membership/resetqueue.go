package membership

import (
	"sync"

	"github.com/anyguard/anyguard/internal/keys"
)

// resetQueue hands the clients whose sessions to drop to fn, in the order
// they were pushed, on one goroutine of its own. push never blocks and
// never drops a key: it runs in ownership callbacks, which may be on the
// device's receive goroutine of that very peer, and removing a peer waits
// for that goroutine. The queue grows with the clients moved away faster
// than fn drops them (32 bytes each).
type resetQueue struct {
	fn   func([]keys.Key)
	mu   sync.Mutex
	keys []keys.Key    // pushed, not yet handed to fn (mu)
	wake chan struct{} // capacity 1: keys is not empty
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// newResetQueue starts the queue's goroutine; close stops it.
func newResetQueue(fn func([]keys.Key)) *resetQueue {
	q := &resetQueue{
		fn:   fn,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go q.run()
	return q
}

// push queues k behind every key pushed before it.
func (q *resetQueue) push(k keys.Key) {
	q.mu.Lock()
	q.keys = append(q.keys, k)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// close stops the queue and waits until the call of fn in progress, if
// any, returns; keys not yet handed to fn are dropped (the gateway is
// closing: its sessions go with it). It is safe to call more than once.
func (q *resetQueue) close() {
	q.once.Do(func() { close(q.stop) })
	<-q.done
}

func (q *resetQueue) run() {
	defer close(q.done)
	for {
		select {
		case <-q.stop:
			return
		case <-q.wake:
		}
		q.mu.Lock()
		batch := q.keys
		q.keys = nil
		q.mu.Unlock()
		if len(batch) > 0 {
			q.fn(batch)
		}
	}
}
