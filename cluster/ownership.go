package cluster

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyguard/anyguard/wgkey"
)

// Reason says why a record was written. It is informational: the conflict
// rule ignores it except as a last tie-break. Values up to 15 travel on the
// wire; ones this version does not know are kept and shown as numbers.
type Reason uint8

const (
	ReasonUnknown   Reason = iota
	ReasonHandshake        // the client completed a handshake with the owner
	ReasonData             // the owner received data from the client
	ReasonTakeover         // the previous owner failed and the client reconnected here
	ReasonRelease          // the owner let the client go (idle, draining)

	maxReason Reason = 15
)

var reasonNames = [...]string{"unknown", "handshake", "data", "takeover", "release"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// MaxVersion is the largest per-client version a record may carry. A record
// claiming more is refused, so that a corrupt one cannot freeze a client by
// leaving no room above it.
const MaxVersion = 1 << 62

// Record is the replicated state of one client: who owns it and since when.
// Records of one client are totally ordered by Compare; every replica keeps
// the greatest it has seen.
type Record struct {
	Client  wgkey.Key // the client's WireGuard public key
	Owner   string    // owning node's name; "" for a released client (a tombstone)
	Version uint64    // per-client counter: a claim sets it to the greatest seen + 1
	Time    Timestamp
	// Endpoint is the client's last UDP source address seen by the owner;
	// invalid when unknown.
	Endpoint netip.AddrPort
	Reason   Reason
}

// Released reports whether r is a tombstone: the client has no owner.
func (r Record) Released() bool { return r.Owner == "" }

// Compare orders two records of the same client: by Version, then Time,
// then Owner, and, for records that agree on all three (which correct nodes
// never produce), by Endpoint and Reason, so that the order is total and
// replicas converge whatever they receive. It returns -1, 0 or +1.
func (a Record) Compare(b Record) int {
	switch {
	case a.Version != b.Version:
		return cmp64(a.Version, b.Version)
	case a.Time != b.Time:
		return cmp64(uint64(a.Time), uint64(b.Time))
	case a.Owner != b.Owner:
		if a.Owner < b.Owner {
			return -1
		}
		return 1
	case a.Endpoint != b.Endpoint:
		return a.Endpoint.Compare(b.Endpoint)
	}
	return cmp64(uint64(a.Reason), uint64(b.Reason))
}

func cmp64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Newer reports whether a wins over b: a.Compare(b) > 0.
func (a Record) Newer(b Record) bool { return a.Compare(b) > 0 }

// Validate checks what the wire format and the conflict rule rely on: a
// non-zero client, a version in 1..MaxVersion, a valid owner name or none,
// an endpoint without a zone (or none at all), and a reason that fits in
// four bits. Errors wrap ErrInvalidRecord or ErrBadOwner.
func (r Record) Validate() error {
	switch {
	case r.Client.IsZero():
		return fmt.Errorf("%w: zero client key", ErrInvalidRecord)
	case r.Version == 0 || r.Version > MaxVersion:
		return fmt.Errorf("%w: version %d out of range 1..%d", ErrInvalidRecord, r.Version, uint64(MaxVersion))
	case r.Owner != "" && !validName(r.Owner):
		return fmt.Errorf("%w: %q", ErrBadOwner, r.Owner)
	case !r.Endpoint.Addr().IsValid() && r.Endpoint.Port() != 0:
		return fmt.Errorf("%w: endpoint port without an address", ErrInvalidRecord)
	case r.Endpoint.Addr().Zone() != "":
		return fmt.Errorf("%w: endpoint %s has a zone", ErrInvalidRecord, r.Endpoint)
	case r.Reason > maxReason:
		return fmt.Errorf("%w: reason %d", ErrInvalidRecord, r.Reason)
	}
	return nil
}

// validName reports whether s is a node name: 1 to MaxOwnerLen bytes of
// A-Z a-z 0-9 . _ -, as the configuration requires.
func validName(s string) bool {
	if len(s) == 0 || len(s) > MaxOwnerLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return false
		}
	}
	return true
}

func validNameBytes(b []byte) bool {
	if len(b) == 0 || len(b) > MaxOwnerLen {
		return false
	}
	for _, c := range b {
		if !nameByte(c) {
			return false
		}
	}
	return true
}

func nameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// Defaults for TableOptions.
const (
	DefaultTombstoneTTL = 24 * time.Hour
	DefaultFlapLimit    = 5
	DefaultFlapWindow   = 10 * time.Second
	DefaultHoldDown     = 30 * time.Second
)

