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
