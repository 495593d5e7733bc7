// Package cluster is anyguard's control plane: membership over memberlist,
// client ownership, and the backbone peer set.
//
// # Client ownership
//
// Table is one gateway's replica of the map from client public key to
// Record: the owning gateway, a per-client Version, a hybrid-logical-clock
// Time (HLC), the client's last endpoint and the reason for the change. It
// is pure logic with no networking: the gossip layer carries records
// between replicas and the wiring turns changes into routes.
//
// Conflict rule. Records of one client compare by (Version, Time, Owner) and
// every replica keeps the greatest, so replicas that have received the same
// records, in any order, any number of times, agree. A gateway claims a
// client (once the client proved a live session with it: its first packet
// over a session it completed, never a handshake initiation alone, which
// can be replayed) with Version = greatest
// seen + 1, so a claim made after seeing the previous one wins regardless of
// wall clocks; the HLC only orders concurrent claims that chose the same
// Version, and dates tombstones for garbage collection. Release writes a
// tombstone (Version + 1, no owner) so that an older record cannot resurrect
// the old owner; GC drops tombstones after TableOptions.TombstoneTTL of HLC
// time. Clocks need not be synchronised: a remote time up to
// DefaultMaxClockAhead (5 min) ahead of the local wall clock is accepted and
// moves the local HLC; later ones are refused with ErrClockSkew and counted.
//
// Records that cannot pin a client. Anyone holding the gossip key can
// send any record; what it must not be able to do is leave a later claim no
// room. Besides Validate (Version 1..MaxVersion), a remote record is
// refused, and counted, when:
//   - its Version exceeds its own Time read as an integer (wall ms << 16 |
//     logical): ErrVersionAhead. A claim or release always satisfies this:
//     it sets Version to the greatest seen + 1 and Time to an HLC reading
//     past that record's time, so at least one tick later. Together with
//     the clock bound below, no accepted record has a version above about
//     2^57 before the year 10889: a record at or near MaxVersion (2^62) is
//     refused, and every accepted record leaves room for every later claim;
//   - its Time is more than the clock bound ahead (ErrClockSkew, below);
//   - its client is not in the configured client set (ErrUnknownClient,
//     once the set is known: Table.Retain).
//
// The strongest record a key holder can send then has Version = Time at
// the clock bound (5 min ahead, logical counter full); it is applied and
// beaten by the next claim of any gateway, whose time carries one
// millisecond past the bound and is accepted once receivers' clocks have
// moved on by that millisecond. Every bound is a property of the record
// alone, never of what a replica held before: a bound on how far a version
// may jump past the replica's own record (say 2^31) would let a forged
// record reach a replica that held nothing of the client (a new gateway)
// and be refused by the others, and the two would never agree again. Such
// a jump is accepted and harmless: the next claim is one more.
//
// Forgetting. Table.Retain drops the records of clients removed from the
// configuration (Cluster.SetClients, on reload) and refuses them from
// members that have not reloaded. ReleaseLeftAfter (5 min) after a gateway
// left gracefully, every replica turns each record it still owns into the
// same tombstone (Version + 1, Time + 1: Table.ReleaseOwner), so replicas
// agree without a message and the records of idle clients go with the
// tombstones' GC; a claim by that gateway, back under its name, still wins.
// A crashed gateway's clients stay routed to it until they are claimed.
//
// Partitions (reconnect.go). memberlist forgets a dead member after
// GossipToTheDeadTime and never looks for it again. The Cluster remembers
// every member it has seen alive and keeps joining the missing ones with
// doubling, jittered waits up to 2 s (lan) or 3 s (wan) until they are
// back, for ReconnectTimeout (24 h), and its join addresses every 30 s
// meanwhile (every round while alone); a member that left is not chased. The join's push/pull and the
// catch-up of every member learned of reconcile the tables.
//
// Flap damping. A gateway that has taken one client from another live owner
// FlapLimit times within FlapWindow (5 in 10 s) makes no further takeover of
// it for HoldDown (30 s). Only a gateway's own takeovers count, so a
// ping-pong between two gateways settles after a few rounds while a genuine
// move to any other gateway applies at once. Remote records are never
// damped.
//
// Using it over memberlist. Encode a record on its own for broadcasts
// (Codec.AppendRecord: 30 to 32 bytes with a ClientSet, 57 without, for an
// IPv4 endpoint and a 7-byte node name; IPv6 adds 12) and a
// whole Snapshot for push/pull (Codec.AppendBatch, at most MaxBatchSize).
// Broadcast every record that Claim or Release wrote, named by the client
// key so a newer one replaces a queued older one. memberlist never relays
// user messages, so relay each received record exactly when Apply returns
// true; merge push/pull state with Merge and do not relay it. Cluster adds to
// memberlist a digest exchange (digest.go) in place of whole-table push/pull
// outside joins, run also at once with every member it learns of, since its
// own claims before that went to everyone else. Call GC
// periodically with the HLC's Now. A gateway should complete one push/pull
// before it takes clients, or its first claims carry low versions and lose
// to what the cluster already knows.
package cluster
