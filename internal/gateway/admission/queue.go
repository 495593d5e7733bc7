package admission

import (
	"sync"
	"time"
)

// Order of admission under a herd.
//
// A client that gets no answer sends its next initiation RekeyTimeout
// (5 s, plus up to a third of a second of jitter) after the last, with a
// new ephemeral key and sender index: a response to the older one is then
// ignored. So an initiation that waited here for seconds is worth nothing
// by the time the device answers it, and every X25519 spent on it is
// taken from initiations that could still be answered. A first-in
// first-out queue under a herd larger than the worker can clear in 5 s
// serves only such stale initiations, and no client gets in at all (the
// herd of a region failure at 2,000 clients measured ~50 s to recover).
//
// Held initiations therefore wait in stacks, newest first, and one that
// waited maxWait is dropped unread (counted "stale"): the client's own
// retry takes its place. When a stack is full the oldest gives way. Of the
// two stacks, the worker first serves retries (an initiation that arrived
// under load with a valid mac2: its client was sent a cookie reply and has
// already waited one RekeyTimeout), then first tries.

// maxWait is how long an initiation may wait for the worker: with the
// device's own queue and the way back it must reach the client before
// its retry, RekeyTimeout after it sent it.
const maxWait = 3 * time.Second

// stack holds initiations newest first; a leaf lock.
type stack struct {
	mu   sync.Mutex
	buf  []heldInitiation // a ring: oldest at tail, n of them
	tail int
	n    int
}

func newStack(size int) *stack { return &stack{buf: make([]heldInitiation, size)} }

// push adds h, evicting initiations older than cutoff (unix ns) and, when
// full, the oldest; it reports how many were evicted stale and whether
// the oldest was evicted for room. Receive goroutines; no allocation.
func (s *stack) push(h *heldInitiation, cutoff int64) (stale int, full bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stale = s.evictLocked(cutoff)
	if s.n == len(s.buf) {
		s.tail = (s.tail + 1) % len(s.buf)
		s.n--
		full = true
	}
	s.buf[(s.tail+s.n)%len(s.buf)] = *h
	s.n++
	return stale, full
}

// pop moves the newest initiation not older than cutoff into h; it
// reports whether there was one and how many it evicted stale.
func (s *stack) pop(h *heldInitiation, cutoff int64) (ok bool, stale int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stale = s.evictLocked(cutoff)
	if s.n == 0 {
		return false, stale
	}
	s.n--
	i := (s.tail + s.n) % len(s.buf)
	*h = s.buf[i]
	s.buf[i].from = nil // do not keep the endpoint alive
	return true, stale
}

func (s *stack) evictLocked(cutoff int64) int {
	stale := 0
	for s.n > 0 && s.buf[s.tail].at < cutoff {
		s.buf[s.tail].from = nil
		s.tail = (s.tail + 1) % len(s.buf)
		s.n--
		stale++
	}
	return stale
}

// len returns the initiations held.
func (s *stack) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