// TableOptions configure a Table. The zero value means the defaults.
type TableOptions struct {
	// TombstoneTTL is how long, in HLC time, a released client's tombstone
	// is kept before GC may drop it. It must exceed the longest time a node
	// can be cut off from the cluster and come back with its old state: a
	// node that returns later can resurrect an owner released meanwhile.
	TombstoneTTL time.Duration

	// Flap damping, see Table.Claim. FlapLimit < 0 turns damping off.
	FlapLimit  int
	FlapWindow time.Duration
	HoldDown   time.Duration

	// OnRefused, when set, is called for every remote record Apply or
	// Merge refuses, with the reason (wrapping ErrInvalidRecord,
	// ErrVersionAhead, ErrClockSkew or ErrUnknownClient), on the caller's
	// goroutine and without the table's lock. It must not block.
	OnRefused func(r Record, err error)

	// OnChange, when set, is called once for every change of the table's
	// state, with the record before (Version 0 when the client was unknown)
	// and after. Calls come one at a time, in the order the changes were
	// made, and never with the table's lock held, so OnChange may call any
	// Table method; changes it makes are delivered after it returns. A
	// change may be delivered by whichever goroutine is delivering at the
	// time, so a method that changed the table may return before OnChange
	// has seen the change. OnChange should not block: Apply runs on
	// memberlist's packet goroutine. A record learned from others may name
	// this node as owner (for example its own claim from before a restart).
	// GC of a tombstone is not a change.
	OnChange func(old, new Record)
}

func (o TableOptions) withDefaults() TableOptions {
	if o.TombstoneTTL <= 0 {
		o.TombstoneTTL = DefaultTombstoneTTL
	}
	if o.FlapLimit == 0 {
		o.FlapLimit = DefaultFlapLimit
	}
	if o.FlapWindow <= 0 {
		o.FlapWindow = DefaultFlapWindow
	}
	if o.HoldDown <= 0 {
		o.HoldDown = DefaultHoldDown
	}
	return o
}

// TableStats are a table's gauges and counters, for metrics.
type TableStats struct {
	Clients    int // records held, tombstones included
	Owned      int // records owned by this node
	Tombstones int

	Claims          uint64 // local claims written (endpoint refreshes included)
	Releases        uint64 // local releases written
	Damped          uint64 // local claims suppressed by flap damping
	Applied         uint64 // remote records that changed the table
	Stale           uint64 // remote records not newer than the table's (duplicates included)
	RejectedSkew    uint64 // remote records refused with ErrClockSkew
	RejectedInvalid uint64 // remote records refused by Validate
	RejectedVersion uint64 // remote records refused with ErrVersionAhead
	RejectedUnknown uint64 // remote records of clients not in the client set (ErrUnknownClient)
	Collected       uint64 // tombstones removed by GC
	Forgotten       uint64 // records dropped because their client left the client set (Retain)
	LeftReleased    uint64 // records of an owner that left, released by ReleaseOwner
}

// ErrVersionAhead is returned (wrapped) by Apply and Merge for a record
// whose Version exceeds its own Time read as an integer (see the package
// documentation: no record may leave a later claim no room).
var ErrVersionAhead = errors.New("version ahead of its timestamp")

// ErrUnknownClient is returned (wrapped) by Apply and Merge for a record of
// a client that is not in the table's client set (see Retain).
var ErrUnknownClient = errors.New("client not in the configured client set")

// Table is one node's replica of the client-ownership map. Local claims and
// releases write new records; remote records are merged by keeping the
// greatest (Record.Compare), so replicas that have received the same records,
// in any order and any number of times, hold the same state. It is safe for
// concurrent use.
type Table struct {
	self string
	hlc  *HLC
	opts TableOptions

	// known, when set, is the client set: records of other clients are
	// refused (see Retain).
	known atomic.Pointer[func(wgkey.Key) bool]

	mu    sync.Mutex
	recs  map[wgkey.Key]Record
	flaps map[wgkey.Key]*flapState
	stats TableStats

	// Changes waiting for OnChange; delivering is true while some
	// goroutine drains them.
	pending, spare []change
	delivering     bool
}

type change struct{ old, new Record }

// flapState remembers this node's recent takeovers of one client.
type flapState struct {
	steals    []time.Time // ring of the last FlapLimit takeover times
	next      int
	holdUntil time.Time
}

// ErrBadNodeName is returned by NewTable for an invalid node name.
var ErrBadNodeName = errors.New("invalid node name: want 1 to 63 bytes of A-Z a-z 0-9 . _ -")

