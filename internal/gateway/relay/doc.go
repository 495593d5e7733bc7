// Package relay carries a moved client's old session through a drain: the
// gateway that a load balancer moved a client's flow to relays the
// client's transport datagrams it cannot decrypt to the gateway that holds
// the client's session (the owner), over the backbone, and sends the
// owner's encrypted datagrams for the client from its own client socket,
// so that nothing is lost while its own takeover of the client completes.
//
// A Relay plays both sides: as the relaying gateway (FromClient on the
// client bind's relay hook; RelayToClient datagrams from the backbone)
// and as the owner (RelayToOwner datagrams from the backbone injected into
// the client device; Divert on the client bind's divert hook). It receives
// narrow views of what it works on: the backbone (Backbone), the client
// bind (Bind, Sender) and who owns a client's endpoint (Owners). It knows
// nothing of the gateway that wires it.
//
// # Who relays, to whom, for how long
//
// A gateway relays the transport datagrams that arrive from a client
// endpoint when the ownership table names that endpoint as the recorded
// endpoint of a client whose session this gateway does not hold, and the
// client's owner is another gateway that gossip sees alive, with a
// backbone address that is not this gateway's (Owners). That is a flow a
// load balancer moved here: off a draining gateway (the case this is
// for), in a rebalance, or off a gateway that crashed and is not yet
// declared dead (then the relayed datagrams are lost, as they would have
// been, within the bounds below). Every datagram is relayed and also
// handed to the device: the device decrypts those of its own new session
// (the takeover's) and drops the old session's as unknown, so the relay
// needs no knowledge of session indices.
//
// Relaying for an endpoint starts at its first datagram and lasts Window
// (10 s, the takeover's own limit) at most, or Grace (2 s) after this
// gateway claims the client, whichever ends first; Grace covers the old
// session's datagrams still in flight when the client switches. The
// endpoint is then not relayed again for Cooldown. The takeover (package
// recovery) runs alongside unchanged.
//
// # The owner's side
//
// A datagram relayed to the owner is injected into its client device as
// if it came from the client's endpoint (device.ClassifyingBind.Inject),
// which decrypts it with the old session and routes it as any other. For
// Hold (3 s) after the latest relayed datagram of an endpoint, the device's
// transport datagrams to that endpoint are sent to the relaying gateway
// (the load balancer would drop them from here: the flow is no longer
// this gateway's), which sends them from its client socket unchanged, so
// they reach the client from the load balancer's address. When the owner
// loses the client to the takeover's claim, it keeps the client's session
// and its routes to the client for Grace more while datagrams are relayed
// to it (HoldSession, applied by package membership), so the old
// session's stragglers still decrypt, and packets on their way to it
// still reach the client.
//
// While draining (Draining), the owner also keeps copies of what it sends
// clients directly, and sends an endpoint's recent ones again through the
// relaying gateway at its first relayed datagram: the load balancer
// dropped those sent between the move and that datagram (recent.go).
//
// # Trust and bounds
//
// Relayed datagrams travel only inside the backbone's WireGuard sessions,
// whose peers are the cluster's gateways: the backbone port takes them
// only from packets its device decrypted, with the sending gateway's
// backbone address as the outer source (checked by WireGuard against the
// peer's allowed IPs). Nothing arriving on a client socket, and nothing
// inside a client's tunnel, reaches the relay handler.
//
// Loops: a datagram that arrived over the backbone is never relayed again
// (injection bypasses the bind's relay hook; the relaying gateway sends
// the owner's datagrams through the wrapped socket, past the divert hook),
// and no gateway relays to itself (Owners, and the backbone port refuses
// its own address).
//
// Floods: anyone can send junk transport datagrams from a moved client's
// address. Each is relayed at most once (no amplification beyond the
// 39-byte relay header), at most PerEndpoint per 100 ms per endpoint and
// Total per 100 ms over all endpoints, each way; the rest are dropped and
// counted (anyguard_relayed_datagrams_total{event="drop_rate_*"}). Only
// endpoints of known clients moved here can be relayed at all, and the
// owner's device drops what does not decrypt.
package relay
