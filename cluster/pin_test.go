package cluster

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/anyguard/anyguard/wgkey"
)

// An insider holding the gossip key sends one forged record of a client
// to every gateway. Whatever it is, a later legitimate claim by a gateway
// must win everywhere: no record may pin a client.

// forgeAndClaim applies forged to tables a and b (an error is a refusal),
// then b claims the client; it fails unless b's claim is the client's
// record on both.
//
// The claim reaches a one millisecond after it was made: a forged record
// at the very edge of the clock bound (5 min ahead, logical counter full)
// makes the claim's time carry into the next millisecond, which a accepts
// once its own clock has moved on by one.
func forgeAndClaim(t *testing.T, clk *fakeClock, forged Record, a, b *Table) (refused error) {
	t.Helper()
	_, errA := a.Apply(forged)
	_, errB := b.Apply(forged)
	if (errA == nil) != (errB == nil) {
		t.Fatalf("replicas disagree on the forged record: %v / %v", errA, errB)
	}
	r, ok := b.Claim(forged.Client, ep(2), ReasonHandshake)
	if !ok {
		t.Fatalf("claim after the forged record refused (record %+v)", r)
	}
	clk.Advance(time.Millisecond)
	if _, err := a.Apply(r); err != nil {
		t.Fatalf("the legitimate claim %+v is refused: %v", r, err)
	}
	for _, tab := range []*Table{a, b} {
		if got := owner2(tab, forged.Client); got != r {
			t.Fatalf("%s holds %+v, want the claim %+v", tab.Self(), got, r)
		}
	}
	return errA
}

func TestNoRecordPinsAClient(t *testing.T) {
	clk := newFakeClock()
	now := func() Timestamp { return MakeTimestamp(clk.Now(), 0) }
	k := testKey(7)
	cases := []struct {
		name    string
		forged  func(cur Record) Record
		refused error // nil: accepted (and then beaten)
	}{
		{"MaxVersion", func(cur Record) Record {
			return Record{Client: k, Owner: "evil", Version: MaxVersion, Time: now()}
		}, ErrVersionAhead},
		{"MaxVersion-1", func(cur Record) Record {
			return Record{Client: k, Owner: "evil", Version: MaxVersion - 1, Time: now()}
		}, ErrVersionAhead},
		{"MaxVersion at the latest time", func(cur Record) Record {
			return Record{Client: k, Owner: "evil", Version: MaxVersion, Time: Timestamp(1<<64 - 1)}
		}, ErrClockSkew},
		{"version+2^31", func(cur Record) Record {
			return Record{Client: k, Owner: "evil", Version: cur.Version + 1<<31, Time: now()}
		}, nil},
		{"far-future HLC", func(cur Record) Record {
			return Record{Client: k, Owner: "evil", Version: cur.Version + 1, Time: MakeTimestamp(clk.Now().Add(time.Hour), 0)}
		}, ErrClockSkew},
		{"far-future HLC and version", func(cur Record) Record {
			ts := MakeTimestamp(clk.Now().Add(100*365*24*time.Hour), 0)
			return Record{Client: k, Owner: "evil", Version: uint64(ts), Time: ts}
		}, ErrClockSkew},
		// The strongest record a key holder can send: the greatest
		// version its time allows, at the greatest time the bound
		// accepts. It is applied, and still beaten by the next claim.
		{"highest allowed", func(cur Record) Record {
			ts := MakeTimestamp(clk.Now().Add(DefaultMaxClockAhead), 1<<16-1)
			return Record{Client: k, Owner: "evil", Version: uint64(ts), Time: ts}
		}, nil},
		{"tombstone at the highest allowed", func(cur Record) Record {
			ts := MakeTimestamp(clk.Now().Add(DefaultMaxClockAhead), 1<<16-1)
			return Record{Client: k, Version: uint64(ts), Time: ts}
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestTable(t, "a", clk.Now, TableOptions{})
			b := newTestTable(t, "b", clk.Now, TableOptions{})
			r, _ := a.Claim(k, ep(1), ReasonHandshake)
			deliver(t, r, b)
			err := forgeAndClaim(t, clk, tc.forged(r), a, b)
			switch {
			case tc.refused == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refused != nil && !errors.Is(err, tc.refused):
				t.Fatalf("got %v, want refusal %v", err, tc.refused)
			}
			st := a.Stats()
			if tc.refused != nil && st.RejectedVersion+st.RejectedSkew != 1 {
				t.Fatalf("refusal not counted: %+v", st)
			}
		})
	}
}