// NewTable returns an empty table for the node named self, taking
// timestamps from hlc (whose wall clock also times flap damping).
func NewTable(self string, hlc *HLC, opts TableOptions) (*Table, error) {
	if !validName(self) {
		return nil, fmt.Errorf("new ownership table: %w: %q", ErrBadNodeName, self)
	}
	if hlc == nil {
		hlc = NewHLC(nil, 0)
	}
	return &Table{
		self:  self,
		hlc:   hlc,
		opts:  opts.withDefaults(),
		recs:  make(map[wgkey.Key]Record),
		flaps: make(map[wgkey.Key]*flapState),
	}, nil
}

// Self returns the node name the table claims as.
func (t *Table) Self() string { return t.self }

// Claim records that this node now owns client, last seen at endpoint (an
// invalid endpoint means not known: the record keeps the one it had). The
// new record's Version is one more than the greatest this node has seen for
// the client, so it wins over every record this node knew of, whatever the
// clocks say; only a concurrent claim with the same Version can beat it, by
// a later HLC time.
//
// Claim returns the client's record and whether it wrote a new one, which
// the caller must then broadcast. It writes nothing, returning false and the
// current record, when:
//   - this node already owns the client at that endpoint (a new endpoint is
//     written as a refresh);
//   - the claim is damped (the returned record's Owner is another node).
//
// Damping: a claim that takes the client from another live owner is a
// takeover. A node that has made FlapLimit takeovers of one client within
// FlapWindow makes no more for HoldDown; suppressed claims are counted in
// TableStats.Damped, and the caller simply claims again on the client's next
// packet, which succeeds once the hold-down is over. Only this node's own
// takeovers count, so a ping-pong between two gateways stops after a few
// rounds, leaving the client with whichever owns it then, while a genuine
// move to a gateway that has not been fighting over the client applies at
// once; a gateway that has been fighting waits at most HoldDown. Claiming a
// released or unknown client is never damped, and remote records are
// never damped: Apply always keeps the greatest. Claim of the zero key or
// with a reason above 15 does nothing.
func (t *Table) Claim(client wgkey.Key, endpoint netip.AddrPort, reason Reason) (Record, bool) {
	if client.IsZero() || reason > maxReason {
		return Record{}, false
	}
	if endpoint.Addr().Zone() != "" {
		endpoint = netip.AddrPortFrom(endpoint.Addr().WithZone(""), endpoint.Port())
	}
	now := t.hlc.now()
	t.mu.Lock()
	cur, ok := t.recs[client]
	if !endpoint.Addr().IsValid() {
		endpoint = cur.Endpoint
	}
	switch {
	case ok && cur.Owner == t.self && cur.Endpoint == endpoint:
		t.mu.Unlock()
		return cur, false
	case cur.Version >= MaxVersion:
		t.mu.Unlock()
		return cur, false
	case ok && cur.Owner != "" && cur.Owner != t.self:
		if t.damped(client, now) {
			t.stats.Damped++
			t.mu.Unlock()
			return cur, false
		}
	}
	r := Record{
		Client:   client,
		Owner:    t.self,
		Version:  cur.Version + 1,
		Time:     t.hlc.Now(),
		Endpoint: endpoint,
		Reason:   reason,
	}
	t.stats.Claims++
	t.set(cur, ok, r)
	t.unlockAndDeliver()
	return r, true
}

// damped reports whether a takeover of client at now is suppressed, and
// records it if not. t.mu is held.
func (t *Table) damped(client wgkey.Key, now time.Time) bool {
	if t.opts.FlapLimit < 0 {
		return false
	}
	f := t.flaps[client]
	if f == nil {
		f = &flapState{steals: make([]time.Time, 0, t.opts.FlapLimit)}
		t.flaps[client] = f
	}
	if now.Before(f.holdUntil) {
		return true
	}
	if len(f.steals) == t.opts.FlapLimit {
		if oldest := f.steals[f.next]; now.Sub(oldest) < t.opts.FlapWindow {
			f.holdUntil = now.Add(t.opts.HoldDown)
			return true
		}
		f.steals[f.next] = now
		f.next = (f.next + 1) % len(f.steals)
		return false
	}
	f.steals = append(f.steals, now)
	return false
}

// Release gives up this node's ownership of client by writing a tombstone:
// Version + 1 and no owner, so that no older record can bring the old owner
// back. It returns the client's record and whether it wrote one, which the
// caller must then broadcast; it writes nothing unless this node owns the
// client.
func (t *Table) Release(client wgkey.Key) (Record, bool) {
	t.mu.Lock()
	cur, ok := t.recs[client]
	if !ok || cur.Owner != t.self || cur.Version >= MaxVersion {
		t.mu.Unlock()
		return cur, false
	}
	r := cur
	r.Owner = ""
	r.Version++
	r.Time = t.hlc.Now()
	r.Reason = ReasonRelease
	t.stats.Releases++
	t.set(cur, true, r)
	t.unlockAndDeliver()
	return r, true
}

