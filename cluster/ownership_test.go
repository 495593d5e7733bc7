package cluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anyguard/anyguard/wgkey"
)

func newTestTable(t testing.TB, name string, now func() time.Time, opts TableOptions) *Table {
	t.Helper()
	tab, err := NewTable(name, NewHLC(now, 0), opts)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func ep(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), uint16(40000+i))
}

// deliver applies r to every table, failing on an error.
func deliver(t *testing.T, r Record, to ...*Table) {
	t.Helper()
	for _, tab := range to {
		if _, err := tab.Apply(r); err != nil {
			t.Fatalf("%s: Apply: %v", tab.Self(), err)
		}
	}
}

func owner(t *testing.T, tab *Table, c wgkey.Key) string {
	t.Helper()
	r, ok := tab.Get(c)
	if !ok {
		t.Fatalf("%s has no record", tab.Self())
	}
	return r.Owner
}

func TestNewTableBadName(t *testing.T) {
	for _, name := range []string{"", "a b", "gw/1", string(make([]byte, 64))} {
		if _, err := NewTable(name, nil, TableOptions{}); !errors.Is(err, ErrBadNodeName) {
			t.Errorf("NewTable(%q): %v, want ErrBadNodeName", name, err)
		}
	}
}

func TestCompareOrder(t *testing.T) {
	base := Record{Client: testKey(1), Owner: "b", Version: 5, Time: testTime}
	later := func(f func(*Record)) Record { r := base; f(&r); return r }
	for _, c := range []struct {
		name string
		r    Record
	}{
		// A higher version wins even with a much older time.
		{"version", later(func(r *Record) { r.Version = 6; r.Time = 1; r.Owner = "a" })},
		{"time", later(func(r *Record) { r.Time++; r.Owner = "a" })},
		{"owner", later(func(r *Record) { r.Owner = "c" })},
		{"endpoint", later(func(r *Record) { r.Endpoint = ep(1) })},
		{"reason", later(func(r *Record) { r.Reason = ReasonData })},
	} {
		if !c.r.Newer(base) || base.Newer(c.r) || c.r.Compare(base) != 1 || base.Compare(c.r) != -1 {
			t.Errorf("%s: want %+v newer than %+v", c.name, c.r, base)
		}
	}
	if base.Newer(base) || base.Compare(base) != 0 {
		t.Error("a record is newer than itself")
	}
}

func TestClaim(t *testing.T) {
	clk := newFakeClock()
	var changes []change
	tab := newTestTable(t, "gw-a", clk.Now, TableOptions{OnChange: func(old, new Record) { changes = append(changes, change{old, new}) }})
	c := testKey(1)

	r, ok := tab.Claim(c, ep(1), ReasonHandshake)
	if !ok || r.Owner != "gw-a" || r.Version != 1 || r.Endpoint != ep(1) || r.Reason != ReasonHandshake || r.Client != c {
		t.Fatalf("first claim: %+v, %v", r, ok)
	}
	if got, _ := tab.Get(c); got != r {
		t.Fatalf("Get = %+v, want %+v", got, r)
	}
	if r2, ok := tab.Claim(c, ep(1), ReasonData); ok || r2 != r {
		t.Fatalf("claim again at the same endpoint: %+v, %v; want no-op", r2, ok)
	}
	if r2, ok := tab.Claim(c, netip.AddrPort{}, ReasonData); ok || r2 != r {
		t.Fatalf("claim with unknown endpoint: %+v, %v; want no-op", r2, ok)
	}
	r3, ok := tab.Claim(c, ep(2), ReasonData)
	if !ok || r3.Version != 2 || r3.Endpoint != ep(2) || !(r3.Time > r.Time) {
		t.Fatalf("endpoint refresh: %+v, %v", r3, ok)
	}
	zoned := netip.MustParseAddrPort("[fe80::1%eth0]:51820")
	r4, ok := tab.Claim(c, zoned, ReasonData)
	if !ok || r4.Endpoint != netip.MustParseAddrPort("[fe80::1]:51820") {
		t.Fatalf("zoned endpoint: %+v, %v; want the zone stripped", r4, ok)
	}
	if _, ok := tab.Claim(wgkey.Key{}, ep(1), ReasonData); ok {
		t.Fatal("claimed the zero key")
	}
	if len(changes) != 3 || changes[0].old.Version != 0 || changes[0].old.Client != c || changes[0].new != r || changes[1].old != r || changes[1].new != r3 {
		t.Fatalf("OnChange calls: %+v", changes)
	}
	st := tab.Stats()
	if st.Claims != 3 || st.Clients != 1 || st.Owned != 1 || st.Tombstones != 0 {
		t.Fatalf("Stats = %+v", st)
	}
}

