package cluster

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable wall clock for tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestTimestampParts(t *testing.T) {
	wall := time.Date(2026, 5, 1, 12, 0, 0, 123_456_789, time.UTC)
	ts := MakeTimestamp(wall, 7)
	if got, want := ts.Wall(), wall.Truncate(time.Millisecond); !got.Equal(want) {
		t.Errorf("Wall() = %v, want %v", got, want)
	}
	if ts.Logical() != 7 {
		t.Errorf("Logical() = %d, want 7", ts.Logical())
	}
	if got, want := ts.String(), "2026-05-01T12:00:00.123Z+7"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if MakeTimestamp(time.Unix(-5, 0), 0) != 0 {
		t.Error("time before the epoch not clamped to 0")
	}
	if got := MakeTimestamp(time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC), 0).WallMS(); got != maxWallMS {
		t.Errorf("far future not clamped: %d", got)
	}
	if !(MakeTimestamp(wall, 1) < MakeTimestamp(wall.Add(time.Millisecond), 0)) {
		t.Error("a later millisecond must sort after any logical count")
	}
}

func TestHLCMonotonic(t *testing.T) {
	clk := newFakeClock()
	h := NewHLC(clk.Now, 0)
	a := h.Now()
	b := h.Now() // same millisecond
	if !(b > a) || b.WallMS() != a.WallMS() || b.Logical() != a.Logical()+1 {
		t.Fatalf("same millisecond: %v then %v", a, b)
	}
	clk.Advance(-time.Second) // wall clock steps back
	c := h.Now()
	if !(c > b) {
		t.Fatalf("clock went back: %v then %v", b, c)
	}
	clk.Advance(2 * time.Second)
	d := h.Now()
	if d != MakeTimestamp(clk.Now(), 0) {
		t.Fatalf("after the wall clock passed the HLC: %v, want the wall time %v", d, MakeTimestamp(clk.Now(), 0))
	}
}

func TestHLCLogicalOverflowCarries(t *testing.T) {
	clk := newFakeClock()
	h := NewHLC(clk.Now, 0)
	prev := h.Now()
	for range 1 << 17 {
		ts := h.Now()
		if ts <= prev {
			t.Fatalf("not increasing: %v then %v", prev, ts)
		}
		prev = ts
	}
	if prev.WallMS() <= MakeTimestamp(clk.Now(), 0).WallMS() {
		t.Fatalf("2^17 readings in one millisecond should have carried into the wall part: %v", prev)
	}
}

func TestHLCObserve(t *testing.T) {
	clk := newFakeClock()
	h := NewHLC(clk.Now, 0)
	remote := MakeTimestamp(clk.Now().Add(30*time.Second), 9) // a peer 30 s ahead
	if err := h.Observe(remote); err != nil {
		t.Fatalf("Observe 30 s ahead: %v", err)
	}
	if ts := h.Now(); !(ts > remote) {
		t.Fatalf("Now() = %v after observing %v", ts, remote)
	}
	old := MakeTimestamp(clk.Now().Add(-time.Hour), 0)
	if err := h.Observe(old); err != nil {
		t.Fatalf("Observe an old time: %v", err)
	}
	if st := h.Stats(); st.MaxAhead != 30*time.Second || st.Rejected != 0 {
		t.Fatalf("Stats() = %+v, want MaxAhead 30s, Rejected 0", st)
	}

	last := h.Last()
	absurd := MakeTimestamp(clk.Now().Add(DefaultMaxClockAhead+time.Second), 0)
	err := h.Observe(absurd)
	if !errors.Is(err, ErrClockSkew) {
		t.Fatalf("Observe 5 min + 1 s ahead: %v, want ErrClockSkew", err)
	}
	if h.Last() != last {
		t.Fatal("a refused timestamp moved the clock")
	}
	if st := h.Stats(); st.Rejected != 1 || st.MaxAhead != DefaultMaxClockAhead+time.Second {
		t.Fatalf("Stats() = %+v", st)
	}
	h = NewHLC(clk.Now, 0) // fresh counters
	// The far future must not overflow into acceptance.
	if err := h.Observe(Timestamp(1<<64 - 1)); !errors.Is(err, ErrClockSkew) {
		t.Fatalf("Observe of the largest timestamp: %v, want ErrClockSkew", err)
	}
	if st := h.Stats(); st.MaxAhead <= 0 {
		t.Fatalf("MaxAhead overflowed: %v", st.MaxAhead)
	}
	// Exactly at the bound is still accepted.
	if err := h.Observe(MakeTimestamp(clk.Now().Add(DefaultMaxClockAhead), 0)); err != nil {
		t.Fatalf("Observe at the bound: %v", err)
	}
}

func TestHLCCustomBound(t *testing.T) {
	clk := newFakeClock()
	h := NewHLC(clk.Now, time.Second)
	if err := h.Observe(MakeTimestamp(clk.Now().Add(2*time.Second), 0)); !errors.Is(err, ErrClockSkew) {
		t.Fatalf("got %v, want ErrClockSkew", err)
	}
}

func TestHLCConcurrent(t *testing.T) {
	h := NewHLC(nil, 0)
	const workers, each = 8, 2000
	out := make([][]Timestamp, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if i%3 == 0 {
					_ = h.Observe(h.Last())
				}
				out[w] = append(out[w], h.Now())
			}
		})
	}
	wg.Wait()
	seen := make(map[Timestamp]bool)
	for _, ts := range out {
		for i, x := range ts {
			if seen[x] {
				t.Fatalf("reading %v returned twice", x)
			}
			seen[x] = true
			if i > 0 && x <= ts[i-1] {
				t.Fatalf("not increasing within a goroutine")
			}
		}
	}
}