// TestFloodCannotPin: a flood of forged records for one client, each as
// strong as the bounds allow and each stronger than the last, leaves the
// client claimable at every moment, and the table holding one record.
func TestFloodCannotPin(t *testing.T) {
	clk := newFakeClock()
	a := newTestTable(t, "a", clk.Now, TableOptions{FlapLimit: -1})
	b := newTestTable(t, "b", clk.Now, TableOptions{FlapLimit: -1})
	k := testKey(9)
	r, _ := a.Claim(k, ep(1), ReasonHandshake)
	deliver(t, r, b)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 10000 {
		cur := owner2(a, k)
		var f Record
		switch i % 4 {
		case 0: // as far ahead as allowed
			ts := MakeTimestamp(clk.Now().Add(DefaultMaxClockAhead), uint16(rng.Uint32()))
			f = Record{Client: k, Owner: "evil", Version: uint64(ts), Time: ts}
		case 1: // just beyond what is allowed
			ts := cur.Time + 1
			f = Record{Client: k, Owner: "evil", Version: uint64(ts) + 1, Time: ts}
		case 2: // a random version near the top
			f = Record{Client: k, Owner: "evil", Version: MaxVersion - rng.Uint64N(1<<20), Time: cur.Time + 1}
		default: // the next version
			f = Record{Client: k, Owner: "evil", Version: cur.Version + 1, Time: cur.Time + 1}
		}
		_, _ = a.Apply(f)
		_, _ = b.Apply(f)
		if i%1000 == 999 {
			forgeAndClaim(t, clk, Record{Client: k, Owner: "evil", Version: 1, Time: 1}, a, b)
		}
		clk.Advance(time.Millisecond)
	}
	if st := a.Stats(); st.Clients != 1 || st.RejectedVersion == 0 {
		t.Fatalf("after the flood: %+v", st)
	}
	if r := owner2(a, k); r.Version >= MaxVersion/2 {
		t.Fatalf("the flood brought the version to %d", r.Version)
	}
}