// A claim made after seeing the previous record wins everywhere, even when
// the claimer's clock is a minute behind the previous claimer's.
func TestClaimAfterObservingWins(t *testing.T) {
	clk := newFakeClock()
	skewed := func(d time.Duration) func() time.Time { return func() time.Time { return clk.Now().Add(d) } }
	opts := TableOptions{FlapLimit: -1}
	ahead := newTestTable(t, "ahead", skewed(30*time.Second), opts)
	behind := newTestTable(t, "behind", skewed(-30*time.Second), opts)
	other := newTestTable(t, "other", clk.Now, opts)
	c := testKey(1)

	ra, _ := ahead.Claim(c, ep(1), ReasonHandshake)
	deliver(t, ra, behind, other)
	clk.Advance(time.Second)
	rb, ok := behind.Claim(c, ep(2), ReasonHandshake)
	if !ok || rb.Version != ra.Version+1 {
		t.Fatalf("claim by the node behind: %+v, %v", rb, ok)
	}
	deliver(t, rb, ahead, other)
	// And the earlier record arriving late (or again) changes nothing.
	deliver(t, ra, ahead, behind, other)
	for _, tab := range []*Table{ahead, behind, other} {
		if o := owner(t, tab, c); o != "behind" {
			t.Fatalf("%s: owner %q, want behind", tab.Self(), o)
		}
	}

	// Even a record whose time is far older still wins by version: the
	// version, not the clock, orders claims that saw each other.
	old := rb
	old.Owner, old.Version, old.Time = "other", rb.Version+1, MakeTimestamp(clk.Now().Add(-time.Hour), 0)
	deliver(t, old, ahead, behind)
	if o := owner(t, ahead, c); o != "other" {
		t.Fatalf("higher version with an older time lost: owner %q", o)
	}
}

// Concurrent claims with the same version are ordered by HLC time, then by
// owner, identically everywhere.
func TestConcurrentClaims(t *testing.T) {
	clk := newFakeClock()
	a := newTestTable(t, "a", clk.Now, TableOptions{})
	b := newTestTable(t, "b", func() time.Time { return clk.Now().Add(-20 * time.Second) }, TableOptions{})
	c := testKey(1)
	ra, _ := a.Claim(c, ep(1), ReasonHandshake)
	rb, _ := b.Claim(c, ep(2), ReasonHandshake)
	if ra.Version != rb.Version {
		t.Fatal("want equal versions")
	}
	deliver(t, rb, a)
	deliver(t, ra, b)
	if owner(t, a, c) != "a" || owner(t, b, c) != "a" {
		t.Fatalf("want a (later HLC) everywhere, got %q and %q", owner(t, a, c), owner(t, b, c))
	}
	// Same version and time: the owner name decides.
	x := Record{Client: testKey(2), Owner: "x", Version: 3, Time: testTime}
	y := x
	y.Owner = "y"
	deliver(t, y, a)
	deliver(t, x, a)
	deliver(t, x, b)
	deliver(t, y, b)
	if owner(t, a, testKey(2)) != "y" || owner(t, b, testKey(2)) != "y" {
		t.Fatal("tie not broken by owner")
	}
}