// Apply merges a record received from another node. It returns true exactly
// when the record changed the table, which is when the caller should relay
// it. A record that is invalid, or whose time is too far ahead of the local
// clock (ErrClockSkew), is refused with an error and counted; one that is
// not newer than the table's is ignored. A tombstone older than the
// tombstone TTL for a client the table does not know is ignored too (it was
// or would be collected).
func (t *Table) Apply(r Record) (bool, error) {
	if err := t.check(r); err != nil {
		return false, err
	}
	t.mu.Lock()
	applied := t.applyLocked(r)
	t.unlockAndDeliver()
	return applied, nil
}

// Merge applies records, for example another node's Snapshot received by
// push/pull, and returns those that changed the table. Records Apply would
// refuse are skipped and counted; err then reports how many and the first
// error.
func (t *Table) Merge(rs []Record) (changed []Record, err error) {
	ok := make([]bool, len(rs))
	var first error
	bad := 0
	for i, r := range rs {
		if e := t.check(r); e != nil {
			if first == nil {
				first = e
			}
			bad++
			continue
		}
		ok[i] = true
	}
	t.mu.Lock()
	for i, r := range rs {
		if ok[i] && t.applyLocked(r) {
			changed = append(changed, r)
		}
	}
	t.unlockAndDeliver()
	if first != nil {
		err = fmt.Errorf("merge: %d of %d records refused, first: %w", bad, len(rs), first)
	}
	return changed, err
}

// check validates a remote record and observes its time.
func (t *Table) check(r Record) error {
	err := t.refusal(r)
	if err != nil && t.opts.OnRefused != nil {
		t.opts.OnRefused(r, err)
	}
	return err
}

func (t *Table) refusal(r Record) error {
	if err := r.Validate(); err != nil {
		t.mu.Lock()
		t.stats.RejectedInvalid++
		t.mu.Unlock()
		return fmt.Errorf("apply: %w", err)
	}
	if known := t.known.Load(); known != nil && !(*known)(r.Client) {
		t.mu.Lock()
		t.stats.RejectedUnknown++
		t.mu.Unlock()
		return fmt.Errorf("apply: %w", ErrUnknownClient)
	}
	// Before Observe: a refused record must not move the clock.
	if r.Version > uint64(r.Time) {
		t.mu.Lock()
		t.stats.RejectedVersion++
		t.mu.Unlock()
		return fmt.Errorf("apply: %w: version %d, time %s", ErrVersionAhead, r.Version, r.Time)
	}
	if err := t.hlc.Observe(r.Time); err != nil {
		t.mu.Lock()
		t.stats.RejectedSkew++
		t.mu.Unlock()
		return fmt.Errorf("apply: %w", err)
	}
	return nil
}

// Retain makes known the table's client set: it drops the records of
// every client for which known returns false (without calling OnChange,
// like GC: the client is gone from the configuration, and with it its
// routes), and from then on Apply and Merge refuse records of such clients
// (ErrUnknownClient), so that a member that has not reloaded yet cannot
// bring them back. A nil known accepts every client again. It returns the
// number of records dropped.
func (t *Table) Retain(known func(wgkey.Key) bool) int {
	if known == nil {
		t.known.Store(nil)
		return 0
	}
	t.known.Store(&known)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for k, r := range t.recs {
		if known(k) {
			continue
		}
		t.count(r, true, -1)
		delete(t.recs, k)
		delete(t.flaps, k)
		n++
	}
	t.stats.Clients -= n
	t.stats.Forgotten += uint64(n)
	return n
}

// ReleaseOwner releases every client that node (another gateway, which
// left the cluster for good) owns, and returns how many. Every replica
// that does this writes the same tombstone for the same record: Version +
// 1, no owner, and the record's own Time + 1, so replicas agree without
// sending anything, and one that has not released yet receives the
// tombstone in the next digest exchange. A claim that the owner makes if
// it comes back wins over the tombstone: it has the same Version and a
// later Time (its clock observed the record), or a greater Version. The
// tombstones are collected TombstoneTTL after the records' time: a client
// that has been idle for long leaves the table soon after its owner.
func (t *Table) ReleaseOwner(node string) int {
	if node == "" || node == t.self {
		return 0
	}
	t.mu.Lock()
	n := 0
	for _, cur := range t.recs {
		if cur.Owner != node || cur.Version >= MaxVersion {
			continue
		}
		r := cur
		r.Owner = ""
		r.Version++
		r.Time++
		r.Reason = ReasonRelease
		t.set(cur, true, r)
		n++
	}
	t.stats.LeftReleased += uint64(n)
	t.unlockAndDeliver()
	return n
}

