package cluster

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// Timestamp is a hybrid logical clock reading: wall-clock milliseconds since
// the Unix epoch in the high 48 bits and a logical counter in the low 16.
// Timestamps compare as plain integers. The zero Timestamp is the epoch and
// sorts before every reading a running clock produces.
type Timestamp uint64

const (
	logicalBits = 16
	maxWallMS   = 1<<48 - 1
)

// MakeTimestamp returns the Timestamp for wall-clock time t (rounded down to
// the millisecond and clamped to the representable range, 1970 to about
// 10889) with logical counter l.
func MakeTimestamp(t time.Time, l uint16) Timestamp {
	return Timestamp(clampMS(t.UnixMilli())<<logicalBits | uint64(l))
}

func clampMS(ms int64) uint64 {
	switch {
	case ms < 0:
		return 0
	case ms > maxWallMS:
		return maxWallMS
	}
	return uint64(ms)
}

// WallMS returns the wall-clock part in milliseconds since the Unix epoch.
func (ts Timestamp) WallMS() int64 { return int64(ts >> logicalBits) }

// Wall returns the wall-clock part as a time.Time in UTC.
func (ts Timestamp) Wall() time.Time { return time.UnixMilli(ts.WallMS()).UTC() }

// Logical returns the logical counter.
func (ts Timestamp) Logical() uint16 { return uint16(ts) }

// String formats ts as RFC 3339 with milliseconds and the logical counter,
// for example "2026-05-01T12:00:00.123Z+4".
func (ts Timestamp) String() string {
	return fmt.Sprintf("%s+%d", ts.Wall().Format("2006-01-02T15:04:05.000Z07:00"), ts.Logical())
}

// DefaultMaxClockAhead is how far ahead of the local wall clock a remote
// timestamp may be before Observe rejects it. It is deliberately generous:
// gateways are expected to run NTP but must keep working with clocks tens of
// seconds apart, and a record from a peer whose clock is 30 s ahead has to be
// applied for the cluster to converge. Only absurd readings (a clock set to
// the wrong day, corrupted state) are refused, so that one broken node cannot
// drag every other node's clock into the future.
const DefaultMaxClockAhead = 5 * time.Minute

// ErrClockSkew is returned (wrapped) by Observe, and so by Table.Apply, for
// a timestamp further ahead of the local wall clock than the clock's bound.
var ErrClockSkew = errors.New("timestamp too far ahead of the local clock")

// HLC is a hybrid logical clock (Kulkarni et al., 2014). Its readings never
// go backwards, stay close to the local wall clock, and after Observe(ts)
// every reading is greater than ts, whatever the wall clocks say. It is safe
// for concurrent use.
type HLC struct {
	now      func() time.Time
	maxAhead time.Duration

	mu       sync.Mutex
	last     Timestamp
	maxSeen  time.Duration // largest remote lead over the local wall clock
	rejected uint64
}

// NewHLC returns a clock reading wall time from now (time.Now when nil) that
// rejects remote timestamps more than maxAhead in its future
// (DefaultMaxClockAhead when maxAhead <= 0).
func NewHLC(now func() time.Time, maxAhead time.Duration) *HLC {
	if now == nil {
		now = time.Now
	}
	if maxAhead <= 0 {
		maxAhead = DefaultMaxClockAhead
	}
	return &HLC{now: now, maxAhead: maxAhead}
}

// Now returns a reading greater than every reading returned before and
// every timestamp accepted by Observe.
func (h *HLC) Now() Timestamp {
	pt := MakeTimestamp(h.now(), 0)
	h.mu.Lock()
	defer h.mu.Unlock()
	if pt > h.last {
		h.last = pt
	} else {
		// Same or earlier millisecond: count up. A logical overflow
		// carries into the wall part, which is harmless: it only runs
		// ahead of the wall clock until the wall clock catches up.
		h.last++
	}
	return h.last
}

// Last returns the latest reading or accepted remote timestamp without
// advancing the clock.
func (h *HLC) Last() Timestamp {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// Observe merges a remote timestamp into the clock so that later readings
// are greater than ts. A timestamp more than the clock's bound ahead of the
// local wall clock is refused with ErrClockSkew and leaves the clock alone.
// Observe records the largest lead of a remote timestamp over the local wall
// clock seen so far (see Stats).
func (h *HLC) Observe(ts Timestamp) error {
	// In milliseconds: a timestamp thousands of years ahead would
	// overflow a time.Duration.
	leadMS := ts.WallMS() - int64(clampMS(h.now().UnixMilli()))
	lead := time.Duration(min(leadMS, math.MaxInt64/int64(time.Millisecond))) * time.Millisecond
	h.mu.Lock()
	defer h.mu.Unlock()
	if lead > h.maxSeen {
		h.maxSeen = lead
	}
	if leadMS > h.maxAhead.Milliseconds() {
		h.rejected++
		return fmt.Errorf("observe %s: %w: %v ahead, bound %v", ts, ErrClockSkew, lead, h.maxAhead)
	}
	if ts > h.last {
		h.last = ts
	}
	return nil
}

// HLCStats are a clock's counters, for metrics.
type HLCStats struct {
	// MaxAhead is the largest amount by which a remote timestamp has been
	// ahead of the local wall clock since the clock was created (zero if
	// none was). A large value on one node means its own wall clock is
	// behind the cluster's or another node's clock is ahead.
	MaxAhead time.Duration
	// Rejected counts timestamps refused with ErrClockSkew.
	Rejected uint64
}

// Stats returns the clock's counters.
func (h *HLC) Stats() HLCStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return HLCStats{MaxAhead: h.maxSeen, Rejected: h.rejected}
}