func TestReleaseTombstone(t *testing.T) {
	clk := newFakeClock()
	a := newTestTable(t, "a", clk.Now, TableOptions{})
	b := newTestTable(t, "b", clk.Now, TableOptions{})
	stale := newTestTable(t, "stale", clk.Now, TableOptions{})
	c := testKey(1)

	if _, ok := a.Release(c); ok {
		t.Fatal("released an unknown client")
	}
	r1, _ := a.Claim(c, ep(1), ReasonHandshake)
	deliver(t, r1, b, stale)
	if _, ok := b.Release(c); ok {
		t.Fatal("a node released a client it does not own")
	}
	r2, ok := a.Release(c)
	if !ok || !r2.Released() || r2.Version != r1.Version+1 || r2.Reason != ReasonRelease || r2.Endpoint != ep(1) {
		t.Fatalf("Release: %+v, %v", r2, ok)
	}
	if _, ok := a.Release(c); ok {
		t.Fatal("released twice")
	}
	deliver(t, r2, b)

	// The stale replica missed the release and offers the old claim back.
	if applied, _ := b.Apply(r1); applied {
		t.Fatal("old claim applied over the tombstone")
	}
	if _, err := a.Merge(stale.Snapshot()); err != nil {
		t.Fatal(err)
	}
	if !owner2(a, c).Released() || !owner2(b, c).Released() {
		t.Fatal("old owner resurrected")
	}
	// Anti-entropy the other way brings the stale replica up to date.
	changed, _ := stale.Merge(b.Snapshot())
	if len(changed) != 1 || changed[0] != r2 || !owner2(stale, c).Released() {
		t.Fatalf("stale replica after merge: %+v", changed)
	}
	// A new claim after the release gets a higher version.
	r3, ok := b.Claim(c, ep(2), ReasonHandshake)
	if !ok || r3.Version != r2.Version+1 {
		t.Fatalf("claim after release: %+v", r3)
	}
	if st := a.Stats(); st.Tombstones != 1 || st.Owned != 0 || st.Releases != 1 {
		t.Fatalf("Stats = %+v", st)
	}
}

func owner2(tab *Table, c wgkey.Key) Record { r, _ := tab.Get(c); return r }

func TestGC(t *testing.T) {
	clk := newFakeClock()
	tab := newTestTable(t, "a", clk.Now, TableOptions{TombstoneTTL: time.Hour})
	old, fresh, live := testKey(1), testKey(2), testKey(3)
	tab.Claim(old, ep(1), ReasonHandshake)
	tab.Release(old)
	tab.Claim(live, ep(3), ReasonHandshake) // owned records are never collected
	clk.Advance(30 * time.Minute)
	tab.Claim(fresh, ep(2), ReasonHandshake)
	tab.Release(fresh)
	clk.Advance(31 * time.Minute)

	if n := tab.GC(MakeTimestamp(clk.Now(), 0)); n != 1 {
		t.Fatalf("GC removed %d, want 1", n)
	}
	if _, ok := tab.Get(old); ok {
		t.Fatal("old tombstone kept")
	}
	if r, ok := tab.Get(fresh); !ok || !r.Released() {
		t.Fatal("fresh tombstone removed")
	}
	if _, ok := tab.Get(live); !ok {
		t.Fatal("live record removed")
	}
	clk.Advance(24 * time.Hour)
	if n := tab.GC(MakeTimestamp(clk.Now(), 0)); n != 1 {
		t.Fatalf("second GC removed %d, want 1", n)
	}
	if st := tab.Stats(); st.Clients != 1 || st.Tombstones != 0 || st.Collected != 2 || st.Owned != 1 {
		t.Fatalf("Stats = %+v", st)
	}

	// A peer that has not collected yet offers an expired tombstone back:
	// it is ignored, but a newer record of the same client is not.
	expired := Record{Client: old, Version: 9, Time: MakeTimestamp(clk.Now().Add(-2*time.Hour), 0)}
	tab.clockNow() // make sure the HLC has a current reading
	if applied, err := tab.Apply(expired); applied || err != nil {
		t.Fatalf("expired tombstone: %v, %v", applied, err)
	}
	expired.Owner = "b"
	if applied, _ := tab.Apply(expired); !applied {
		t.Fatal("old owned record ignored")
	}
}