func (t *Table) applyLocked(r Record) bool {
	cur, ok := t.recs[r.Client]
	if ok && !r.Newer(cur) {
		t.stats.Stale++
		return false
	}
	if !ok && r.Owner == "" && r.Time < t.horizon(t.hlc.Last()) {
		t.stats.Stale++
		return false
	}
	t.stats.Applied++
	t.set(cur, ok, r)
	return true
}

// horizon returns the time before which tombstones may be collected.
func (t *Table) horizon(now Timestamp) Timestamp {
	cut := now.WallMS() - t.opts.TombstoneTTL.Milliseconds()
	if cut <= 0 {
		return 0
	}
	return Timestamp(uint64(cut) << logicalBits)
}

// set stores r, replacing cur (valid when had), and queues the change.
// t.mu is held.
func (t *Table) set(cur Record, had bool, r Record) {
	t.recs[r.Client] = r
	if !had {
		t.stats.Clients++
	}
	t.count(cur, had, -1)
	t.count(r, true, +1)
	if t.opts.OnChange != nil {
		if !had {
			cur = Record{Client: r.Client}
		}
		t.pending = append(t.pending, change{cur, r})
	}
}

func (t *Table) count(r Record, had bool, d int) {
	switch {
	case !had:
	case r.Owner == "":
		t.stats.Tombstones += d
	case r.Owner == t.self:
		t.stats.Owned += d
	}
}

// unlockAndDeliver releases t.mu and, unless another goroutine is already
// doing it, calls OnChange for the pending changes until none are left.
func (t *Table) unlockAndDeliver() {
	if t.delivering || len(t.pending) == 0 {
		t.mu.Unlock()
		return
	}
	t.delivering = true
	done := false
	defer func() {
		if !done { // OnChange panicked: let the next change restart delivery
			t.mu.Lock()
			t.delivering = false
			t.mu.Unlock()
		}
	}()
	for len(t.pending) > 0 {
		batch := t.pending
		t.pending, t.spare = t.spare[:0], nil
		t.mu.Unlock()
		for _, c := range batch {
			t.opts.OnChange(c.old, c.new)
		}
		clear(batch)
		t.mu.Lock()
		t.spare = batch[:0]
	}
	// Still holding t.mu, so a change queued from now on finds delivering
	// false and delivers itself.
	t.delivering = false
	done = true
	t.mu.Unlock()
}

// Get returns the record of client.
func (t *Table) Get(client wgkey.Key) (Record, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.recs[client]
	return r, ok
}

// Snapshot returns every record, tombstones included, sorted by client.
func (t *Table) Snapshot() []Record {
	t.mu.Lock()
	rs := make([]Record, 0, len(t.recs))
	for _, r := range t.recs {
		rs = append(rs, r)
	}
	t.mu.Unlock()
	slices.SortFunc(rs, func(a, b Record) int { return compareKeys(a.Client, b.Client) })
	return rs
}

// OwnedBy returns the clients owned by node, sorted.
func (t *Table) OwnedBy(node string) []wgkey.Key {
	if node == "" {
		return nil
	}
	var ks []wgkey.Key
	t.mu.Lock()
	for k, r := range t.recs {
		if r.Owner == node {
			ks = append(ks, k)
		}
	}
	t.mu.Unlock()
	slices.SortFunc(ks, compareKeys)
	return ks
}

// GC removes tombstones whose time is more than the tombstone TTL before
// now (normally the HLC's Now), and forgets flap-damping state that no
// longer matters. Records with an owner are never removed, however old.
// It returns the number of tombstones removed.
func (t *Table) GC(now Timestamp) int {
	cut := t.horizon(now)
	wall := t.hlc.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for k, r := range t.recs {
		if r.Owner == "" && r.Time < cut {
			delete(t.recs, k)
			n++
		}
	}
	t.stats.Clients -= n
	t.stats.Tombstones -= n
	t.stats.Collected += uint64(n)
	for k, f := range t.flaps {
		last := f.steals[(f.next+len(f.steals)-1)%len(f.steals)]
		if !wall.Before(f.holdUntil) && wall.Sub(last) >= t.opts.FlapWindow {
			delete(t.flaps, k)
		}
	}
	return n
}

// Stats returns the table's gauges and counters.
func (t *Table) Stats() TableStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}