// TestVersionBoundHoldsForClaims: the records a gateway writes always
// pass the bound others check, after any accepted record (a claim's time
// is later than the record's it supersedes by at least one tick).
func TestVersionBoundHoldsForClaims(t *testing.T) {
	clk := newFakeClock()
	a := newTestTable(t, "a", clk.Now, TableOptions{FlapLimit: -1})
	b := newTestTable(t, "b", clk.Now, TableOptions{FlapLimit: -1})
	k := testKey(3)
	for i := range 2000 {
		var r Record
		var ok bool
		writer, other := a, b
		switch i % 3 {
		case 0:
			r, ok = a.Claim(k, ep(i%200), ReasonData)
		case 1:
			writer, other = b, a
			r, ok = b.Claim(k, ep(i%200), ReasonHandshake)
		default:
			if owner2(b, k).Owner == "b" {
				writer, other = b, a
			}
			r, ok = writer.Release(k)
		}
		if !ok {
			t.Fatalf("step %d: %s wrote nothing", i, writer.Self())
		}
		if r.Version > uint64(r.Time) {
			t.Fatalf("step %d: wrote %+v beyond the bound", i, r)
		}
		if _, err := other.Apply(r); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
}

// TestRetainForgetsRemovedClients: Retain drops the records of clients no
// longer configured and refuses them from then on; the others stay.
func TestRetainForgetsRemovedClients(t *testing.T) {
	clk := newFakeClock()
	a := newTestTable(t, "a", clk.Now, TableOptions{})
	var refused []error
	b := newTestTable(t, "b", clk.Now, TableOptions{OnRefused: func(_ Record, err error) { refused = append(refused, err) }})
	var recs []Record
	for i := range 10 {
		r, _ := a.Claim(testKey(i), ep(i), ReasonHandshake)
		recs = append(recs, r)
		deliver(t, r, b)
	}
	b.Release(testKey(0)) // not b's: nothing
	keep := NewClientSet([]wgkey.Key{testKey(1), testKey(2), testKey(3)})
	if n := b.Retain(func(k wgkey.Key) bool { _, ok := keep.Index(k); return ok }); n != 7 {
		t.Fatalf("forgot %d, want 7", n)
	}
	if st := b.Stats(); st.Clients != 3 || st.Forgotten != 7 {
		t.Fatalf("Stats = %+v", st)
	}
	// A member that has not reloaded sends them again: refused.
	changed, err := b.Merge(recs)
	if !errors.Is(err, ErrUnknownClient) || len(changed) != 0 {
		t.Fatalf("Merge: %v, %v", changed, err)
	}
	if st := b.Stats(); st.Clients != 3 || st.RejectedUnknown != 7 || len(refused) != 7 {
		t.Fatalf("Stats = %+v, %d refusals reported", st, len(refused))
	}
	r, _ := a.Claim(testKey(2), ep(99), ReasonHandshake)
	if _, err := b.Apply(r); err != nil {
		t.Fatalf("a kept client: %v", err)
	}
	b.Retain(nil)
	if _, err := b.Apply(recs[5]); err != nil {
		t.Fatalf("after Retain(nil): %v", err)
	}
}

// TestReleaseOwner: every replica releasing a gone owner's clients writes
// the same tombstones; a replica that did not learns them by the digest;
// the owner's own claim after coming back wins over them.
func TestReleaseOwner(t *testing.T) {
	clk := newFakeClock()
	x := newTestTable(t, "x", clk.Now, TableOptions{})
	a := newTestTable(t, "a", clk.Now, TableOptions{})
	b := newTestTable(t, "b", clk.Now, TableOptions{})
	c := newTestTable(t, "c", clk.Now, TableOptions{})
	for i := range 20 {
		owner := x
		if i%4 == 0 {
			owner = a
		}
		r, _ := owner.Claim(testKey(i), ep(i), ReasonHandshake)
		clk.Advance(time.Millisecond)
		for _, tab := range []*Table{x, a, b, c} {
			if tab != owner {
				deliver(t, r, tab)
			}
		}
	}
	var changes int
	a.opts.OnChange = func(old, new Record) { changes++ }
	if n := a.ReleaseOwner("x"); n != 15 || changes != 15 {
		t.Fatalf("a released %d (%d changes), want 15", n, changes)
	}
	clk.Advance(time.Minute) // b releases later: same tombstones
	if n := b.ReleaseOwner("x"); n != 15 {
		t.Fatalf("b released %d", n)
	}
	if n := a.ReleaseOwner("a"); n != 0 {
		t.Fatal("released its own clients")
	}
	bits := digestBits(20)
	if d := a.Differing(bits, b.Digest(bits)); len(d) != 0 {
		t.Fatalf("a and b differ in %d records after releasing alike", len(d))
	}
	// c did not release: the digest exchange brings it the tombstones.
	changed, err := c.Merge(a.Differing(bits, c.Digest(bits)))
	if err != nil || len(changed) != 15 {
		t.Fatalf("c merged %d: %v", len(changed), err)
	}
	if d := a.Differing(bits, c.Digest(bits)); len(d) != 0 {
		t.Fatalf("a and c still differ in %d records", len(d))
	}
	if st := a.Stats(); st.Tombstones != 15 || st.LeftReleased != 15 {
		t.Fatalf("Stats = %+v", st)
	}
	// x comes back having missed the release and claims a client again:
	// its claim wins everywhere.
	r, ok := x.Claim(testKey(1), ep(50), ReasonHandshake)
	if !ok {
		t.Fatal("x's claim refused")
	}
	deliver(t, r, a, b, c)
	for _, tab := range []*Table{a, b, c} {
		if got := owner2(tab, testKey(1)); got.Owner != "x" {
			t.Fatalf("%s: owner %q after x came back", tab.Self(), got.Owner)
		}
	}
	// Tombstones go with GC after the TTL from the records' time.
	if n := a.GC(MakeTimestamp(clk.Now().Add(DefaultTombstoneTTL+time.Hour), 0)); n != 14 {
		t.Fatalf("GC collected %d, want 14", n)
	}
}

// FuzzNoPin: whatever record arrives, accepted or refused, the next claim
// of a gateway is written and wins on every replica. The seeds
// (testdata/fuzz/FuzzNoPin) are the attacks of TestNoRecordPinsAClient.
func FuzzNoPin(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		r, _, err := DecodeRecord(b)
		if err != nil || r.Owner == "c" { // c claims below: a record of c's own needs no beating
			return
		}
		clk := newFakeClock()
		a := newTestTable(t, "a", clk.Now, TableOptions{FlapLimit: -1})
		c := newTestTable(t, "c", clk.Now, TableOptions{FlapLimit: -1})
		forgeAndClaim(t, clk, r, a, c)
	})
}