// clockNow is a test helper reading the table's clock.
func (t *Table) clockNow() Timestamp { return t.hlc.Now() }

func TestApplySkew(t *testing.T) {
	clk := newFakeClock()
	tab := newTestTable(t, "a", clk.Now, TableOptions{})
	r := Record{Client: testKey(1), Owner: "b", Version: 1, Time: MakeTimestamp(clk.Now().Add(30*time.Second), 0)}
	if applied, err := tab.Apply(r); !applied || err != nil {
		t.Fatalf("record 30 s ahead: %v, %v", applied, err)
	}
	r.Version, r.Time = 2, MakeTimestamp(clk.Now().Add(6*time.Minute), 0)
	if applied, err := tab.Apply(r); applied || !errors.Is(err, ErrClockSkew) {
		t.Fatalf("record 6 min ahead: %v, %v; want ErrClockSkew", applied, err)
	}
	if _, err := tab.Merge([]Record{r}); !errors.Is(err, ErrClockSkew) {
		t.Fatalf("Merge: %v", err)
	}
	if got := owner2(tab, testKey(1)); got.Version != 1 {
		t.Fatalf("refused record applied: %+v", got)
	}
	if st := tab.Stats(); st.RejectedSkew != 2 || st.Applied != 1 {
		t.Fatalf("Stats = %+v", st)
	}
	if hs := tab.hlc.Stats(); hs.MaxAhead != 6*time.Minute || hs.Rejected != 2 {
		t.Fatalf("HLC stats = %+v", hs)
	}
	// Once the local clock catches up, the same record is accepted.
	clk.Advance(2 * time.Minute)
	if applied, err := tab.Apply(r); !applied || err != nil {
		t.Fatalf("after the clock caught up: %v, %v", applied, err)
	}
}

func TestApplyInvalid(t *testing.T) {
	tab := newTestTable(t, "a", nil, TableOptions{})
	for _, r := range []Record{
		{Owner: "b", Version: 1},
		{Client: testKey(1), Owner: "b"},
		{Client: testKey(1), Owner: "b c", Version: 1},
	} {
		if applied, err := tab.Apply(r); applied || err == nil {
			t.Errorf("Apply(%+v) = %v, %v", r, applied, err)
		}
	}
	changed, err := tab.Merge([]Record{{Client: testKey(1), Owner: "b", Version: 1, Time: testTime}, {}})
	if len(changed) != 1 || !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("Merge: %v, %v", changed, err)
	}
	if st := tab.Stats(); st.RejectedInvalid != 4 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestDamping(t *testing.T) {
	clk := newFakeClock()
	var tabs []*Table
	for _, n := range []string{"a", "b", "c"} {
		tabs = append(tabs, newTestTable(t, n, clk.Now, TableOptions{}))
	}
	a, b, c := tabs[0], tabs[1], tabs[2]
	cl := testKey(1)
	claim := func(tab *Table, i int) bool {
		r, ok := tab.Claim(cl, ep(i), ReasonData)
		if ok {
			deliver(t, r, tabs...)
		}
		return ok
	}
	claim(a, 0)

	// Ping-pong between a and b at 10 Hz for 10 s.
	changes := 0
	for i := range 100 {
		clk.Advance(100 * time.Millisecond)
		before := owner(t, a, cl)
		claim([]*Table{b, a}[i%2], i)
		if owner(t, a, cl) != before {
			changes++
		}
	}
	if lim := 2 * DefaultFlapLimit; changes > lim {
		t.Fatalf("%d owner changes in a 10 s flood, want at most %d", changes, lim)
	}
	if a.Stats().Damped+b.Stats().Damped == 0 {
		t.Fatal("nothing damped")
	}
	t.Logf("flood of 100 claims: %d owner changes, damped %d+%d", changes, a.Stats().Damped, b.Stats().Damped)

	// A genuine move to a gateway that was not fighting applies at once.
	if !claim(c, 200) {
		t.Fatal("genuine move to c damped")
	}
	for _, tab := range tabs {
		if o := owner(t, tab, cl); o != "c" {
			t.Fatalf("%s: owner %q, want c", tab.Self(), o)
		}
	}
	// b is held down, but at most for HoldDown.
	if claim(b, 201) {
		t.Fatal("b not held down")
	}
	clk.Advance(DefaultHoldDown)
	if !claim(b, 202) {
		t.Fatal("b still damped after the hold-down")
	}
	// Claiming a released client is never damped.
	if _, ok := b.Release(cl); !ok {
		t.Fatal("release")
	}
	r, _ := b.Get(cl)
	deliver(t, r, tabs...)
	if !claim(a, 203) {
		t.Fatal("claim of a released client damped")
	}
	// GC forgets damping state once it no longer matters.
	clk.Advance(time.Minute)
	a.GC(a.clockNow())
	if len(a.flaps) != 0 {
		t.Fatalf("%d damping entries left", len(a.flaps))
	}
}

