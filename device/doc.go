// Package device owns anyguard's packet devices: the embedded wireguard-go
// devices and the tun.Devices that connect them to the router. It links no
// gVisor: the unprivileged netstack egress is the sub-package
// device/netstack, and a test (TestNoGVisor) keeps it so. The sub-package
// device/handshake reads handshake initiations as the Noise responder
// would, before the device does (for the gateway's admission of clients).
//
// The types that remain, by job:
//
// In-memory ports between a wireguard-go device and the router:
//   - Port is a tun.Device with batched Read/Write and no kernel involved;
//     ForwardFunc is how it (and every other device here) hands the
//     packets it receives to the caller.
//   - BackbonePort is the Port of the backbone device: it wraps every packet
//     in an outer IPv4 header toward the next-hop gateway (IP in IP) and
//     unwraps what arrives; BackboneStats are its counters.
//
// The wireguard-go device and its UDP side:
//   - WireGuard wraps a wireguard-go device configured from typed peers
//     (WireGuardConfig, Peer; PeerStatus is what it reports per peer).
//   - ClassifyingBind is its conn.Bind: it counts messages by type
//     (BindStats, Classify) and drops junk before the device sees it, and
//     calls the TransportHook, ResponseHook and InitiationHook that the
//     gateway's fast recovery and admission set.
//   - UAPI serves the WireGuard UAPI socket, so that stock `wg show` and
//     `wg set` work against the embedded device.
//
// The kernel egress:
//   - TUN is the Linux multi-queue TUN egress (one queue and one goroutine
//     per CPU, IFF_VNET_HDR offloads), configured by TUNConfig; LinkState is
//     what it reports of its link as that changes.
//
// The package knows nothing about gossip or HTTP: packets leave every device
// through a forward function supplied by the caller (the router), and enter
// through a Deliver method. IP headers are read and written with package
// packet.
package device
