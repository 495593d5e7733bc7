// Package router is anyguard's forwarding table: it moves IP packets between
// ports (the client WireGuard device, the backbone, the egress) by
// longest-prefix match on the destination address.
//
// For every packet Forward validates the IP header (truncated, oversized and
// malformed packets are dropped), checks the source address against the
// ingress port's source filter, decrements the TTL or hop limit (dropping
// expired packets), applies split horizon (a packet that arrived from the
// backbone never goes back into it) and hands the packet to the next hop's
// port. Every drop is counted by reason.
//
// A route may also name a next hop inside its port (Route.Via): the backbone
// gateway that holds a client's session or serves a region's prefix. Ports
// that implement ViaPort receive each packet with the Via of the route that
// matched it, and encapsulate toward it; other ports ignore Via.
//
// The per-packet path allocates nothing and takes no lock: the table is an
// immutable snapshot swapped in with an atomic pointer, and each call to
// Forward borrows its scratch space from a pool.
package router