func TestDampingOff(t *testing.T) {
	clk := newFakeClock()
	a := newTestTable(t, "a", clk.Now, TableOptions{FlapLimit: -1})
	b := newTestTable(t, "b", clk.Now, TableOptions{FlapLimit: -1})
	for i := range 100 {
		from, to := a, b
		if i%2 == 1 {
			from, to = b, a
		}
		r, ok := from.Claim(testKey(1), ep(i), ReasonData)
		if !ok {
			t.Fatalf("claim %d refused with damping off", i)
		}
		deliver(t, r, to)
	}
}

// OnChange sees every change once, in order per client, whatever goroutines
// make them.
func TestOnChangeOrder(t *testing.T) {
	var mu sync.Mutex
	last := make(map[wgkey.Key]Record)
	calls := 0
	onChange := func(old, new Record) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if prev, ok := last[new.Client]; ok && prev != old || !ok && old.Version != 0 {
			t.Errorf("change of %v: old %+v, previous new %+v", new.Client, old, prev)
		}
		if !new.Newer(old) {
			t.Errorf("change to an older record: %+v -> %+v", old, new)
		}
		last[new.Client] = new
	}
	tab := newTestTable(t, "a", nil, TableOptions{FlapLimit: -1, OnChange: onChange})
	peer := newTestTable(t, "b", nil, TableOptions{FlapLimit: -1})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 0))
			for i := range 2000 {
				c := testKey(rng.IntN(4))
				switch rng.IntN(4) {
				case 0:
					tab.Claim(c, ep(rng.IntN(5)), ReasonData)
				case 1:
					tab.Release(c)
				case 2:
					if r, ok := tab.Get(c); ok {
						_, _ = peer.Apply(r)
					}
					if r, ok := peer.Claim(c, ep(i%7), ReasonHandshake); ok {
						_, _ = tab.Apply(r)
					}
				case 3:
					_, _ = tab.Merge(peer.Snapshot())
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, r := range tab.Snapshot() {
		if last[r.Client] != r {
			t.Fatalf("last change of %v was %+v, table holds %+v", r.Client, last[r.Client], r)
		}
	}
	st := tab.Stats()
	if want := int(st.Claims + st.Releases + st.Applied); calls != want {
		t.Fatalf("%d OnChange calls, want %d", calls, want)
	}
}

// OnChange may call back into the table; its changes follow in order.
func TestOnChangeReentrant(t *testing.T) {
	var tab *Table
	var seen []string
	tab = newTestTable(t, "a", nil, TableOptions{OnChange: func(old, new Record) {
		seen = append(seen, fmt.Sprintf("%s@%d", new.Owner, new.Version))
		if new.Owner == "a" && new.Reason == ReasonData {
			if _, ok := tab.Get(new.Client); !ok {
				t.Error("Get inside OnChange")
			}
			tab.Release(new.Client)
		}
	}})
	tab.Claim(testKey(1), ep(1), ReasonData)
	if want := []string{"a@1", "@2"}; !slices.Equal(seen, want) {
		t.Fatalf("changes %v, want %v", seen, want)
	}
	// A panicking OnChange does not stop later deliveries.
	boom := true
	tab2 := newTestTable(t, "a", nil, TableOptions{OnChange: func(old, new Record) {
		if boom {
			boom = false
			panic("boom")
		}
		seen = append(seen, "after panic")
	}})
	func() {
		defer func() { _ = recover() }()
		tab2.Claim(testKey(1), ep(1), ReasonData)
	}()
	tab2.Claim(testKey(2), ep(1), ReasonData)
	if seen[len(seen)-1] != "after panic" {
		t.Fatal("delivery stopped after a panic")
	}
}

func TestSnapshotAndOwnedBy(t *testing.T) {
	tab := newTestTable(t, "a", nil, TableOptions{})
	for i := 9; i >= 0; i-- {
		r := Record{Client: testKey(i), Owner: []string{"a", "b"}[i%2], Version: 1, Time: 1}
		if i == 4 {
			r.Owner = ""
		}
		deliver(t, r, tab)
	}
	snap := tab.Snapshot()
	if len(snap) != 10 || !slices.IsSortedFunc(snap, func(x, y Record) int { return compareKeys(x.Client, y.Client) }) {
		t.Fatalf("Snapshot: %d records, sorted %v", len(snap), slices.IsSortedFunc(snap, func(x, y Record) int { return compareKeys(x.Client, y.Client) }))
	}
	want := []wgkey.Key{testKey(0), testKey(2), testKey(6), testKey(8)}
	if got := tab.OwnedBy("a"); !slices.Equal(got, want) {
		t.Fatalf("OwnedBy(a) = %v", got)
	}
	if got := tab.OwnedBy(""); got != nil {
		t.Fatal("OwnedBy(\"\") lists tombstones")
	}
	if st := tab.Stats(); st.Clients != 10 || st.Owned != 4 || st.Tombstones != 1 {
		t.Fatalf("Stats = %+v", st)
	}
}

// sim is a cluster of tables connected by a network that reorders,
// duplicates, delays and (optionally) loses messages, with each node's wall
// clock skewed by up to ±30 s. A node relays a record exactly when Apply
// says it changed its table, as the gossip layer will.
type sim struct {
	t      *testing.T
	rng    *rand.Rand
	now    time.Time
	nodes  []*Table
	queue  []simMsg
	loss   float64
	dup    float64
	newest map[wgkey.Key]Record // greatest record any node wrote, per client
	sent   int
}

type simMsg struct {
	to int
	at time.Time
	r  Record
}

func newSim(t *testing.T, seed uint64, n int, loss float64, opts TableOptions) *sim {
	s := &sim{
		t:      t,
		rng:    rand.New(rand.NewPCG(seed, 1)),
		now:    time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC),
		loss:   loss,
		dup:    0.1,
		newest: make(map[wgkey.Key]Record),
	}
	for i := range n {
		skew := time.Duration(s.rng.Int64N(int64(60*time.Second))) - 30*time.Second
		switch i {
		case 0:
			skew = 30 * time.Second
		case 1:
			skew = -30 * time.Second
		}
		tab, err := NewTable(fmt.Sprintf("gw-%d", i), NewHLC(func() time.Time { return s.now.Add(skew) }, 0), opts)
		if err != nil {
			t.Fatal(err)
		}
		s.nodes = append(s.nodes, tab)
	}
	return s
}

