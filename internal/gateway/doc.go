// Package gateway wires one anyguard gateway together from its parts: the
// router, the client-facing WireGuard device on its in-memory port, the
// egress (kernel TUN or netstack), the UAPI socket and, when clustered,
// the backbone. It turns the typed configuration into each part's own
// settings; New is the wiring diagram.
//
// # Parts
//
// Each part is a package of its own that declares the narrow interfaces it
// needs and holds nothing of the Gateway (the import graph proves it: no
// part imports this package; the table in internal/archtest keeps it so):
//
//   - admission: adds configured clients to the client device when they
//     send an authentic handshake initiation (a live client's, from the
//     endpoint it was last read at, goes to the device unread: the fast
//     path), removes idle ones. It sees the client index, the device's
//     peer set, its bind (the initiation and response hooks are
//     admission's) and Sessions: recovery, told of authentic initiations,
//     lost peers and the device's responses, and asked whether a client
//     needs a claim.
//   - recovery: claims a client once its data decrypted here, and wins a
//     moved client's flow back at its first packet. It sees the ownership
//     table (Claimer), the client index, admission (Admitter), the client
//     device and the port into it.
//   - membership: the cluster, the backbone device and the routes that
//     follow membership and ownership. It sees the router, the route table
//     (Routes), the client index, admission's peer removal (Peers), the
//     ownership metrics (Observer) and recovery (Owners).
//   - relay: the drain relay, which carries a moved client's old session
//     through the gateway its flow moved to until the takeover completes.
//     It sees the backbone port (SendRelay), the client bind (Inject,
//     and the wrapped socket to send from) and who owns an endpoint
//     (Owners: recovery's foreign endpoints, the ownership table and
//     membership's live members, joined by relayOwners). It follows
//     ownership beside recovery (ownersFanout) and tells membership how
//     long to keep a lost client's session (HoldSession).
//   - probe: the internal peer that proves the data path with an echo.
//
// The gateway itself keeps only the glue: the client index (clientIndex),
// the route table (routeTable), fast recovery as admission and the packet
// goroutines see it (sessionsRef) and the ownership metrics (ownerStats).
//
// # The packet's path
//
// From a client: the client UDP socket's bind (device.ClassifyingBind,
// which holds initiations back for admission, tells admission of the
// device's handshake responses (forwarded to recovery through
// sessionsRef) and recovery of transport packets) → the client device decrypts (wireguard-go) and
// writes to its Port → Gateway.fromClients (recovery's CheckPending, then
// the router) → router.Router.Forward → the egress (device.TUN or
// device.Netstack, Deliver) or, for another region or a client owned by
// another gateway, the backbone (device.BackbonePort.Deliver, encrypted by
// the backbone device).
//
// Toward a client: the egress reads a packet → Gateway.fromEgress → the
// router → the client Port, which the client device encrypts and sends;
// or from another gateway: the backbone device decrypts →
// membership.Part.fromBackbone → the router → the client Port.
//
// A moved client's datagrams of another gateway's session (the drain
// relay): the client bind's relay hook (relay.Relay.FromClient) →
// device.BackbonePort.SendRelay → the owner's backbone device decrypts →
// BackbonePort.decapsulate → receiveRelay → relay.Relay.FromBackbone →
// device.ClassifyingBind.Inject → the owner's client device decrypts as
// above. The owner's answers: the client device's Send → the divert hook
// (relay.Relay.Divert) → SendRelay → the relaying gateway's
// FromBackbone → its client socket.
//
// # Locks
//
// The mutexes nest in this order (a lock may be taken while holding only
// those to its left in its chain):
//
//	Gateway.reloadMu → membership.Part.syncMu → routeTable.mu → membership.Part.mu → prefixGuard.mu
//	Gateway.reloadMu → admission.Admission.mu → admission.fastPath.mu
//
// What each guards:
//
//   - Gateway.reloadMu serialises Reload and guards digest; the
//     configuration in force is an atomic pointer stored under it, read by
//     anyone without it.
//   - membership.Part.syncMu serialises onMembers (the cluster's notifier
//     and start-up) and guards the backbone peers configured. onMembers
//     rebuilds the route table while holding it.
//   - routeTable.mu serialises whole-table rebuilds (Reapply: reload,
//     membership) with the per-client patches of ownership changes
//     (Patch), so a rebuild from an older view never lands after a newer
//     patch. It guards the table's cluster source and membership's
//     protected networks (Part.Routes runs under it).
//   - membership.Part.mu guards the latest member view; held only to copy
//     or swap it.
//   - resetQueue.mu (package membership) guards the clients queued for a
//     reset; a leaf, held only to append or take them.
//   - prefixGuard.mu (package membership) guards the refused
//     announcements; a leaf.
//   - admission.Admission.mu serialises changes of the client device's
//     peers with the index they follow (the worker's additions, the sweep,
//     Reindex, takeovers, removal of moved clients) and guards the
//     handshake state kept per client. While holding it admission calls
//     the device and recovery's Lost (sync.Map and the cluster's table,
//     no lock of this list); it is never held together with the locks of
//     the first chain.
//   - admission.fastPath.mu guards the fast path's endpoints and the
//     initiations the device answered unread; a leaf, taken under
//     Admission.mu or alone (the response hook, on the device's handshake
//     goroutines, takes it and then calls recovery's OnResponse with
//     nothing held).
//   - probe.Probe.mu guards the last round's outcome; a leaf.
//
// Recovery has no mutex: its maps are sync.Map and its counters atomic;
// its claim worker and membership's reset loop take admission's lock with
// nothing else held. The cluster calls OnMembers and OnOwner one at a time
// on its own goroutines, holding none of these locks; a lock of the
// cluster or a device is only ever taken last.
package gateway