func (s *sim) send(from int, r Record) {
	for to := range s.nodes {
		if to == from {
			continue
		}
		for copies := 1; copies > 0; copies-- {
			if s.rng.Float64() < s.loss {
				continue
			}
			if s.rng.Float64() < s.dup {
				copies++
			}
			delay := time.Duration(s.rng.Int64N(int64(2 * time.Second)))
			s.queue = append(s.queue, simMsg{to: to, at: s.now.Add(delay), r: r})
			s.sent++
		}
	}
}

// wrote records a locally written record and broadcasts it.
func (s *sim) wrote(from int, r Record) {
	if cur, ok := s.newest[r.Client]; !ok || r.Newer(cur) {
		s.newest[r.Client] = r
	}
	s.send(from, r)
}

// deliverOne delivers a random queued message: random order, and time moves
// to its arrival if that is later.
func (s *sim) deliverOne() {
	i := s.rng.IntN(len(s.queue))
	m := s.queue[i]
	s.queue[i] = s.queue[len(s.queue)-1]
	s.queue = s.queue[:len(s.queue)-1]
	if m.at.After(s.now) {
		s.now = m.at
	}
	applied, err := s.nodes[m.to].Apply(m.r)
	if err != nil {
		s.t.Fatalf("%s: Apply: %v", s.nodes[m.to].Self(), err)
	}
	if applied {
		s.send(m.to, m.r)
	}
}

func (s *sim) act(clients int) {
	n := s.rng.IntN(len(s.nodes))
	c := testKey(s.rng.IntN(clients))
	s.now = s.now.Add(time.Duration(s.rng.IntN(50)) * time.Millisecond)
	var r Record
	var ok bool
	if s.rng.IntN(10) == 0 {
		r, ok = s.nodes[n].Release(c)
	} else {
		r, ok = s.nodes[n].Claim(c, ep(s.rng.IntN(4)), ReasonHandshake)
	}
	if ok {
		s.wrote(n, r)
	}
}

func (s *sim) drain() {
	for len(s.queue) > 0 {
		s.deliverOne()
	}
}

// checkConverged checks that every table holds exactly the greatest record
// written for each client.
func (s *sim) checkConverged() {
	want := make([]Record, 0, len(s.newest))
	for _, r := range s.newest {
		want = append(want, r)
	}
	slices.SortFunc(want, func(a, b Record) int { return compareKeys(a.Client, b.Client) })
	for _, tab := range s.nodes {
		if got := tab.Snapshot(); !slices.Equal(got, want) {
			s.t.Fatalf("%s diverged:\n got %+v\nwant %+v", tab.Self(), got, want)
		}
		if st := tab.Stats(); st.RejectedSkew != 0 || st.RejectedInvalid != 0 {
			s.t.Fatalf("%s refused records: %+v", tab.Self(), st)
		}
	}
}

func TestConvergence(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 5
	}
	divergedBeforeMerge := 0
	for _, loss := range []float64{0, 0.7} {
		for seed := range uint64(seeds) {
			t.Run(fmt.Sprintf("loss=%v/seed=%d", loss, seed), func(t *testing.T) {
				s := newSim(t, seed, 7, loss, TableOptions{})
				for range 2000 {
					if len(s.queue) > 0 && s.rng.IntN(3) > 0 {
						s.deliverOne()
					} else {
						s.act(5)
					}
				}
				s.drain()
				if loss > 0 {
					// One push/pull round: everyone merges everyone's state.
					snaps := make([][]Record, len(s.nodes))
					for i, tab := range s.nodes {
						snaps[i] = tab.Snapshot()
					}
					for _, snap := range snaps[1:] {
						if !slices.Equal(snap, snaps[0]) {
							divergedBeforeMerge++
							break
						}
					}
					for i, tab := range s.nodes {
						for j := range s.nodes {
							if i != j {
								if _, err := tab.Merge(snaps[j]); err != nil {
									t.Fatal(err)
								}
							}
						}
					}
				}
				s.checkConverged()
			})
		}
	}
	if divergedBeforeMerge == 0 {
		t.Error("the lossy runs never needed the merge round: raise the loss")
	}
}

// With skewed clocks, each claim made after the previous one was delivered
// wins on every node, whoever makes it.
func TestCausalClaimsWin(t *testing.T) {
	s := newSim(t, 7, 5, 0, TableOptions{FlapLimit: -1})
	s.dup = 0.3
	for step := range 500 {
		n := s.rng.IntN(len(s.nodes))
		c := testKey(s.rng.IntN(3))
		s.now = s.now.Add(time.Duration(s.rng.IntN(20)) * time.Millisecond)
		r, ok := s.nodes[n].Claim(c, ep(step%250), ReasonHandshake)
		if !ok {
			if cur, _ := s.nodes[n].Get(c); cur.Owner != s.nodes[n].Self() {
				t.Fatalf("step %d: claim refused", step)
			}
			continue
		}
		s.wrote(n, r)
		s.drain()
		for _, tab := range s.nodes {
			if got := owner(t, tab, c); got != s.nodes[n].Self() {
				t.Fatalf("step %d: %s says %q owns the client, want %s", step, tab.Self(), got, s.nodes[n].Self())
			}
		}
	}
	s.checkConverged()
}

func TestApplyNoAllocs(t *testing.T) {
	tab := newTestTable(t, "a", nil, TableOptions{})
	r := Record{Client: testKey(1), Owner: "b", Version: 1, Time: MakeTimestamp(time.Now(), 0), Endpoint: ep(1)}
	deliver(t, r, tab)
	if n := testing.AllocsPerRun(1000, func() {
		r.Version++
		if ok, _ := tab.Apply(r); !ok {
			t.Fatal("not applied")
		}
	}); n != 0 {
		t.Fatalf("Apply of a newer record: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { _, _ = tab.Apply(r) }); n != 0 {
		t.Fatalf("Apply of a stale record: %v allocs, want 0", n)
	}
}

func BenchmarkApply(b *testing.B) {
	const clients = 100_000
	for _, c := range []struct {
		name     string
		onChange func(old, new Record)
	}{{"plain", nil}, {"onchange", func(old, new Record) {}}} {
		b.Run(c.name, func(b *testing.B) {
			tab := newTestTable(b, "a", nil, TableOptions{OnChange: c.onChange})
			ts := MakeTimestamp(time.Now(), 0)
			for i := range clients {
				_, _ = tab.Apply(Record{Client: testKey(i), Owner: "b", Version: 1, Time: ts})
			}
			r := Record{Owner: "c", Time: ts, Endpoint: ep(1)}
			v := uint64(1)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r.Client = testKey(i % clients)
				if i%clients == 0 {
					v++
				}
				r.Version = v
				_, _ = tab.Apply(r)
			}
		})
	}
	b.Run("stale", func(b *testing.B) {
		tab := newTestTable(b, "a", nil, TableOptions{})
		r := Record{Client: testKey(1), Owner: "b", Version: 5, Time: MakeTimestamp(time.Now(), 0)}
		_, _ = tab.Apply(r)
		b.ReportAllocs()
		for b.Loop() {
			_, _ = tab.Apply(r)
		}
	})
}

func BenchmarkClaim(b *testing.B) {
	tab := newTestTable(b, "a", nil, TableOptions{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tab.Claim(testKey(i%1000), ep(i%2), ReasonData) // endpoint refresh: a write every time
	}
}

func BenchmarkMergeSnapshot10k(b *testing.B) {
	src := newTestTable(b, "a", nil, TableOptions{})
	for i := range 10_000 {
		src.Claim(testKey(i), ep(1), ReasonHandshake)
	}
	snap := src.Snapshot()
	b.ReportAllocs()
	for b.Loop() {
		dst := newTestTable(b, "b", nil, TableOptions{})
		if _, err := dst.Merge(snap); err != nil {
			b.Fatal(err)
		}
	}
}
